"""UBA ("Stepsize anything", arXiv 2505.24452): train for a fixed iteration budget under a
budget-aware schedule, or measure the schedule's worst-case residual on the spec's quadratic."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components.core.augment import channel_stats, pad_crop_flip
from components.core.contract import RunContext
from components.core.errors import Preempted, RunError
from components.core.optim import OPTIMIZERS, build_optimizer
from components.core.schedules import make_scheduler, multiplier
from components.core.shards import ImageShards
from components.core.training import checked_step, evaluation_due
from components.uba import quadratic
from components.uba.config import Config
from components.uba.models import build_model, to_input

DIGITS = {"task": "digits_mlp", "dataset": "images/digits", "augment": "none", "normalise": False}  # digits: no flips


def learning_rate(cfg: Config) -> float:
    if cfg.task == "quadratic":
        return cfg.lr if cfg.lr is not None else 1.0 / cfg.quadratic.mu  # eta_max = 1/mu, the matched peak
    return cfg.lr if cfg.lr is not None else OPTIMIZERS[cfg.optimizer].lr


def write_lr_trace(cfg: Config, run_dir: Path) -> np.ndarray:
    """The LR at every optimizer step, from the pure schedule function, as lr.csv and lr.png."""
    base = learning_rate(cfg)
    trace = np.array([base * multiplier(cfg.schedule, step, cfg.budget) for step in range(cfg.budget)])
    with open(run_dir / "lr.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr"])
        writer.writerows((step, repr(float(lr))) for step, lr in enumerate(trace))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(trace)
    label = cfg.schedule.name + (f" (phi={cfg.schedule.phi:g})" if cfg.schedule.name == "uba" else "")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title=f"{label}, budget {cfg.budget}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "lr.png")
    plt.close(fig)
    return trace


def run_quadratic(cfg: Config, ctx: RunContext) -> dict[str, float]:
    trace = write_lr_trace(cfg, ctx.run_dir) if ctx.is_main else None
    if trace is None:
        trace = np.array([learning_rate(cfg) * multiplier(cfg.schedule, s, cfg.budget) for s in range(cfg.budget)])
    curvatures = quadratic.eigenvalues(cfg.quadratic.mu, cfg.quadratic.L, cfg.quadratic.eigenvalues)
    residual = quadratic.worst_residual(trace, curvatures)
    ctx.log({"quad/worst_residual": residual}, step=cfg.budget)
    return {"quad/worst_residual": residual, "quad/log10_worst_residual": math.log10(max(residual, 1e-300))}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, shards: ImageShards, cfg: Config, device: str, stats: tuple | None = None
) -> tuple[float, float]:
    """Full-split mean cross-entropy and accuracy, in chunks; never augmented."""
    images, labels = shards.arrays()
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), cfg.eval_batch_size):
        x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), cfg.task, stats)
        y = torch.from_numpy(labels[start : start + cfg.eval_batch_size]).to(device)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    model.train()
    return total_loss / len(labels), correct / len(labels)


def train_classifier(cfg: Config, ctx: RunContext) -> dict[str, float]:
    train, val, test = (ImageShards(ctx.data_dir, cfg.dataset, split) for split in ("train", "val", "test"))
    expects_digits = cfg.task.startswith("digits")
    if expects_digits != (tuple(train.shape) == (8, 8)):
        raise RunError(f"task '{cfg.task}' cannot read {cfg.dataset} (images of shape {tuple(train.shape)})")
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")

    stats = channel_stats(train.arrays()[0]) if cfg.normalise else None  # the train split's alone
    torch.manual_seed(ctx.seed)
    model = build_model(cfg.task, len(train.classes), cfg.width).to(ctx.device)
    optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.budget)
    model, optimizer, scheduler = ctx.strategy.prepare(model, optimizer, scheduler)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    stream = train.batches(cfg.batch_size, seed=ctx.seed, start_batch=start, rank=ctx.rank, world_size=ctx.world_size)
    for step in ctx.progress(range(start, cfg.budget), total=cfg.budget, initial=start, desc=f"uba {cfg.task}"):
        images, labels = next(stream)
        if cfg.augment == "pad-crop-flip":  # drawn per (seed, step, rank): a resumed run sees the same crops
            images = pad_crop_flip(images, 4, np.random.default_rng([ctx.seed, step, ctx.rank]))
        lr = optimizer.param_groups[0]["lr"]
        logits = model(to_input(torch.from_numpy(images).to(ctx.device), cfg.task, stats))
        loss = F.cross_entropy(logits, torch.from_numpy(labels).to(ctx.device))
        value = checked_step(
            ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr, hint="lower lr or change schedule"
        )
        metrics = {"train/loss": value, "lr": lr}
        if evaluation_due(step + 1, cfg.budget, cfg.eval_every, ctx.evaluations):
            metrics["val/loss"], metrics["val/acc"] = evaluate(model, val, cfg, ctx.device, stats)
        ctx.log(metrics, step=step)
        done = step + 1
        stop = ctx.should_stop()  # once per step: the answer acted on is the one every rank agreed
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done})
        if stop and done < cfg.budget:
            raise Preempted(f"stopped at step {done} of {cfg.budget}; resume continues from its checkpoint")

    train_loss, train_acc = evaluate(model, train, cfg, ctx.device, stats)
    val_loss, val_acc = evaluate(model, val, cfg, ctx.device, stats)
    _, test_acc = evaluate(model, test, cfg, ctx.device, stats)
    final = {
        "final/train_loss": train_loss,
        "final/train_acc": train_acc,
        "val/loss": val_loss,
        "val/acc": val_acc,
        "test/acc": test_acc,
    }
    ctx.log(final, step=cfg.budget)
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    if ctx.is_main:
        write_lr_trace(cfg, ctx.run_dir)
    return final


class UBA:
    name = "uba"
    Config = Config
    own_defaults = {"lr": learning_rate}  # the quadratic's peak is 1/mu, not the optimizer table's lr
    presets = {
        "test": {**DIGITS, "budget": 30, "batch_size": 32, "width": 32},  # seconds: plumbing only
        "smoke": {**DIGITS, "budget": 300, "batch_size": 64, "width": 64},  # uba.md §6: the 64-64-64-10 MLP
        "paper": {},  # the Config defaults: ResNet-18 on CIFAR-10, 100 epochs
    }
    datasets = ("images/digits", "images/cifar10")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return () if cfg.task == "quadratic" else (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        if cfg.task == "quadratic":
            return run_quadratic(cfg, ctx)
        return train_classifier(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        if cfg.task == "quadratic":
            return None
        torch.manual_seed(0)
        model = build_model(cfg.task, 10, cfg.width)
        optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        shape = (2, 8, 8) if cfg.task.startswith("digits") else (2, 32, 32, 3)
        images = torch.randint(0, 256, shape, dtype=torch.uint8)
        loss = F.cross_entropy(model(to_input(images, cfg.task)), torch.randint(0, 10, (2,)))
        loss.backward()
        optimizer.step()
        return loss.item()


component = UBA()
