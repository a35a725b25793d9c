"""dnt.md §6 checks 1-4 as tests (check 5, the gradient tail ratio, is report-only: components/dnt/README.md).

`python tests/components/test_dnt.py` prints the full check-4 learning-rate grid and the check-1/5 numbers
that the README reports.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cluster.runner import execute, load_request, plan_run
from components.core.config import resolve_config
from components.core.errors import ConfigError, Preempted, RunError
from components.core.optim import OPTIMIZERS, build_optimizer
from components.core.shards import ImageShards
from components.dnt import tokens
from components.dnt.component import component, learning_rate, to_input, weight_decay
from components.dnt.diagnostics import gradient_stats
from components.dnt.models import GPT, Attention, Block, RMSNorm, Spec, ViT, count_norms
from pipelines.sweep import expand_sweep

EXACT_EPS = 1e-10  # dnt.md §6 check 1: at init the branch outputs have mean square ~1e-3, so 1e-6 breaks exactness
DEPTH, HEADS = 4, 4


def tiny_spec(variant: str, act: str = "relu") -> Spec:
    """dnt.md §6's tiny model: d 64, 4 heads, 4 blocks, FFN 128, no biases, ReLU, eps 1e-10."""
    return Spec(variant=variant, depth=DEPTH, dim=64, heads=HEADS, ffn_dim=128, norm_eps=EXACT_EPS, act=act)


def tiny_vit(variant: str, seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    return ViT(tiny_spec(variant), image_size=8, channels=1, patch_size=2, num_classes=10)


def digits_batch(data_root: Path, count: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    shards = ImageShards(data_root, "images/digits", "val")
    indices = np.arange(count)
    return to_input(torch.from_numpy(shards.images(indices))), torch.from_numpy(shards.labels[indices])


def head_factors(rng: np.random.Generator, dim: int) -> torch.Tensor:
    """One factor in [0.5, 2] per head, repeated over that head's rows of W_q / W_k."""
    return torch.from_numpy(np.repeat(rng.uniform(0.5, 2.0, HEADS), dim // HEADS)).float()[:, None]


@torch.no_grad()
def rescale(model: nn.Module, seed: int = 0, embedding: bool = True) -> None:
    """Multiply every W_q^h, W_k^h (per head), W_v, W_o, W_1, W_2 and (jointly) the input embedding by
    independent random factors in [0.5, 2]. Per-head factors on W_q, W_k are what a QKNorm over the whole
    q vector (instead of per head) cannot cancel."""
    rng = np.random.default_rng(seed)
    for block in model.trunk.blocks:
        for projection in (block.attn.q, block.attn.k):
            projection.weight.mul_(head_factors(rng, projection.weight.shape[0]))
        for linear in (block.attn.v, block.attn.o, block.ffn.w1, block.ffn.w2):
            linear.weight.mul_(float(rng.uniform(0.5, 2.0)))
    if embedding:
        factor = float(rng.uniform(0.5, 2.0))
        for param in embedding_params(model):
            param.mul_(factor)


def embedding_params(model: nn.Module) -> list[torch.Tensor]:
    if isinstance(model, ViT):
        return [model.patch_embed.weight, model.cls, model.pos.weight]
    return [model.wte.weight, model.wpe.weight]


@torch.no_grad()
def relative_change(model: nn.Module, inputs: torch.Tensor, embedding: bool = True) -> float:
    model.eval()
    before = model(inputs)
    rescale(model, embedding=embedding)
    after = model(inputs)
    return ((after - before).abs().max() / before.abs().max()).item()


# Check 1: rescaling invariance (exact). Catches MidNorm after the add, whole-vector QKNorm, a missing InputNorm,
# and anything else left unnormalised between a rescaled matrix and the logits.
def test_dnt_is_invariant_to_rescaling_and_standard_is_not(data_root):
    images, _ = digits_batch(data_root)
    assert relative_change(tiny_vit("dnt"), images) < 1e-4
    assert relative_change(tiny_vit("standard"), images) > 1e-2


class PostNormBlock(Block):
    """The wrong placement: normalising after the residual add (PostNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_mid_norm(x + self.attn(self.attn_norm(x)))
        return self.ffn_mid_norm(x + self.ffn(self.ffn_norm(x)))


class WholeVectorQKNorm(Attention):
    """The wrong QKNorm: normalise the whole d_model q and k, then split into heads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from einops import rearrange

        q, k = (self.q_norm(proj(x)) for proj in (self.q, self.k))
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, self.v(x)))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o(rearrange(out, "b h n d -> b n (h d)"))


def postnorm(model: ViT) -> ViT:
    for block in model.trunk.blocks:
        block.__class__ = PostNormBlock
    return model


def whole_vector_qknorm(model: ViT) -> ViT:
    for block in model.trunk.blocks:
        block.attn.__class__ = WholeVectorQKNorm
        block.attn.q_norm, block.attn.k_norm = RMSNorm(64, EXACT_EPS), RMSNorm(64, EXACT_EPS)
    return model


def no_input_norm(model: ViT) -> ViT:
    model.trunk.input_norm = nn.Identity()
    return model


@pytest.mark.parametrize("break_it", [postnorm, whole_vector_qknorm, no_input_norm])
def test_the_invariance_check_catches_misplaced_norms(data_root, break_it):
    # dnt.md §6 check 1 names these three wrong DNTs: each must fail the < 1e-4 test (measured: README)
    images, _ = digits_batch(data_root)
    assert relative_change(break_it(tiny_vit("dnt")), images) > 1e-4


def test_gpt_blocks_are_invariant_too():
    # the causal L-DNT: block matrices only (the tied LM head breaks the embedding's invariance, as expected)
    torch.manual_seed(0)
    inputs = torch.randint(0, 256, (4, 32))
    changes = {}
    for variant in ("dnt", "standard"):
        torch.manual_seed(0)
        changes[variant] = relative_change(GPT(tiny_spec(variant), 256, 32), inputs, embedding=False)
    assert changes["dnt"] < 1e-4 and changes["standard"] > 1e-2


def test_gpt_is_causal():
    # a missing causal mask lets a later token change an earlier position's logits
    torch.manual_seed(0)
    model = GPT(tiny_spec("dnt"), 256, 32).eval()
    tokens = torch.randint(0, 256, (2, 32))
    other = tokens.clone()
    other[:, 20] = (other[:, 20] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(other)
    assert torch.equal(a[:, :20], b[:, :20]) and not torch.equal(a[:, 20], b[:, 20])


# Check 2: Euler's identity <grad_W L, W> = 0 for every rescaling-invariant W, at init and after 50 mSGDW steps.
# Catches any un-normalised path from an invariant matrix to the loss (gradient flows through its magnitude).
def invariance_cosines(model: ViT, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"embedding": []}
    for index, block in enumerate(model.trunk.blocks):
        for name in ("q", "k"):  # every head's rows separately: the stronger per-head statement
            weight = getattr(block.attn, name).weight
            for head, rows in enumerate(weight.detach().split(weight.shape[0] // HEADS)):
                pairs[f"{index}.{name}{head}"] = [(rows, weight.grad.split(weight.shape[0] // HEADS)[head])]
        for name, linear in (("v", block.attn.v), ("o", block.attn.o), ("w1", block.ffn.w1), ("w2", block.ffn.w2)):
            pairs[f"{index}.{name}"] = [(linear.weight.detach(), linear.weight.grad)]
    pairs["embedding"] = [(p.detach(), p.grad) for p in embedding_params(model)]  # jointly invariant
    cosines = {}
    for name, group in pairs.items():
        inner = sum((w.double() * g.double()).sum() for w, g in group)
        norms = math.sqrt(sum(w.double().pow(2).sum() for w, _ in group)) * math.sqrt(
            sum(g.double().pow(2).sum() for _, g in group)
        )
        cosines[name] = abs(inner.item()) / norms
    return cosines


def train_steps(model: ViT, data_root: Path, steps: int = 50) -> ViT:
    """mSGDW (lr 0.1, wd 1e-4) on digits batches of 64."""
    optimizer = build_optimizer("msgdw", model, lr=0.1, weight_decay=1e-4)
    stream = ImageShards(data_root, "images/digits", "train").batches(64, seed=0)
    for _ in range(steps):
        batch, targets = next(stream)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(to_input(torch.from_numpy(batch))), torch.from_numpy(targets))
        loss.backward()
        optimizer.step()
    return model


def test_gradients_are_orthogonal_to_invariant_weights(data_root):
    images, labels = digits_batch(data_root)
    model = tiny_vit("dnt")
    assert max(invariance_cosines(model, images, labels).values()) < 1e-3
    assert max(invariance_cosines(train_steps(model, data_root), images, labels).values()) < 1e-3
    standard = tiny_vit("standard")  # the check can fail: without the norms the gradient has a radial part
    assert max(invariance_cosines(standard, images, labels).values()) > 1e-2


# Check 3: structure. Catches a missing or extra normalisation in any variant.
@pytest.mark.parametrize("backbone", ["vit", "gpt"])
def test_norm_counts(backbone):
    expected = {
        "dnt": 1 + 5 * DEPTH + 1,
        "s4": 1 + 6 * DEPTH + 1,
        "standard": 2 * DEPTH + 1,
        "s2": 4 * DEPTH + 1,
        "s3": 1 + 4 * DEPTH + 1,
    }
    for variant, count in expected.items():
        model = tiny_vit(variant) if backbone == "vit" else GPT(tiny_spec(variant), 256, 16)
        assert count_norms(model) == count, variant


def test_layernorm_variant_is_invariant_too(data_root):
    # the norm_type knob: LayerNorm keeps the scale invariance (dnt.md §3.1)
    images, _ = digits_batch(data_root)
    torch.manual_seed(0)
    spec = Spec(variant="dnt", depth=2, dim=64, heads=HEADS, ffn_dim=128, norm_type="layernorm", norm_eps=EXACT_EPS)
    assert relative_change(ViT(spec, 8, 1, 2, 10), images) < 1e-4


# Check 4: training comparison on digits, mSGDW (momentum 0.9, cosine, 300 steps, wd 1e-4).
GRID = (0.03, 0.1, 0.3, 1.0)


def train_digits(params, data_root, run_root, variant: str, lr: float, **extra) -> dict[str, float] | None:
    sets = {
        "variant": variant,
        "optimizer": "msgdw",
        "lr": lr,
        "weight_decay": 1e-4,
        "steps": 300,
        "eval_every": 0,
        "grad_stats_every": 0,
        **extra,
    }
    request = plan_run("dnt", params, preset="smoke", overrides=sets, data_dir=data_root)
    try:
        return execute(request, run_root=run_root, data_dir=data_root, show_progress=False).metrics
    except RunError:
        return None  # diverged


def test_dnt_with_msgdw_is_not_worse_than_standard(params, data_root, tmp_path):
    # The gate: best-of-grid S5 test accuracy >= best-of-grid S1 - 1 point. The whole S1 grid runs; of S5 only
    # lr 0.1 runs (to fit the test budget), a lower bound on S5's best, so the gate is at least as strict as
    # the spec's. A DNT that trains worse than the pre-LN baseline fails. Full grid: README.
    standard = [train_digits(params, data_root, tmp_path, "standard", lr) for lr in GRID]
    best_standard = max(m["test/acc"] if m else 0.0 for m in standard)
    dnt = train_digits(params, data_root, tmp_path, "dnt", 0.1)
    assert dnt is not None and dnt["test/acc"] >= best_standard - 0.01


@pytest.mark.xfail(
    strict=True,
    reason="dnt.md §6 check 4 expects S5 at LR 1.0 to stay finite; with PyTorch-form "
    "momentum (b = 0.9 b + g) the norm gains and the classifier head blow up and the loss is NaN "
    "at step 46 (README). LR 1.0 in the EMA form equals LR 0.1 here, which trains fine.",
)
def test_dnt_at_lr_one_stays_finite(params, data_root, tmp_path):
    assert train_digits(params, data_root, tmp_path, "dnt", 1.0, divergence_limit=1e300) is not None


def test_dnt_at_lr_one_in_the_ema_momentum_form_stays_finite(params, data_root, tmp_path):
    # dnt.md §8: "if training diverges at the paper's LRs, the EMA form is the alternative to test"
    metrics = train_digits(
        params, data_root, tmp_path, "dnt", 1.0, optimizer="msgdw_ema", weight_decay=1e-5, divergence_limit=1e300
    )
    assert metrics is not None and metrics["test/acc"] > 0.8, metrics


# Check 5 is report-only; its statistic must still be right: quantiles over all matrix-gradient entries.
def test_gradient_stats_match_numpy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 40), nn.Linear(40, 5))
    model(torch.randn(8, 30)).pow(2).sum().backward()
    stats, histogram = gradient_stats(model)
    entries = np.concatenate([layer.weight.grad.abs().flatten().numpy() for layer in model])
    for name, level in (("q50", 0.5), ("q99_9", 0.999)):
        assert stats[f"grad/{name}"] == pytest.approx(np.quantile(entries, level), rel=1e-5)
    assert stats["grad/max"] == pytest.approx(entries.max())
    assert stats["grad/tail_ratio"] == pytest.approx(np.quantile(entries, 0.999) / np.quantile(entries, 0.5), rel=1e-5)
    assert histogram.sum() == entries.size  # biases (1-D) are left out


# The token streams and the GPT path.
def test_markov_floor_is_the_chains_entropy_rate():
    # the mean true negative log-likelihood of the generated stream estimates the entropy rate without bias;
    # a wrong stationary distribution or a stream that does not follow the table fails
    table = tokens.markov_table(32)
    stream = tokens.markov_stream(table, 1 << 16).astype(np.int64)
    nll = -np.log(table[stream[:-2], stream[1:-1], stream[2:]]).mean()
    assert abs(nll - tokens.entropy_rate(table)) < 0.03


def test_gpt_trains_on_stdlib_bytes_and_markov(params, data_root, tmp_path):
    runs = {}
    for source in ("stdlib", "markov"):
        sets = {"backbone": "gpt", "tokens": source, "steps": 30, "optimizer": "adamw", "lr": 3e-3}
        request = plan_run("dnt", params, preset="test", overrides=sets, data_dir=data_root)
        runs[source] = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)
    stdlib = runs["stdlib"]
    assert stdlib.metrics["val/loss"] < math.log(256) - 1.0  # learnt byte statistics
    facts = json.loads((stdlib.run_dir / "data.json").read_text())
    assert facts["sha256"] == tokens.stdlib_tokens().facts["sha256"]  # the stream is rebuilt identically
    markov = runs["markov"].metrics
    assert markov["val/loss_floor"] < markov["val/loss"] < math.log(32)


def test_resume_after_preemption_is_bit_exact(params, data_root, tmp_path, preempt_at):
    # the checkpoint carries the data position, the last losses and the init gradient statistics
    request = plan_run(
        "dnt", params, preset="test", overrides={"steps": 24, "grad_stats_every": 5}, seed=1, data_dir=data_root
    )
    whole = execute(request, run_root=tmp_path / "whole", data_dir=data_root, show_progress=False, checkpoint_every=5)
    with pytest.raises(Preempted):
        execute(
            request,
            run_root=tmp_path / "cut",
            data_dir=data_root,
            show_progress=False,
            checkpoint_every=5,
            sinks=[preempt_at(13)],
        )
    (cut_dir,) = (tmp_path / "cut" / "dnt").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, data_dir=data_root, show_progress=False, checkpoint_every=5)
    assert resumed.metrics == whole.metrics
    assert (cut_dir / "training.png").is_file() and (cut_dir / "grad_hist.npz").is_file()


# Config, presets and the sweep.
def test_learning_rate_per_optimizer(params):
    paper = resolve_config(component, "paper", params.get("dnt"))
    assert learning_rate(paper) == 1.0 and weight_decay(paper) == OPTIMIZERS["msgdw"].weight_decay
    adamw = resolve_config(component, "paper", params.get("dnt"), {"optimizer": "adamw"})
    assert learning_rate(adamw) == 6e-4 and weight_decay(adamw) == 0.1
    smoke = resolve_config(component, "smoke", params.get("dnt"), {"optimizer": "lion"})
    assert learning_rate(smoke) == OPTIMIZERS["lion"].lr
    assert learning_rate(smoke.model_copy(update={"lr": 0.5})) == 0.5


def test_bad_configs_name_the_key(params):
    with pytest.raises(ConfigError, match="heads"):
        resolve_config(component, "smoke", params.get("dnt"), {"heads": 5})
    with pytest.raises(ConfigError, match="variant"):
        resolve_config(component, "smoke", params.get("dnt"), {"variant": "postnorm"})
    with pytest.raises(ConfigError, match="did you mean 'variant'"):
        resolve_config(component, "smoke", params.get("dnt"), {"varient": "dnt"})


def test_image_size_mismatch_is_a_clear_error(params, data_root, tmp_path):
    request = plan_run("dnt", params, preset="test", overrides={"image_size": 16, "patch_size": 4}, data_dir=data_root)
    with pytest.raises(RunError, match="image_size=8"):
        execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)


def test_sweep_covers_optimizers_and_variants(params, data_root):
    sweep = params["sweeps"]["dnt_optimizers"]
    trials = expand_sweep(sweep)
    assert len(trials) == 16
    assert {t.overrides["optimizer"] for t in trials} == {"sgd", "msgdw", "adamw", "lion"}
    assert {t.overrides["variant"] for t in trials} == {"dnt", "standard"}
    for trial in trials:
        plan_run("dnt", params, overrides=trial.overrides, seed=trial.seed, data_dir=data_root)


def report_grid(data_root: Path, run_root: Path) -> None:
    """The full check-4 grid (both variants, every LR) and the check-1/5 numbers, for the README."""
    from pipelines.params import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    images, labels = digits_batch(data_root)
    print("check 1: max|dlogits| / max|logits| after rescaling")
    for name, build in (
        ("dnt", lambda: tiny_vit("dnt")),
        ("standard", lambda: tiny_vit("standard")),
        ("postnorm", lambda: postnorm(tiny_vit("dnt"))),
        ("whole-vector qknorm", lambda: whole_vector_qknorm(tiny_vit("dnt"))),
        ("no inputnorm", lambda: no_input_norm(tiny_vit("dnt"))),
    ):
        print(f"  {name}: {relative_change(build(), images):.3g}")
    cosines = {
        "dnt init": invariance_cosines(tiny_vit("dnt"), images, labels),
        "dnt after 50 steps": invariance_cosines(train_steps(tiny_vit("dnt"), data_root), images, labels),
        "standard init": invariance_cosines(tiny_vit("standard"), images, labels),
    }
    print("check 2: max |cos(grad, W)|:", ", ".join(f"{k} {max(v.values()):.3g}" for k, v in cosines.items()))
    for variant in ("dnt", "standard"):
        model = tiny_vit(variant)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        print(f"check 5: {variant} tail ratio at init {gradient_stats(model)[0]['grad/tail_ratio']:.3g}")
    print("check 4: variant lr test/acc val/acc")
    for variant in ("dnt", "standard"):
        for lr in GRID:
            metrics = train_digits(params, data_root, run_root, variant, lr)
            print(
                f"  {variant} {lr} "
                + (f"{metrics['test/acc']:.4f} {metrics['val/acc']:.4f}" if metrics else "diverged"),
                flush=True,
            )


if __name__ == "__main__":
    import tempfile

    from pipelines.datasets import prepare

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        prepare("images/digits", {"source": "sklearn-digits", "repeat": 1}, root)
        torch.set_num_threads(1)
        report_grid(root, Path(scratch) / "runs")
    sys.exit(0)
