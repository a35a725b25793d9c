"""LieSD ("Symmetry Discovery for Different Data Types", arXiv 2410.09841): train an MLP on a task, stack
J_f(x) A x = B f(x) over the data into a homogeneous linear system, and read the symmetry's Lie algebra off
the smallest singular values; the gap rule counts the bases, the subspace error scores them against the truth.

The task data are procedural, drawn from the run's seed (no prepared dataset): moment of inertia (tensor
output) and the two-body orbits (multi-channel vectors).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from components.core.contract import RunContext
from components.core.errors import Preempted, RunError
from components.core.files import atomic_write_json
from components.core.optim import build_optimizer
from components.core.schedules import make_scheduler
from components.core.training import checked_step
from components.liesd import evaluation, plots, tasks
from components.liesd.config import Config
from components.liesd.discovery import discover, gram_matrix
from components.liesd.models import mlp
from components.liesd.systems import layout

SMOKE = {  # liesd.md §6: inertia, tensor form, N = 2000, 9-128-128-9 SiLU, Adam 3e-3 cosine, batch 256, 200 epochs
    "task": "inertia",
    "form": "auto",
    "inertia": {"samples": 2000},
    "two_body": {"trajectories": 50},
    "width": 128,
    "activation": "silu",
    "epochs": 200,
    "batch_size": 256,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 0.0,
    "schedule": {"name": "cosine"},
}
TEST = {
    **SMOKE,
    "inertia": {"samples": 256},
    "two_body": {"trajectories": 10},
    "width": 32,
    "epochs": 3,
    "batch_size": 64,
}
OFFICIAL_EVAL_COUNT = {("inertia", "multichannel"): 26}  # visualization.py scores the vector baseline's 26 smallest


def make_data(cfg: Config, seed: int) -> dict[str, tasks.Split]:
    """train (what the network fits), train_clean (the same draws without noise) and test (fresh, clean)."""
    rng = np.random.default_rng(seed)
    if cfg.task == "inertia":
        data = cfg.inertia
        train, clean = tasks.inertia_split(data.samples, data.points, data.noise, rng)
        test_count = int(data.test_fraction * data.samples)
        test = tasks.inertia_split(test_count, data.points, 0.0, rng)[0] if test_count else None
        return {"train": train, "train_clean": clean, "test": test}
    data = cfg.two_body
    orbits = tasks.two_body_orbits(data.trajectories, data.time_steps, data.t_end, data.orbit_noise, data.rtol, rng)
    held_out = int(data.test_fraction * data.trajectories)  # HNN holds out the first orbits
    train = tasks.two_body_split(orbits[held_out:], data.non_uniform)
    test = tasks.two_body_split(orbits[:held_out], data.non_uniform) if held_out else None
    return {"train": train, "train_clean": train, "test": test}


def flat(array: np.ndarray, device: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.reshape(len(array), -1))).to(device=device, dtype=dtype)


def noise_floor(task: str, split: tasks.Split) -> float:
    """The relative MSE the exact function itself scores on the training targets: 0 without noise. A network
    counts as fitted when its training error exceeds this floor by at most fit_threshold (liesd.md §6 gates
    on ~1e-3 noise-free; with noise 0.1 no function reaches 1e-3 on the noisy targets)."""
    exact = tasks.exact_outputs(task, split.x)
    if exact is None:
        return 0.0
    return float(np.sum((exact - split.y) ** 2) / np.sum(split.y**2))


@torch.no_grad()
def relative_mse(model: torch.nn.Module, split: tasks.Split, device: str, chunk: int = 8192) -> tuple[float, float]:
    """(mean squared error per entry, sum ||f - y||^2 / sum ||y||^2): the fit the spec gates the checks on."""
    x, y = flat(split.x, device), flat(split.y, device)
    squared, norm = 0.0, float((y.double() ** 2).sum())
    for start in range(0, len(x), chunk):
        squared += float(((model(x[start : start + chunk]).double() - y[start : start + chunk].double()) ** 2).sum())
    return squared / y.numel(), squared / norm


def batch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffle of one epoch, a pure function of (seed, epoch): resuming mid-run replays it exactly."""
    return np.random.default_rng([seed, 7, epoch]).permutation(count)


def train(cfg: Config, ctx: RunContext, train_split: tasks.Split) -> torch.nn.Module:
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")
    x, y = flat(train_split.x, ctx.device), flat(train_split.y, ctx.device)
    torch.manual_seed(ctx.seed)
    model = mlp(x.shape[1], y.shape[1], cfg.width, cfg.resolved_activation).to(ctx.device)
    optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(x) / cfg.batch_size)  # the last, partial batch is kept, as DataLoader does
    budget = cfg.resolved_epochs * per_epoch
    scheduler = make_scheduler(optimizer, cfg.schedule, budget)
    wrapped, optimizer, scheduler = ctx.strategy.prepare(model, optimizer, scheduler)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    epoch_sum = resumed.get("epoch_loss_sum", 0.0) if resumed else 0.0
    order = batch_order(ctx.seed, start // per_epoch, len(x))
    for step in ctx.progress(range(start, budget), total=budget, initial=start, desc=f"liesd {cfg.task}"):
        epoch, index = divmod(step, per_epoch)
        if index == 0:
            order = batch_order(ctx.seed, epoch, len(x))
        rows = order[index * cfg.batch_size : (index + 1) * cfg.batch_size][ctx.rank :: ctx.world_size]
        rows = torch.from_numpy(rows).to(ctx.device)
        lr = optimizer.param_groups[0]["lr"]
        loss = F.mse_loss(wrapped(x[rows]), y[rows])
        value = checked_step(ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr, what="training")
        epoch_sum += value
        done = step + 1
        if done % per_epoch == 0:
            ctx.log({"train/loss": epoch_sum / per_epoch, "lr": lr, "epoch": epoch + 1}, step=done)
            epoch_sum = 0.0
        stopping = ctx.should_stop() and done < budget
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stopping):
            ctx.checkpoint.save(done, {"data_position": done, "epoch_loss_sum": epoch_sum})
        if stopping:
            raise Preempted(f"stopped at step {done} of {budget}; resume continues from its checkpoint")
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    return model


def expected_bases(task: str, form: str, gauge: int) -> int:
    """How many bases the truth has in this form (true algebra + gauge); the official count for the baseline."""
    return OFFICIAL_EVAL_COUNT.get((task, form), len(tasks.true_generators(task)) + gauge)


def discovery_inputs(cfg: Config, split: tasks.Split, seed: int) -> np.ndarray:
    if cfg.discovery_samples is None or cfg.discovery_samples >= len(split.x):
        return split.x
    chosen = np.sort(np.random.default_rng([seed, 11]).choice(len(split.x), cfg.discovery_samples, replace=False))
    return split.x[chosen]


def symmetry_metrics(cfg: Config, model: torch.nn.Module, inputs: np.ndarray, ctx: RunContext) -> dict[str, Any]:
    form = cfg.resolved_form
    (c, d), out_shape = cfg.shapes
    system = layout(form, c, d, out_shape)
    exact = copy.deepcopy(model).to(torch.float64).eval()
    for param in exact.parameters():
        param.requires_grad_(False)
    x = torch.from_numpy(inputs).to(device=ctx.device, dtype=torch.float64)
    gram = gram_matrix(exact, x, form, out_shape, cfg.discovery_batch)
    found = discover(gram, system, cfg.num_bases, cfg.gap_max)
    truth = evaluation.compared(tasks.true_unknowns(cfg.task, form, c), form, system)
    expected = min(expected_bases(cfg.task, form, system.gauge), system.unknowns)
    chosen = evaluation.compared(found.bases, form, system)
    at_expected = evaluation.compared(found.spectrum.vectors[:, :expected].T, form, system)
    sigma = found.spectrum.sigma
    metrics: dict[str, Any] = {
        "num_unknowns": system.unknowns,
        "num_bases_detected": found.detected,
        "gap_ratio": found.gap_ratio,
        "num_bases_used": found.used,
        "error_space": evaluation.error_space(chosen, truth),
        "error_orth": evaluation.error_orth(chosen),
        "expected_bases": expected,
        "error_space_expected": evaluation.error_space(at_expected, truth),
    }
    metrics.update({f"sigma/{j + 1:02d}": float(s) for j, s in enumerate(sigma[: cfg.gap_max])})
    return {"metrics": metrics, "found": found, "gram": gram}


def write_artefacts(ctx: RunContext, cfg: Config, result: dict[str, Any], timing: dict[str, float]) -> None:
    found = result["found"]
    blocks = found.layout.split(found.bases)
    np.savez(ctx.run_dir / "bases.npz", sigma=found.spectrum.sigma, **blocks)
    np.savetxt(ctx.run_dir / "spectrum.csv", found.spectrum.sigma[:, None], header="sigma (ascending)", comments="")
    title = f"{cfg.task}, {cfg.resolved_form} form: {found.layout.unknowns} unknowns"
    plots.spectrum(ctx.run_dir / "spectrum.png", found.spectrum.sigma, found.detected, found.layout.gauge, title)
    plots.bases(ctx.run_dir / "bases.png", blocks, f"{title}, {found.used} smallest")
    atomic_write_json(ctx.run_dir / "timing.json", timing)  # not a metric: wall time is not reproducible


class LieSD:
    name = "liesd"
    Config = Config
    presets = {
        "test": TEST,  # seconds: plumbing only, the network is not fitted
        "smoke": SMOKE,  # liesd.md §6, measured at 2 s of training on one core
        "paper": {},  # the Config defaults: the official inertia command (N = 100k, 100 epochs of Adan)
    }
    datasets = ()  # procedural: generated from the seed inside the run

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        started = time.perf_counter()
        data = make_data(cfg, ctx.seed)
        generated = time.perf_counter()
        model = train(cfg, ctx, data["train"])
        trained = time.perf_counter()
        model.eval()
        metrics: dict[str, float] = {}
        metrics["train_mse"], metrics["train_rel_mse"] = relative_mse(model, data["train"], ctx.device)
        metrics["train_rel_mse_clean"] = relative_mse(model, data["train_clean"], ctx.device)[1]
        if data["test"] is not None:
            metrics["test_rel_mse"] = relative_mse(model, data["test"], ctx.device)[1]
        metrics["noise_floor_rel_mse"] = noise_floor(cfg.task, data["train"])
        metrics["train_excess_rel_mse"] = metrics["train_rel_mse"] - metrics["noise_floor_rel_mse"]
        metrics["fitted"] = float(metrics["train_excess_rel_mse"] <= cfg.fit_threshold)
        result = symmetry_metrics(cfg, model, discovery_inputs(cfg, data["train"], ctx.seed), ctx)
        metrics.update({key: float(value) for key, value in result["metrics"].items()})
        ctx.log(metrics, step=None)
        if ctx.is_main:
            timing = {
                "data_s": generated - started,
                "train_s": trained - generated,
                "discovery_s": time.perf_counter() - trained,
                "wall_time_s": time.perf_counter() - started,
            }
            write_artefacts(ctx, cfg, result, timing)
        return metrics

    def random_step(self, cfg: Config) -> float | None:
        torch.manual_seed(0)
        (c, d), out_shape = cfg.shapes
        model = mlp(c * d, out_shape[0] * out_shape[1], cfg.width, cfg.resolved_activation)
        optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        x, y = torch.randn(cfg.batch_size, c * d), torch.randn(cfg.batch_size, out_shape[0] * out_shape[1])
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()


component = LieSD()
