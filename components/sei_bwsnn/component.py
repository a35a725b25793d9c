"""SEI-BWSNN (arXiv 2508.12609): binary-weight SNNs trained as a self-ensemble of binary-activation networks,
with multiple real-valued shortcuts and distillation from a full-precision teacher."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file

from components.core.augment import random_resized_crop_flip
from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted, RunError
from components.core.optim import build_optimizer
from components.core.schedules import make_scheduler
from components.core.shards import ImageShards
from components.core.training import checked_step, raise_if_diverged
from components.sei_bwsnn.binary import binary_weight_fraction, model_size_bits
from components.sei_bwsnn.config import Config
from components.sei_bwsnn.distill import sei_loss
from components.sei_bwsnn.model import build_external_teacher, build_model, to_input
from components.snn import record_spike_rates

TEACHER_FILE = "teacher.safetensors"
DIGITS_MLP = {
    "dataset": "images/digits",
    "image_size": 8,
    "arch": "mlp",
    "width": 128,
    "depth": 3,
    "lr": 2e-3,
    "schedule": {"name": "constant"},
    "batch_size": 64,
    "augment": "none",  # 8x8 grey digits: a mirrored or cropped digit is another digit
    "normalise": False,  # ImageNet's statistics are RGB's: digits stay pixels / 255
}  # sei_bwsnn.md §6 (Adam 2e-3, batch 64)


def teacher_path(cfg: Config) -> Path | None:
    """The teacher file a run reads (None: it trains its own, or needs none)."""
    if cfg.kd.beta == 0 or cfg.kd.teacher in ("train", "none"):
        return None
    path = Path(cfg.kd.teacher)
    return path / TEACHER_FILE if path.is_dir() else path


def train_input(cfg: Config, images: np.ndarray, rng: np.random.Generator, device: str) -> torch.Tensor:
    """A training batch: ImageNet's random-resized crop + flip at the stored side (augment), then the same
    to_input as evaluation (mean/std when normalise). Evaluation never comes here: it reads the stored images."""
    if cfg.augment == "random-resized-crop-flip":
        images = random_resized_crop_flip(images, images.shape[1], rng, scale=cfg.crop_scale)
    return to_input(torch.from_numpy(images).to(device), cfg.arch, cfg.normalise)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, cfg: Config, device: str) -> torch.Tensor:
    """Per-step logits [T, N, C] over a whole split, in chunks, in eval mode."""
    was_training = model.training
    model.eval()
    chunks = [
        model(to_input(torch.from_numpy(images[i : i + cfg.eval_batch_size]).to(device), cfg.arch, cfg.normalise))
        for i in range(0, len(images), cfg.eval_batch_size)
    ]
    model.train(was_training)
    return torch.cat(chunks, dim=1).cpu()


def accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    return (top == labels[:, None]).any(dim=-1).float().mean().item()


def train_teacher(cfg: Config, ctx: RunContext, train: ImageShards) -> torch.nn.Module:
    """A full-precision ANN of the student's shape (ReLU, real weights, one step), trained with CE.

    Every rank trains the same teacher on the full batch (same seed), so no collective is needed; a paper-scale
    run should load a teacher instead (kd.teacher = a run directory)."""
    teacher = build_model(cfg, tuple(train.shape), len(train.classes), teacher=True).to(ctx.device)
    optimizer = build_optimizer(cfg.optimizer, teacher, lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget = cfg.kd.teacher_epochs * max(1, len(train) // cfg.batch_size)
    scheduler = make_scheduler(optimizer, cfg.schedule, budget)
    stream = train.batches(cfg.batch_size, seed=ctx.seed + 10_000)  # its own order: not the student's batches
    for step in ctx.progress(range(budget), total=budget, desc="sei_bwsnn teacher"):
        images, labels = next(stream)
        x = train_input(cfg, images, np.random.default_rng([ctx.seed + 10_000, step]), ctx.device)  # same on all ranks
        logits = teacher(x)[0]
        loss = F.cross_entropy(logits, torch.from_numpy(labels).to(ctx.device))
        # non-finite only: divergence_limit is the student's
        raise_if_diverged(loss.item(), step=step, limit=math.inf, what="teacher loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return teacher


def teacher_heads(cfg: Config) -> int:
    """The attention heads of a loaded teacher: kd.teacher_heads, else its run directory's config.yaml (a
    sei_bwsnn run's teacher shares that run's heads), else the student's."""
    if cfg.kd.teacher_heads is not None:
        return cfg.kd.teacher_heads
    run_config = Path(cfg.kd.teacher) / "config.yaml"
    if run_config.is_file():
        return int(yaml.safe_load(run_config.read_text()).get("heads", cfg.heads))
    return cfg.heads


def load_or_train_teacher(cfg: Config, ctx: RunContext, train: ImageShards) -> torch.nn.Module | None:
    if cfg.kd.beta == 0:
        return None
    given = teacher_path(cfg)
    saved = given or ctx.run_dir / TEACHER_FILE  # a resumed run reuses the teacher it trained
    if given is not None:  # an external teacher: its architecture is read off its weights
        try:
            teacher = build_external_teacher(
                cfg, load_file(str(given)), tuple(train.shape), len(train.classes), teacher_heads(cfg)
            )
        except (RuntimeError, ValueError, KeyError) as err:
            raise RunError(
                f"kd.teacher {given} does not fit {cfg.dataset} ({tuple(train.shape)}, {len(train.classes)} "
                f"classes): {str(err).splitlines()[0]}"
            ) from err
        return teacher.to(ctx.device).eval()
    if saved.is_file():
        teacher = build_model(cfg, tuple(train.shape), len(train.classes), teacher=True)
        try:
            teacher.load_state_dict(load_file(str(saved)))
        except RuntimeError as err:
            raise RunError(
                f"{saved} does not fit kd.teacher_width={cfg.kd.teacher_width}, arch {cfg.arch}: "
                f"{str(err).splitlines()[0]}"
            ) from err
        return teacher.to(ctx.device).eval()
    teacher = train_teacher(cfg, ctx, train)
    if ctx.is_main:
        partial = saved.with_name(f".{saved.name}.partial")
        save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(partial))
        partial.replace(saved)
    return teacher.eval()


def evaluate(
    model: torch.nn.Module,
    shards: ImageShards,
    cfg: Config,
    device: str,
    prefix: str,
    fanout: dict[str, int] | None = None,
) -> dict[str, float]:
    images, labels = shards.arrays()
    labels = torch.from_numpy(labels)
    if fanout is None:
        step_logits = predict(model, images, cfg, device)
    else:
        with record_spike_rates(model) as stats:
            step_logits = predict(model, images, cfg, device)
    mean_logits = step_logits.mean(dim=0)
    metrics = {
        f"{prefix}/loss": F.cross_entropy(mean_logits, labels).item(),
        f"{prefix}/acc": accuracy(mean_logits, labels),
    }
    if fanout is None:
        return metrics
    per_step = [accuracy(logits, labels) for logits in step_logits]
    metrics |= {
        f"{prefix}/top5": accuracy(mean_logits, labels, k=5),
        f"{prefix}/ensemble_gain": metrics[f"{prefix}/acc"] - float(np.mean(per_step)),
    }
    metrics |= {f"{prefix}/acc_step_{t + 1}": acc for t, acc in enumerate(per_step)}
    metrics |= {f"spike_rate/{name}": rate for name, rate in stats.rates().items()}
    metrics["spike_rate"] = stats.overall()
    # synaptic operations per sample: every spike drives its next linear layer's outputs (an add or a subtract);
    # spike Q/K/V feed attention products, which fanout leaves out
    metrics["synops_per_sample"] = sum(stats.spikes[name] * fanout.get(name, 0) for name in stats.spikes) / len(labels)
    return metrics


def write_step_plot(metrics: dict[str, float], cfg: Config, run_dir: Path, prefix: str = "test") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [metrics[f"{prefix}/acc_step_{t + 1}"] for t in range(cfg.steps)]
    layers = sorted(k for k in metrics if k.startswith("spike_rate/"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.bar(
        [str(t + 1) for t in range(cfg.steps)] + ["mean"],
        steps + [metrics[f"{prefix}/acc"]],
        color=["tab:gray"] * cfg.steps + ["tab:blue"],
    )
    left.set(
        xlabel="time step (ensemble member)",
        ylabel=f"{prefix} accuracy",
        ylim=(0, 1),
        title=f"self-ensemble, T={cfg.steps}, {'binary' if cfg.binary else 'FP'} weights",
    )
    right.barh([k.removeprefix("spike_rate/") for k in layers], [metrics[k] for k in layers])
    right.set(xlabel="spikes per neuron per step", title=f"firing rates (mean {metrics['spike_rate']:.3f})")
    fig.tight_layout()
    partial = run_dir / ".ensemble.partial.png"
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(run_dir / "ensemble.png")


def train_student(cfg: Config, ctx: RunContext) -> dict[str, float]:
    train, val, test = (ImageShards(ctx.data_dir, cfg.dataset, split) for split in ("train", "val", "test"))
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")
    if cfg.image_size is not None and tuple(train.shape)[:2] != (cfg.image_size, cfg.image_size):
        raise ConfigError(
            f"{cfg.dataset} holds {train.shape[0]}x{train.shape[1]} images, the run needs "
            f"{cfg.image_size}x{cfg.image_size}: prepare it with --set size={cfg.image_size} (or set image_size)"
        )
    if cfg.normalise and (len(train.shape) != 3 or train.shape[2] != 3):
        raise ConfigError(f"normalise uses ImageNet's RGB mean/std and {cfg.dataset} is not RGB: set normalise=false")
    if cfg.arch == "transformer" and any(side % cfg.patch for side in tuple(train.shape)[:2]):
        raise ConfigError(f"patch {cfg.patch} does not divide {cfg.dataset}'s image size {tuple(train.shape)[:2]}")
    path = teacher_path(cfg)
    if path is not None and not path.is_file():
        raise ConfigError(f"kd.teacher: no teacher weights at {path} (a sei_bwsnn run directory has {TEACHER_FILE})")

    torch.manual_seed(ctx.seed)
    teacher = load_or_train_teacher(cfg, ctx, train)
    torch.manual_seed(ctx.seed)
    model = build_model(cfg, tuple(train.shape), len(train.classes)).to(ctx.device)
    fanout, raw_model = model.fanout, model
    optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    budget = cfg.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, cfg.schedule, budget)
    model, optimizer, scheduler = ctx.strategy.prepare(model, optimizer, scheduler)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    stream = train.batches(cfg.batch_size, seed=ctx.seed, start_batch=start, rank=ctx.rank, world_size=ctx.world_size)
    for step in ctx.progress(range(start, budget), total=budget, initial=start, desc=f"sei_bwsnn T={cfg.steps}"):
        images, labels = next(stream)
        # drawn per (seed, step, rank): a resumed run sees the same crops; the teacher sees the student's x
        x = train_input(cfg, images, np.random.default_rng([ctx.seed, step, ctx.rank]), ctx.device)
        labels = torch.from_numpy(labels).to(ctx.device)
        lr = optimizer.param_groups[0]["lr"]
        step_logits = model(x)
        with torch.no_grad():
            teacher_logits = teacher(x)[0] if teacher is not None else None
        loss = sei_loss(step_logits, labels, teacher_logits, cfg.kd.beta, cfg.kd.tau, cfg.kd.target)
        value = checked_step(ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr)
        metrics = {"train/loss": value, "lr": lr}
        done = step + 1
        if done % steps_per_epoch == 0 and done < budget and len(val):
            metrics |= evaluate(raw_model, val, cfg, ctx.device, "val")
        ctx.log(metrics, step=step)
        stop = ctx.should_stop()  # once per step: the answer acted on is the one every rank agreed
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done})
        if stop and done < budget:
            raise Preempted(f"stopped at step {done} of {budget}; resume continues from its checkpoint")

    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")  # first: an evaluation error keeps the weights
    # a split without samples (ImageNet's layout has train/ and val/ only) is not evaluated; the last split that
    # has samples (test, else val: ImageNet's val is the paper's test set) gets the full self-ensemble report
    evaluated = [(split, prefix) for split, prefix in ((val, "val"), (test, "test")) if len(split)]
    final: dict[str, float] = {}
    for split, prefix in evaluated:
        reported = prefix == evaluated[-1][1]
        final |= evaluate(raw_model, split, cfg, ctx.device, prefix, fanout if reported else None)
    final |= {
        "binary_weight_fraction": binary_weight_fraction(raw_model) if cfg.binary else 0.0,
        "model_size_bits": float(model_size_bits(raw_model)),
    }
    if teacher is not None and evaluated:
        split, prefix = evaluated[-1]
        images, labels = split.arrays()
        final[f"teacher/{prefix}_acc"] = accuracy(
            predict(teacher, images, cfg, ctx.device)[0], torch.from_numpy(labels)
        )
    ctx.log(final, step=budget)
    if ctx.is_main and evaluated:
        write_step_plot(final, cfg, ctx.run_dir, evaluated[-1][1])
    return final


class SEIBWSNN:
    name = "sei_bwsnn"
    Config = Config
    presets = {
        # seconds: the plumbing, KD and the transformer path on 8x8 digits (patch 2: 16 tokens)
        "test": {
            **DIGITS_MLP,
            "arch": "transformer",
            "width": 16,
            "depth": 1,
            "heads": 2,
            "patch": 2,
            "epochs": 1,
            "batch_size": 100,
            "kd": {"teacher_width": 16, "teacher_epochs": 1},
        },
        # sei_bwsnn.md §6: 64-128-(128 binary)x3-10, T=2, 20 epochs; teacher 256 wide, 30 epochs
        "smoke": {**DIGITS_MLP, "steps": 2, "epochs": 20, "kd": {"teacher_width": 256, "teacher_epochs": 30}},
        "paper": {},  # the Config defaults: ImageNet, spiking Transformer 8-512, binary FFN, T=2, 300 epochs
    }
    datasets = ("images/digits", "images/imagenet")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return train_student(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        """One optimizer step of the paper-scale student on one random 224x224 image (no teacher)."""
        torch.manual_seed(0)
        side = cfg.image_size or 224
        shape = (side, side) if cfg.dataset == "images/digits" else (side, side, 3)
        classes = 10 if cfg.dataset == "images/digits" else 1000
        model = build_model(cfg, shape, classes)
        optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
        x = to_input(images, cfg.arch, cfg.normalise and len(shape) == 3)
        loss = sei_loss(model(x), torch.randint(0, classes, (2,)), None, 0.0, 1.0, "mean")
        loss.backward()
        optimizer.step()
        return loss.item()


component = SEIBWSNN()
