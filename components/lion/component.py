"""LION (Dong, Li, Lin, arXiv 2411.07724): the box-constrained view of LION with decoupled weight decay,
its KKT residual on a closed-form quadratic, and LION against SGD on networks with the l1/l2 gradient probe."""

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
from components.core.models import build_classifier
from components.core.schedules import ScheduleConfig, make_scheduler
from components.core.shards import ImageShards
from components.core.training import checked_backward, evaluation_due
from components.lion import box, probe, quadratic
from components.lion.config import Config
from components.lion.models import to_input
from components.lion.optimizers import base_learning_rate, make_optimizer, weight_decay

DIGITS = {"task": "digits_mlp", "dataset": "images/digits", "augment": "none", "normalise": False}  # no flips


def _plot(path: Path, title: str, panels: Sequence[tuple[str, list[int], list[float], bool]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=100)
    for ax, (label, xs, ys, log_y) in zip(axes, panels):
        ax.plot(xs, ys)
        ax.set(xlabel="step", ylabel=label, yscale="log" if log_y and min(ys, default=1) > 0 else "linear")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_quadratic(cfg: Config, ctx: RunContext) -> dict[str, float]:
    if ctx.world_size > 1:
        raise RunError("task box_quadratic is a single-process problem; run it with world size 1")
    final, trace = quadratic.solve(cfg, ctx.seed, log=ctx.log if ctx.is_main else None)
    ctx.log(final, step=cfg.budget)
    if ctx.is_main and cfg.plots:
        _plot(
            ctx.run_dir / "curves.png",
            f"box quadratic, {cfg.optimizer}, K = {cfg.budget}",
            [
                ("KKT residual S(x_k)", trace.steps, trace.kkt, True),
                ("max(|x_k| - 1/lambda, 0)", trace.steps, trace.excess, False),
            ],
        )
    return final


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, shards: ImageShards, cfg: Config, device: str, stats: tuple | None
) -> tuple[float, float]:
    """Full-split mean cross-entropy and accuracy, in chunks; never augmented."""
    images, labels = shards.arrays()
    model.eval()
    total, correct = 0.0, 0
    for start in range(0, len(labels), cfg.eval_batch_size):
        x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), stats)
        y = torch.from_numpy(labels[start : start + cfg.eval_batch_size]).to(device)
        logits = model(x)
        total += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    model.train()
    return total / len(labels), correct / len(labels)


def full_batch_gradient(
    model: torch.nn.Module, shards: ImageShards, cfg: Config, device: str, stats: tuple | None
) -> dict[int, torch.Tensor]:
    """The exact gradient of the mean training loss (in eval mode, so BatchNorm uses its running statistics), on
    the training images themselves (not augmented)."""
    images, labels = shards.arrays()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    model.eval()
    for start in range(0, len(labels), cfg.eval_batch_size):
        x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), stats)
        y = torch.from_numpy(labels[start : start + cfg.eval_batch_size]).to(device)
        loss = F.cross_entropy(model(x), y, reduction="sum") / len(labels)
        for total, grad in zip(grads, torch.autograd.grad(loss, params)):
            total += grad.double()
    model.train()
    return {id(p): g for p, g in zip(params, grads)}


def write_tensor_table(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["tensor", "d", "l1", "l2", "r", "rho"])
        writer.writeheader()
        writer.writerows(rows)


def train_network(cfg: Config, ctx: RunContext) -> dict[str, float]:
    train, val, test = (ImageShards(ctx.data_dir, cfg.dataset, split) for split in ("train", "val", "test"))
    if (cfg.task == "digits_mlp") != (tuple(train.shape) == (8, 8)):
        raise RunError(f"task '{cfg.task}' cannot read {cfg.dataset} (images of shape {tuple(train.shape)})")
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")

    stats = channel_stats(train.arrays()[0]) if cfg.normalise else None  # the train split's alone
    torch.manual_seed(ctx.seed)
    net = build_classifier(cfg.task, len(train.classes), cfg.width).to(ctx.device)
    optimizer = make_optimizer(cfg, net)
    decay = box.lambdas(optimizer.param_groups)  # the module's tensors and their lambdas, for the box statistics
    schedule = ScheduleConfig(name="constant") if cfg.theory is not None else cfg.schedule
    scheduler = make_scheduler(optimizer, schedule, cfg.budget)
    model, optimizer, scheduler = ctx.strategy.prepare(net, optimizer, scheduler)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    run_max = {
        "box": resumed.get("box_run_max", 0.0) if resumed else 0.0,
        "rho_min": resumed.get("rho_min", math.inf) if resumed else math.inf,
        "rho_max": resumed.get("rho_max", 0.0) if resumed else 0.0,
    }
    curves: dict[str, list] = {"step": [], "train/loss": [], "grad/rho": [], "box/max_abs_times_lambda": []}
    stream = train.batches(cfg.batch_size, seed=ctx.seed, start_batch=start, rank=ctx.rank, world_size=ctx.world_size)
    for step in ctx.progress(range(start, cfg.budget), total=cfg.budget, initial=start, desc=f"lion {cfg.task}"):
        images, labels = next(stream)
        if cfg.augment == "pad-crop-flip":  # drawn per (seed, step, rank): a resumed run sees the same crops
            images = pad_crop_flip(images, 4, np.random.default_rng([ctx.seed, step, ctx.rank]))
        lr = optimizer.param_groups[0]["lr"]
        loss = F.cross_entropy(
            model(to_input(torch.from_numpy(images).to(ctx.device), stats)), torch.from_numpy(labels).to(ctx.device)
        )
        value = checked_backward(ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr)
        metrics = {"train/loss": value, "lr": lr}
        logging = step % cfg.log_every == 0 or step + 1 == cfg.budget
        grads = probe.parameter_grads(net, ctx.strategy.full_grad) if logging else []
        if grads:  # raw gradients after the rank all-reduce (DeepSpeed: gathered from ZeRO's partitions)
            metrics.update(probe.grad_ratio(grads))
            run_max["rho_min"] = min(run_max["rho_min"], metrics["grad/rho"])
            run_max["rho_max"] = max(run_max["rho_max"], metrics["grad/rho"])
        ctx.strategy.step()
        if logging:
            metrics["box/max_abs_times_lambda"] = box.max_abs_times_lambda(decay)
            run_max["box"] = max(run_max["box"], metrics["box/max_abs_times_lambda"])
            for key in curves:
                curves[key].append(step if key == "step" else metrics.get(key, math.nan))
        if evaluation_due(step + 1, cfg.budget, cfg.eval_every, ctx.evaluations):
            metrics["val/loss"], metrics["val/acc"] = evaluate(model, val, cfg, ctx.device, stats)
        ctx.log(metrics, step=step)
        done = step + 1
        stop = ctx.should_stop()  # once per step: the answer acted on is the one every rank agreed
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(
                done,
                {
                    "data_position": done,
                    "box_run_max": run_max["box"],
                    "rho_min": run_max["rho_min"],
                    "rho_max": run_max["rho_max"],
                },
            )
        if stop and done < cfg.budget:
            raise Preempted(f"stopped at step {done} of {cfg.budget}; resume continues from its checkpoint")

    train_loss, train_acc = evaluate(model, train, cfg, ctx.device, stats)
    val_loss, val_acc = evaluate(model, val, cfg, ctx.device, stats)
    _, test_acc = evaluate(model, test, cfg, ctx.device, stats)
    grads = full_batch_gradient(net, train, cfg, ctx.device, stats)
    names = {id(p): name for name, p in net.named_parameters()}
    rows = probe.per_tensor_table((names[key], grad) for key, grad in grads.items())
    full = probe.grad_ratio(grads.values())
    final = {
        "final/train_loss": train_loss,
        "final/train_acc": train_acc,
        "val/loss": val_loss,
        "val/acc": val_acc,
        "test/acc": test_acc,
        "final/kkt_S": box.network_kkt_residual(decay, grads),  # the exact full-batch gradient
        "final/grad_l1": full["grad/l1"],
        "final/grad_rho": full["grad/rho"],
        "final/rho_slope": probe.log_ratio_slope(rows),
        "box/max_abs_times_lambda": box.max_abs_times_lambda(decay),
        "box/run_max": run_max["box"],
    }
    if math.isfinite(run_max["rho_min"]):
        final.update({"grad/rho_min": run_max["rho_min"], "grad/rho_max": run_max["rho_max"]})
    ctx.log(final, step=cfg.budget)
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    if ctx.is_main:
        write_tensor_table(ctx.run_dir / "grad_ratio_tensors.csv", rows)
        if cfg.plots:
            _plot(
                ctx.run_dir / "curves.png",
                f"{cfg.task}, {cfg.optimizer}",
                [
                    ("train loss (minibatch)", curves["step"], curves["train/loss"], True),
                    ("rho = l1 / (sqrt(d) l2)", curves["step"], curves["grad/rho"], False),
                    ("max lambda |x_i| (decayed)", curves["step"], curves["box/max_abs_times_lambda"], False),
                ],
            )
    return final


class LionComponent:
    name = "lion"
    Config = Config
    own_defaults = {"lr": base_learning_rate, "weight_decay": weight_decay}  # the quadratic's and sgd_plain's own
    presets = {
        "test": {**DIGITS, "budget": 30, "batch_size": 32, "width": 32, "log_every": 5},  # seconds: plumbing only
        # lion.md §6(b): the 64-64-64-10 digits MLP, batch 64, 600 steps; LR and decay stay the optimizer's own
        "smoke": {**DIGITS, "budget": 600, "batch_size": 64, "width": 64, "log_every": 10},
        "paper": {},  # the Config defaults: ResNet-18 on CIFAR-10, 100 epochs, LION at the table's scale
    }
    datasets = ("images/digits", "images/cifar10")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return () if cfg.task == "box_quadratic" else (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        if cfg.task == "box_quadratic":
            return run_quadratic(cfg, ctx)
        return train_network(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        if cfg.task == "box_quadratic":
            return None
        torch.manual_seed(0)
        model = build_classifier(cfg.task, 10, cfg.width)
        optimizer = make_optimizer(cfg, model)
        shape = (2, 8, 8) if cfg.task == "digits_mlp" else (2, 32, 32, 3)
        images = torch.randint(0, 256, shape, dtype=torch.uint8)
        loss = F.cross_entropy(model(to_input(images)), torch.randint(0, 10, (2,)))
        loss.backward()
        optimizer.step()
        return loss.item()


component = LionComponent()
