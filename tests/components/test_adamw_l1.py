"""adamw_l1.md §6 checks 1-4, plus config validation, clipping order and resume of a multi-width run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster.runner import execute, load_request, plan_run
from components.adamw_l1.models import to_input
from components.adamw_l1.probe import gradient_norms, loglog_slope, partial_sums, stats_from_sums, vector_stats
from components.adamw_l1.reference import ReferenceAdamW
from components.core.errors import ConfigError, Preempted
from components.core.models import build_classifier, digits_mlp
from components.core.optim import OPTIMIZERS, build_optimizer, param_groups
from components.core.shards import ImageShards

GAUSSIAN_RHO = math.sqrt(2 / math.pi)


def run(params, data_root, tmp_path, preset="test", seed=0, **sets):
    request = plan_run("adamw_l1", params, preset=preset, overrides=sets, seed=seed, data_dir=data_root)
    return execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# Check 1: the metric itself, exact.
def test_reference_vectors():
    d = 1_000_000
    gaussian = vector_stats(torch.randn(d, generator=torch.Generator().manual_seed(0)))
    assert 0.795 <= gaussian.rho <= 0.801  # sqrt(2/pi) = 0.7979; a probe using l2^2 or l1/d fails
    one_hot = torch.zeros(d)
    one_hot[12345] = 3.0
    assert abs(vector_stats(one_hot).rho - 1 / math.sqrt(d)) < 1e-12
    assert abs(vector_stats(torch.full((d,), -0.25)).rho - 1.0) < 1e-12


def test_sharded_partial_sums_all_reduce_to_the_global_norms():
    # A probe that combines per-shard norms or ratios (instead of summing sum|g| and sum g^2) fails here.
    g = torch.randn(100_003, generator=torch.Generator().manual_seed(1)) * torch.logspace(-3, 2, 100_003)
    whole = vector_stats(g)
    shards = torch.tensor_split(g, [7, 5000, 5001, 60_000, 99_999])
    combined = stats_from_sums(partial_sums(list(shards)).sum(dim=0))
    assert combined.d == whole.d == g.numel()
    assert abs(combined.l1 / whole.l1 - 1) < 1e-12 and abs(combined.l2 / whole.l2 - 1) < 1e-12

    # the same through gradient_norms' all_reduce: two "ranks" each holding a slice of every tensor
    model = digits_mlp(32)
    F.cross_entropy(model(torch.rand(16, 64)), torch.randint(0, 10, (16,))).backward()
    named = list(model.named_parameters())
    flat = torch.cat([p.grad.flatten() for _, p in named])
    rank0, rank1 = [], []
    for name, param in named:
        cut = param.numel() // 3
        for holder, part in ((rank0, param.grad.flatten()[:cut]), (rank1, param.grad.flatten()[cut:])):
            shard = torch.nn.Parameter(torch.zeros_like(part))
            shard.grad = part.clone()
            holder.append((name, shard))
    other = partial_sums([p.grad for _, p in rank1])
    total, _ = gradient_norms(rank0, all_reduce=lambda sums: sums + other)
    assert total.d == flat.numel()
    assert abs(total.rho / vector_stats(flat).rho - 1) < 1e-12


def test_global_rho_is_not_an_average_of_per_tensor_ratios():
    model = digits_mlp(64)
    F.cross_entropy(model(torch.rand(32, 64)), torch.randint(0, 10, (32,))).backward()
    named = list(model.named_parameters())
    total, per_tensor = gradient_norms(named)
    flat = torch.cat([p.grad.flatten() for _, p in named]).double()
    assert total.d == sum(p.numel() for _, p in named) == 8970  # §6: d = 8970 at w = 64
    assert abs(total.l1 / flat.abs().sum().item() - 1) < 1e-12
    assert abs(total.l2 / flat.norm().item() - 1) < 1e-12
    mean_of_tensors = np.mean([s.rho for s in per_tensor.values()])
    assert abs(mean_of_tensors - total.rho) > 0.05  # the trap is real on this model, so the check can fail


def test_logged_norms_are_the_raw_gradient_before_clipping(params, data_root, tmp_path):
    # Post-clip norms (or clip_grad_norm_'s return value computed after a clip) would log l2 <= 1e-4 here.
    plain = records(run(params, data_root, tmp_path / "plain", seed=5).run_dir)
    clipped = records(run(params, data_root, tmp_path / "clip", seed=5, grad_clip=1e-4).run_dir)
    first = {r["model/width"]: r for r in plain if "grad/l1" in r and r["step"] % 20 == 0}
    first_clipped = {r["model/width"]: r for r in clipped if "grad/l1" in r and r["step"] % 20 == 0}
    for width, record in first.items():
        assert record["grad/l2"] > 1e-2
        assert first_clipped[width]["grad/l1"] == record["grad/l1"]  # same weights and batch at step 0
        assert first_clipped[width]["grad/l2"] == record["grad/l2"]
    assert plain[-2]["train/loss"] != clipped[-2]["train/loss"]  # the clip did act on the updates

    # the step-0 record equals the norms of a gradient computed here by hand from the same seed and batch
    torch.manual_seed(5)
    model = build_classifier("digits_mlp", 10, 8)
    images, labels = next(ImageShards(data_root, "images/digits", "train").batches(32, seed=5))
    F.cross_entropy(model(to_input(torch.from_numpy(images))), torch.from_numpy(labels)).backward()
    flat = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
    assert abs(first[8]["grad/l1"] / flat.abs().sum().item() - 1) < 1e-5
    assert abs(first[8]["grad/l2"] / flat.norm().item() - 1) < 1e-5
    assert first[8]["grad/d"] == flat.numel() == 8**2 + 76 * 8 + 10


# Check 2: the table's adamw is AdamW with bias correction and decay applied before the Adam step.
def adamw_trajectories(data_root, bias_correction: bool = True) -> float:
    torch.manual_seed(0)
    model = digits_mlp(64)
    twin = digits_mlp(64)
    twin.load_state_dict(model.state_dict())
    spec = OPTIMIZERS["adamw"]
    torch_adamw = build_optimizer("adamw", model)
    reference = ReferenceAdamW(
        param_groups(twin, spec.no_decay, spec.weight_decay),
        lr=spec.lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        bias_correction=bias_correction,
    )
    stream = ImageShards(data_root, "images/digits", "train").batches(64, seed=0)
    for _ in range(100):
        images, labels = next(stream)
        x, y = to_input(torch.from_numpy(images)), torch.from_numpy(labels)
        for net, opt in ((model, torch_adamw), (twin, reference)):
            F.cross_entropy(net(x), y).backward()
            opt.step()
            opt.zero_grad()
    return max((a - b).abs().max().item() for a, b in zip(model.parameters(), twin.parameters()))


def test_handwritten_adamw_matches_torch_after_100_steps(data_root):
    assert adamw_trajectories(data_root) < 1e-6
    # Without bias correction the same comparison fails by orders of magnitude, so it can tell them apart.
    assert adamw_trajectories(data_root, bias_correction=False) > 1e-4


# Check 3: Theta(sqrt(d)) on real training, at the smoke preset (the spec's §6 setting).
def test_smoke_rho_band_and_sqrt_d_slope(params, data_root, tmp_path):
    result = run(params, data_root, tmp_path, preset="smoke")
    metrics = result.metrics
    probed = [r for r in records(result.run_dir) if "grad/rho" in r]
    assert len(probed) == 3 * 600  # every step of every width
    assert {r["grad/d"] for r in probed} == {1482, 8970, 85002}
    rhos = np.array([r["grad/rho"] for r in probed])
    # spec band [0.2, 0.9]; measured 0.30-0.67 over seeds 0-2. A sparse-gradient probe gives rho < 0.01.
    assert rhos.min() >= 0.2 and rhos.max() <= 0.9
    assert metrics["rho_min"] == rhos.min()
    # spec [0.3, 0.7]; measured 0.40-0.42 over seeds 0-2 (prototype 0.42); l1 ~ l2 would give ~0.
    assert 0.3 <= metrics["loglog_slope"] <= 0.7
    ratios = [metrics[f"w{w}/ratio_mean"] for w in (16, 64, 256)]
    assert metrics["loglog_slope"] == pytest.approx(loglog_slope([1482, 8970, 85002], ratios), abs=1e-12)
    for name in (
        "ratio_vs_d.png",
        "rho_vs_step.png",
        "grad_norms.csv",
        "tensors.csv",
        "widths.csv",
        "model.safetensors",
        "model-w16.safetensors",
    ):
        assert (result.run_dir / name).is_file(), name


# Check 4: the averaged true-gradient l1 norm under the theorem's horizon-dependent schedule. The spec
# writes the bound as "4^(-1/4) = 0.84", but 4^(-1/4) = 0.707 (0.84 = 2^(-1/4)): both readings are kept.
def quadratic_metrics(params, tmp_path, **sets) -> dict[str, float]:
    request = plan_run("adamw_l1", params, preset="test", overrides={"task": "quadratic", **sets}, data_dir=tmp_path)
    return execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False).metrics


def test_quadratic_rate_sanity(params, tmp_path):
    metrics = quadratic_metrics(params, tmp_path)  # x_1 = 0, as the spec's prototype numbers imply
    averages = [metrics[f"quad/avg_l1/K{k}"] for k in (250, 1000, 4000)]
    assert averages[0] > averages[1] > averages[2]  # a metric that is not averaged over k = 1..K stays flat
    assert metrics["quad/max_ratio"] <= 4**-0.25  # measured 0.59-0.60 over seeds 0-2 (prototype 0.57-0.58)
    # From x_1 = 1 the transient decays like K^(-1/4) itself: measured 0.743-0.751, under the spec's printed
    # 0.84 but NOT under 4^(-1/4) = 0.707 (see the README).
    assert quadratic_metrics(params, tmp_path, **{"quadratic.x0": 1.0})["quad/max_ratio"] <= 0.84
    # the threshold has teeth: from x_1 = 10 the eta ~ K^(-3/4) steps are still in the transient (0.91)
    assert quadratic_metrics(params, tmp_path, **{"quadratic.x0": 10.0})["quad/max_ratio"] > 0.84


def test_bad_config_is_caught_naming_the_key(params, data_root):
    with pytest.raises(ConfigError, match="widths"):
        plan_run("adamw_l1", params, preset="test", overrides={"widths": [16, 8]}, data_dir=data_root)
    with pytest.raises(ConfigError, match="widths"):
        plan_run("adamw_l1", params, preset="test", overrides={"widths": [16]}, data_dir=data_root)
    with pytest.raises(ConfigError, match="quadratic.horizons"):
        plan_run("adamw_l1", params, preset="test", overrides={"quadratic.horizons": [1000, 250]}, data_dir=data_root)
    with pytest.raises(ConfigError, match="grad_clip"):
        plan_run("adamw_l1", params, preset="test", overrides={"grad_clip": 0}, data_dir=data_root)


@pytest.mark.parametrize("cut_at", [24, 19])  # inside the second width, and on the boundary between widths
def test_resume_across_widths_is_bit_exact(params, data_root, tmp_path, preempt_at, cut_at):
    request = plan_run("adamw_l1", params, preset="test", seed=2, data_dir=data_root)
    common = {"data_dir": data_root, "show_progress": False, "checkpoint_every": 10}
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(cut_at)], **common)
    (cut_dir,) = (tmp_path / "cut" / "adamw_l1").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
    assert records(cut_dir) == records(whole.run_dir)


# What the mutation table (tests/mutants/adamw_l1.py) guards, tested directly.
@pytest.fixture(scope="module")
def test_preset_run(data_root, tmp_path_factory):
    """One run of the test preset (widths 8 and 16, 20 steps each, large-batch gradient on 256 training samples
    every 10 steps), seed 5: its metrics and its metrics.jsonl records."""
    from pathlib import Path

    from pipelines.params import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    result = run(params, data_root, tmp_path_factory.mktemp("adamw_l1-test-preset"), seed=5)
    return result.metrics, records(result.run_dir)


def mean_loss_gradient(width: int, images: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """The flattened gradient of the MEAN cross-entropy over the samples, at the seed-5 initialisation."""
    torch.manual_seed(5)
    model = build_classifier("digits_mlp", 10, width)
    F.cross_entropy(model(to_input(torch.from_numpy(images))), torch.from_numpy(labels)).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double()


def test_large_batch_gradient_is_the_mean_loss_gradient_on_training_samples(test_preset_run, data_root):
    # §3.4 step 3: grad f estimated from the first 256 TRAINING samples, as the gradient of the mean loss
    _, logged = test_preset_run
    train_images, train_labels = ImageShards(data_root, "images/digits", "train").arrays()
    test_images, test_labels = ImageShards(data_root, "images/digits", "test").arrays()
    for width, step in ((8, 0), (16, 20)):  # the first step of each width: the weights are the seed's init
        (record,) = [r for r in logged if r["step"] == step and "grad_true/l1" in r]
        truth = mean_loss_gradient(width, train_images[:256], train_labels[:256])
        assert record["grad_true/l1"] == pytest.approx(truth.abs().sum().item(), rel=1e-5), width
        assert record["grad_true/l2"] == pytest.approx(truth.norm().item(), rel=1e-5), width
        # the controls: the test split's gradient, and a sum of per-sample losses, are other vectors
        other = mean_loss_gradient(width, test_images[:256], test_labels[:256])
        assert abs(other.abs().sum().item() / truth.abs().sum().item() - 1) > 1e-2
        assert abs(256 * truth.norm().item() - truth.norm().item()) > 1e-2


def test_loglog_slope_recovers_a_power_law_exponent():
    sizes = [1482.0, 8970.0, 85002.0]
    for exponent, constant in ((0.5, 0.6), (0.42, 3.0), (0.0, 0.25)):
        ratios = [constant * d**exponent for d in sizes]
        assert loglog_slope(sizes, ratios) == pytest.approx(exponent, abs=1e-12)
    # the control: a fit forced through the origin (no intercept) misses the exponent when constant != 1
    x, y = np.log(sizes), np.log([0.6 * d**0.5 for d in sizes])
    assert abs((x * y).sum() / (x * x).sum() - 0.5) > 1e-2


def test_run_slope_is_fitted_on_l1_over_l2_against_d(test_preset_run):
    metrics, _ = test_preset_run
    sizes = [metrics["w8/d"], metrics["w16/d"]]
    ratios = [metrics["w8/ratio_mean"], metrics["w16/ratio_mean"]]
    assert metrics["loglog_slope"] == pytest.approx(loglog_slope(sizes, ratios), abs=1e-12)
    # the control: the slope of rho = r / sqrt(d) is the same fit shifted by exactly -1/2
    rhos = [metrics["w8/rho_mean"], metrics["w16/rho_mean"]]
    assert loglog_slope(sizes, rhos) == pytest.approx(loglog_slope(sizes, ratios) - 0.5, abs=1e-9)


def test_quadratic_runs_adamw_with_the_theorem_schedule(monkeypatch):
    from components.adamw_l1 import quadratic

    seen = []
    real = torch.optim.AdamW

    def spy(params, **options):
        seen.append(options)
        return real(params, **options)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    for horizon in (16, 256):
        quadratic.averaged_l1(horizon, dim=8, low=0.1, high=10, noise=1, eta0=2.0, x0=0, weight_decay=0, seed=0)
    assert len(seen) == 2
    for horizon, options in zip((16, 256), seen):
        assert options["lr"] == pytest.approx(2.0 / horizon**0.75, rel=1e-12)  # eta = eta0 / K^(3/4)
        assert options["betas"][0] == pytest.approx(1 - horizon**-0.5, rel=1e-12)  # 1 - beta1 = K^(-1/2)
        assert options["betas"][1] == pytest.approx(1 - 1 / horizon, rel=1e-12)  # 1 - beta2 = 1/K
    # the control: a K^(-1/2) step is another step at these horizons
    assert all(2.0 / k**0.5 > 1.5 * 2.0 / k**0.75 for k in (16, 256))


def test_quadratic_noise_follows_the_seed():
    from components.adamw_l1.quadratic import averaged_l1

    def average(seed, noise=1.0):
        return averaged_l1(64, dim=50, low=0.1, high=10, noise=noise, eta0=1, x0=0, weight_decay=0, seed=seed)

    assert average(0) == average(0)  # a seed is one noise stream...
    assert average(0) != average(1)  # ...and another seed another one
    assert average(0, noise=0.0) == average(1, noise=0.0)  # the control: without noise the seed has no effect


def test_normalised_input_has_zero_mean_unit_std_per_channel():
    from components.adamw_l1.models import to_input
    from components.core.augment import channel_stats

    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    images[..., 1] //= 4  # channels with different statistics
    x = to_input(torch.from_numpy(images), channel_stats(images, chunk=10))
    assert x.shape == (64, 3, 32, 32)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    raw = to_input(torch.from_numpy(images))  # control: the [0, 1] mapping leaves every channel off-centre
    assert (raw.mean(dim=(0, 2, 3)) > 0.1).all()


def test_paper_path_probes_resnet18_widths_on_cifar_batches_with_the_recipe(params, tmp_path, monkeypatch):
    """The paper preset (ResNet-18 at several base widths, AdamW, CIFAR-10) on CIFAR-10's own python batches at
    32 x 32, shrunk only in counts (two small widths, 3 steps each): each network sees normalised [B, 3, 32, 32]
    inputs; training batches are pad-crop-flipped, step s with the same crops at every width (a paired
    comparison across d), a new draw each step; the statistics come from the train split alone; evaluation and
    the large-batch gradient are never augmented; the l1/l2 slope over d is fitted and the weights saved."""
    from safetensors.torch import load_file

    import components.adamw_l1.component as adamw_l1
    from components.core.augment import channel_stats
    from components.core.models import build_classifier
    from components.core.shards import ImageShards
    from tests.cifar_format import prepared_cifar10
    from tests.paper_path import record_inputs, record_recipe, run_paper_path

    prepared_cifar10(tmp_path)
    inputs = record_inputs(monkeypatch, adamw_l1, "build_classifier")
    seen = record_recipe(monkeypatch, adamw_l1)
    counts = {"widths": [2, 4], "budget": 3, "batch_size": 8, "true_grad_every": 2, "true_grad_samples": 16}
    result = run_paper_path("adamw_l1", params, counts | {"eval_batch_size": 64}, tmp_path, tmp_path / "runs")
    assert (8, 3, 32, 32) in inputs and {shape[1:] for shape in inputs} == {(3, 32, 32)}
    assert result.metrics and all(math.isfinite(v) for v in result.metrics.values())
    draws = seen["augment_draws"]
    assert len(draws) == 6 and draws[:3] == draws[3:] and len(set(draws)) == 3  # per step, shared by the widths
    splits = {s: ImageShards(tmp_path, "images/cifar10", s).arrays() for s in ("train", "val")}
    assert len(seen["stats_of"]) == 1 and np.array_equal(seen["stats_of"][0], splits["train"][0])
    # evaluation: the last width's saved model on the un-augmented, train-normalised train split
    net = build_classifier("resnet18", 10, 4)
    net.load_state_dict(load_file(str(result.run_dir / "model.safetensors")))
    net.eval()
    images, labels = (torch.from_numpy(a) for a in splits["train"])
    with torch.no_grad():
        train_loss = F.cross_entropy(net(to_input(images, channel_stats(splits["train"][0]))), labels).item()
        raw_loss = F.cross_entropy(net(to_input(images)), labels).item()
    assert result.metrics["w4/train_loss"] == pytest.approx(train_loss, rel=1e-5)
    assert raw_loss != pytest.approx(train_loss, rel=1e-5)  # control: un-normalised inputs give another number
