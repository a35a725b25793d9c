"""adamw_l1 ("On the O(sqrt(d)/K^{1/4}) convergence rate of AdamW measured by l1 norm", arXiv 2505.11840):
train one model family at several widths and log ||g||_1, ||g||_2 and rho = ||g||_1 / (sqrt(d) ||g||_2)
of the raw full gradient at every step, then fit the slope of log(l1/l2) against log d; or run the
rate sanity check on the stochastic quadratic.

The widths are one run (a list in the Config) rather than a sweep axis: the slope across d is the
paper's claim, so it is a metric of one run, and a sweep over the optimizer compares slopes directly.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from components.adamw_l1 import plots, quadratic
from components.adamw_l1.config import Config
from components.adamw_l1.models import to_input
from components.adamw_l1.probe import NormStats, gradient_norms, loglog_slope, vector_stats
from components.core.augment import channel_stats, pad_crop_flip
from components.core.contract import RunContext
from components.core.errors import Preempted, RunError
from components.core.models import build_classifier
from components.core.optim import build_optimizer
from components.core.schedules import make_scheduler
from components.core.shards import ImageShards
from components.core.training import checked_backward

DIGITS = {
    "task": "digits_mlp",
    "dataset": "images/digits",
    "schedule": {"name": "constant"},
    "augment": "none",
    "normalise": False,
}
# The per-step record of one width: global step, step within the width, loss, lr, l1, l2, r, rho, and
# rho of the running averages A1(k) / (sqrt(d) A2(k)) (§3.4 step 4).
RECORD = ("step", "width_step", "loss", "lr", "l1", "l2", "ratio", "rho", "rho_avg")
TRUE_RECORD = ("step", "width_step", "l1", "l2", "ratio", "rho")


def run_quadratic(cfg: Config, ctx: RunContext) -> dict[str, float]:
    q = cfg.quadratic
    averages = [
        quadratic.averaged_l1(
            k,
            dim=q.dim,
            low=q.curvature_min,
            high=q.curvature_max,
            noise=q.noise,
            eta0=q.eta0,
            x0=q.x0,
            weight_decay=q.weight_decay,
            seed=ctx.seed,
        )
        for k in q.horizons
    ]
    metrics = {f"quad/avg_l1/K{k}": a for k, a in zip(q.horizons, averages)}
    ratios = {f"quad/ratio/K{k}": a / prev for k, a, prev in zip(q.horizons[1:], averages[1:], averages)}
    metrics.update(ratios)
    metrics["quad/max_ratio"] = max(ratios.values())
    metrics["quad/rate_exponent"] = -loglog_slope(q.horizons, averages)  # 1/4 for exactly K^(-1/4)
    for k, a in zip(q.horizons, averages):
        ctx.log({"quad/avg_l1": a}, step=k)
    if ctx.is_main:
        plots.quadratic_rate(ctx.run_dir / "quadratic_rate.png", q.horizons, averages)
    return metrics


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, cfg: Config, device: str, stats: tuple | None
) -> tuple[float, float]:
    """Full-split mean cross-entropy and accuracy, in chunks; never augmented."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), cfg.eval_batch_size):
        x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), stats)
        y = torch.from_numpy(labels[start : start + cfg.eval_batch_size]).to(device)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(labels), correct / len(labels)


def true_gradient(
    model: torch.nn.Module,
    named: Sequence[tuple[str, torch.nn.Parameter]],
    images: np.ndarray,
    labels: np.ndarray,
    cfg: Config,
    ctx: RunContext,
    stats: tuple | None,
) -> NormStats:
    """Norms of the gradient of the mean loss over `images` (the large-batch estimate of grad f, §3.4 step 3).

    Computed with autograd.grad on the unwrapped model, so neither .grad nor DDP's hooks see it; batch-norm
    running statistics are put back afterwards, so the measurement leaves training untouched. Each rank
    takes every world_size-th sample and the per-rank sums are averaged across ranks. The images are not
    augmented: grad f is the gradient of the loss on the training set itself.
    """
    params = [param for _, param in named]
    sums = [torch.zeros_like(param) for param in params]
    buffers = [buffer.clone() for buffer in model.buffers()]
    share = np.arange(ctx.rank, len(labels), ctx.world_size)
    for start in range(0, len(share), cfg.eval_batch_size):
        rows = share[start : start + cfg.eval_batch_size]
        x = to_input(torch.from_numpy(images[rows]).to(ctx.device), stats)
        y = torch.from_numpy(labels[rows]).to(ctx.device)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        for total, grad in zip(sums, torch.autograd.grad(loss, params)):
            total.add_(grad)
    with torch.no_grad():
        for buffer, saved in zip(model.buffers(), buffers):
            buffer.copy_(saved)
    flat = torch.cat([total.flatten() for total in sums])
    flat = ctx.strategy.mean_across_ranks(flat) * (ctx.world_size / len(labels))
    return vector_stats(flat)


def summarise_width(
    width: int, d: int, records: np.ndarray, true_records: np.ndarray, final: dict[str, float]
) -> dict[str, float]:
    rho, ratio = records[:, RECORD.index("rho")], records[:, RECORD.index("ratio")]
    summary = {
        "width": float(width),
        "d": float(d),
        "rho_min": float(rho.min()),
        "rho_max": float(rho.max()),
        "rho_mean": float(rho.mean()),
        "ratio_mean": float(ratio.mean()),
        "rho_avg": float(records[-1, RECORD.index("rho_avg")]),
        **final,
    }
    if len(true_records):
        true_rho = true_records[:, TRUE_RECORD.index("rho")]
        summary.update(
            true_rho_min=float(true_rho.min()),
            true_rho_max=float(true_rho.max()),
            true_rho_mean=float(true_rho.mean()),
            true_ratio_mean=float(true_records[:, TRUE_RECORD.index("ratio")].mean()),
        )
    return summary


WIDTH_METRICS = (
    "d",
    "rho_min",
    "rho_max",
    "rho_mean",
    "ratio_mean",
    "rho_avg",
    "true_rho_mean",
    "true_ratio_mean",
    "train_loss",
    "val_acc",
    "test_acc",
)  # the rest of a width's summary is in widths.csv


def width_metrics(summary: dict[str, Any]) -> dict[str, float]:
    prefix = f"w{int(summary['width'])}"
    return {f"{prefix}/{key}": summary[key] for key in WIDTH_METRICS if key in summary}


def train_width(
    cfg: Config, ctx: RunContext, data: dict[str, Any], index: int, resume: bool, done_widths: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Train widths[index] for `budget` steps, probing the gradient; returns done_widths plus this width."""
    width, budget = cfg.widths[index], cfg.budget
    torch.manual_seed(ctx.seed)  # every width starts from the same seed and reads the same batches
    model = build_classifier(cfg.task, len(data["classes"]), width).to(ctx.device)
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    d = sum(param.numel() for _, param in named)
    optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.schedule, budget)
    wrapped, optimizer, scheduler = ctx.strategy.prepare(model, optimizer, scheduler, grad_clip=cfg.grad_clip)

    start, records, true_records = 0, [], []
    tensor_sums = np.zeros((len(named), 4))  # per tensor, summed over probed steps: l1, l2, r, rho
    if resume:
        state = ctx.checkpoint.restore()
        if state is None or state.get("width_index") != index:
            raise RunError(f"the checkpoint does not belong to width {width} (index {index}); start a new run")
        start, done_widths = state["data_position"], list(state["done_widths"])
        records, true_records = list(state["records"]), list(state["true_records"])
        tensor_sums = np.array(state["tensor_sums"])
    a1, a2 = (sum(r[RECORD.index("l1")] for r in records), sum(r[RECORD.index("l2")] for r in records))

    stream = data["shards"].batches(
        cfg.batch_size, seed=ctx.seed, start_batch=start, rank=ctx.rank, world_size=ctx.world_size
    )
    for step in ctx.progress(range(start, budget), total=budget, initial=start, desc=f"adamw_l1 w={width}"):
        global_step = index * budget + step
        metrics: dict[str, float] = {"model/width": width, "grad/d": d}
        if cfg.true_grad_every and step % cfg.true_grad_every == 0:
            true = true_gradient(model, named, data["true_images"], data["true_labels"], cfg, ctx, data["stats"])
            true_records.append((global_step, step, true.l1, true.l2, true.ratio, true.rho))
            metrics.update({"grad_true/l1": true.l1, "grad_true/l2": true.l2, "grad_true/rho": true.rho})
        images, labels = next(stream)
        if cfg.augment == "pad-crop-flip":  # per (seed, step, rank): every width sees the same crops, as on resume
            images = pad_crop_flip(images, 4, np.random.default_rng([ctx.seed, step, ctx.rank]))
        lr = optimizer.param_groups[0]["lr"]
        loss = F.cross_entropy(
            wrapped(to_input(torch.from_numpy(images).to(ctx.device), data["stats"])),
            torch.from_numpy(labels).to(ctx.device),
        )
        value = checked_backward(
            ctx,
            loss,
            step=step,
            limit=cfg.divergence_limit,
            lr=lr,
            hint="lower lr or change the schedule",
            context=f"of width {width}",
        )
        if step % cfg.log_every == 0 or step == budget - 1:
            total, per_tensor = gradient_norms(named, grad_of=ctx.strategy.full_grad)  # raw: before clip and step
            if not (math.isfinite(total.l1) and math.isfinite(total.l2)):
                raise RunError(f"non-finite gradient at step {step} of width {width}: lower lr")
            a1, a2 = a1 + total.l1, a2 + total.l2
            rho_avg = a1 / (math.sqrt(d) * a2) if a2 > 0 else math.nan
            records.append((global_step, step, value, lr, total.l1, total.l2, total.ratio, total.rho, rho_avg))
            tensor_sums += np.array([[s.l1, s.l2, s.ratio, s.rho] for s in per_tensor.values()])
            metrics.update(
                {
                    "grad/l1": total.l1,
                    "grad/l2": total.l2,
                    "grad/ratio": total.ratio,
                    "grad/rho": total.rho,
                    "grad/rho_avg": rho_avg,
                }
            )
        ctx.strategy.step()  # clips with cfg.grad_clip (after the probe above read the raw gradient)
        metrics.update({"train/loss": value, "lr": lr})
        done = step + 1
        if done == budget:
            final = {}
            for split in ("train", "val", "test"):
                final[f"{split}_loss"], final[f"{split}_acc"] = evaluate(
                    model, *data[split], cfg, ctx.device, data["stats"]
                )
            summary = summarise_width(width, d, np.array(records), np.array(true_records).reshape(-1, 6), final)
            summary["tensors"] = {
                name: (param.numel(), *(float(v) for v in tensor_sums[row] / len(records)))
                for row, (name, param) in enumerate(named)
            }
            summary["records"], summary["true_records"] = records, true_records
            done_widths = [*done_widths, summary]
            metrics.update(width_metrics(summary))
            last = index == len(cfg.widths) - 1
            ctx.strategy.save_weights(ctx.run_dir / ("model.safetensors" if last else f"model-w{width}.safetensors"))
        ctx.log(metrics, step=global_step)
        global_done = index * budget + done
        stopping = ctx.should_stop() and global_done < budget * len(cfg.widths)
        if ctx.checkpoint is not None and (ctx.checkpoint.due(global_done) or stopping):
            ctx.checkpoint.save(
                global_done,
                {
                    "data_position": done,
                    "width_index": index,
                    "done_widths": done_widths,
                    "records": records,
                    "true_records": true_records,
                    "tensor_sums": tensor_sums.tolist(),
                },
            )
        if stopping:
            raise Preempted(
                f"stopped at step {done} of width {width} ({global_done} of "
                f"{budget * len(cfg.widths)}); resume continues from its checkpoint"
            )
    return done_widths


def load_data(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    splits = {split: ImageShards(ctx.data_dir, cfg.dataset, split) for split in ("train", "val", "test")}
    shape = tuple(splits["train"].shape)
    if (cfg.task == "digits_mlp") != (shape == (8, 8)) or (cfg.task == "resnet18" and shape[-1:] != (3,)):
        raise RunError(f"task '{cfg.task}' cannot read {cfg.dataset} (images of shape {shape})")
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")
    data: dict[str, Any] = {"shards": splits["train"], "classes": splits["train"].classes}
    for split, shards in splits.items():
        data[split] = shards.arrays()  # (images, labels) for the end-of-width evaluation
    count = (
        len(data["train"][1]) if cfg.true_grad_samples is None else min(cfg.true_grad_samples, len(data["train"][1]))
    )
    data["true_images"], data["true_labels"] = data["train"][0][:count], data["train"][1][:count]
    data["stats"] = channel_stats(data["train"][0]) if cfg.normalise else None  # the train split's alone
    return data


def train_widths(cfg: Config, ctx: RunContext) -> dict[str, float]:
    data = load_data(cfg, ctx)
    resume_step = ctx.checkpoint.latest_step() if ctx.checkpoint is not None else 0
    first = (resume_step - 1) // cfg.budget if resume_step else 0  # the checkpoint after step s is width (s-1)//budget
    done_widths: list[dict[str, Any]] = []
    for index in range(first, len(cfg.widths)):
        done_widths = train_width(
            cfg, ctx, data, index, resume=resume_step > 0 and index == first, done_widths=done_widths
        )

    metrics: dict[str, float] = {}
    for summary in done_widths:
        metrics.update(width_metrics(summary))
    all_rho = np.concatenate([np.array(s["records"])[:, RECORD.index("rho")] for s in done_widths])
    sizes = [s["d"] for s in done_widths]
    metrics.update(
        rho_min=float(all_rho.min()),
        rho_max=float(all_rho.max()),
        rho_mean=float(all_rho.mean()),
        loglog_slope=loglog_slope(sizes, [s["ratio_mean"] for s in done_widths]),
    )
    if all("true_ratio_mean" in s for s in done_widths):
        metrics["loglog_slope_true"] = loglog_slope(sizes, [s["true_ratio_mean"] for s in done_widths])
    tensor_points = [(d_j, r_j) for s in done_widths for d_j, _, _, r_j, _ in s["tensors"].values() if d_j > 1]
    metrics["tensor_slope"] = loglog_slope([p[0] for p in tensor_points], [p[1] for p in tensor_points])
    ctx.log(
        {key: metrics[key] for key in ("rho_min", "rho_max", "rho_mean", "loglog_slope")},
        step=cfg.budget * len(cfg.widths),
    )
    if ctx.is_main:
        write_tables(ctx.run_dir, done_widths)
        plots.ratio_against_d(ctx.run_dir / "ratio_vs_d.png", done_widths, metrics, cfg.optimizer)
        plots.rho_over_steps(ctx.run_dir / "rho_vs_step.png", done_widths, cfg.optimizer)
    return metrics


def write_tables(run_dir: Path, done_widths: Sequence[dict[str, Any]]) -> None:
    """grad_norms.csv (every probed step), grad_norms_true.csv, tensors.csv (per-tensor means), widths.csv."""
    with open(run_dir / "grad_norms.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["width", "d", *RECORD])
        for s in done_widths:
            writer.writerows([int(s["width"]), int(s["d"]), *map(repr, row)] for row in s["records"])
    with open(run_dir / "grad_norms_true.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["width", "d", *TRUE_RECORD])
        for s in done_widths:
            writer.writerows([int(s["width"]), int(s["d"]), *map(repr, row)] for row in s["true_records"])
    with open(run_dir / "tensors.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["width", "tensor", "d", "l1_mean", "l2_mean", "ratio_mean", "rho_mean"])
        for s in done_widths:
            writer.writerows([int(s["width"]), name, *map(repr, values)] for name, values in s["tensors"].items())
    keys = [key for key, value in done_widths[0].items() if isinstance(value, float)]
    with open(run_dir / "widths.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        writer.writerows(
            [int(s[key]) if key in ("width", "d") else repr(s.get(key, math.nan)) for key in keys] for s in done_widths
        )


class AdamWL1:
    name = "adamw_l1"
    Config = Config
    presets = {
        # seconds: plumbing only
        "test": {
            **DIGITS,
            "widths": [8, 16],
            "budget": 20,
            "batch_size": 32,
            "true_grad_every": 10,
            "true_grad_samples": 256,
        },
        # adamw_l1.md §6: MLP 64-w-w-10, w in {16, 64, 256}, batch 64, 600 steps; large-batch gradient on the
        # whole training split every 50 steps
        "smoke": {
            **DIGITS,
            "widths": [16, 64, 256],
            "budget": 600,
            "batch_size": 64,
            "true_grad_every": 50,
            "true_grad_samples": None,
        },
        "paper": {},  # the Config defaults: ResNet-18 at base widths 16-128 on CIFAR-10, 100 epochs each
    }
    datasets = ("images/digits", "images/cifar10")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return () if cfg.task == "quadratic" else (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        if cfg.task == "quadratic":
            return run_quadratic(cfg, ctx)
        return train_widths(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        """One step of the widest model of cfg on random images, with the probe, as a paper-scale smoke."""
        if cfg.task == "quadratic":
            return None
        torch.manual_seed(0)
        model = build_classifier(cfg.task, 10, cfg.widths[-1])
        optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        shape = (2, 8, 8) if cfg.task == "digits_mlp" else (2, 32, 32, 3)
        loss = F.cross_entropy(
            model(to_input(torch.randint(0, 256, shape, dtype=torch.uint8))), torch.randint(0, 10, (2,))
        )
        loss.backward()
        total, _ = gradient_norms(list(model.named_parameters()))
        optimizer.step()
        return loss.item() if math.isfinite(total.rho) else math.nan


component = AdamWL1()
