"""EKAN ("Incorporating Arbitrary Matrix Group Equivariance into KANs", arXiv 2410.00435): train EKAN or a
baseline (KAN, MLP, EMLP) on particle scattering, the O(2) toy or three-body orbits, then report test MSE,
the centred equivariance error and the raw parameter count."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.core.contract import RunContext
from components.core.errors import Preempted, RunError
from components.core.optim import build_optimizer
from components.core.training import checked_step
from components.ekan.config import Config
from components.ekan.data import ThreeBodyTable, procedural
from components.ekan.equivariant import count_parameters
from components.ekan.groups import Group, get_group
from components.ekan.models import EKAN, EMLP, KAN, MLP
from components.ekan.reps import Rep, scalars, solved_bases, uniform_rep, vectors

TEST = {
    "task": "o2_toy",
    "group": "O2",
    "width": (8,),
    "n_train": 32,
    "n_test": 64,
    "steps": 5,
    "batch_size": 32,
    "equivariance_points": 64,
    "plots": False,
}
SMOKE = {
    "task": "o2_toy",
    "group": "O2",
    "width": (16,),
    "n_train": 128,
    "n_test": 1000,
    "steps": 300,
    "batch_size": 128,
}  # ekan.md §6 setting B: full batch, grid updates on


def task_reps(task: str, group: Group) -> tuple[Rep, Rep]:
    if task == "particle":
        return vectors(group, 4), scalars(group, 1)  # q, p, q', p' -> the amplitude
    if task == "o2_toy":
        return vectors(group, 2), vectors(group, 1)
    return vectors(group, 24), vectors(group, 6)  # 4 states x 3 bodies x (q, v) -> the next (q, v) of 3 bodies


def build_model(cfg: Config, group: Group, rep_in: Rep, rep_out: Rep, seed: int) -> tuple[nn.Module, list[Rep]]:
    """The model with torch's RNG at `seed`; hidden reps from a legacy RandomState(seed), as the official code."""
    torch.manual_seed(seed)
    hidden = []
    if cfg.model in ("ekan", "emlp"):
        allocation = np.random.RandomState(seed)
        hidden = [uniform_rep(width, group, allocation) for width in cfg.width]
    if cfg.model == "ekan":
        model = EKAN(rep_in, rep_out, hidden, cfg.grid, cfg.k, cfg.grid_range, cfg.bilinear, seed, cfg.grid_eps)
    elif cfg.model == "emlp":
        model = EMLP(rep_in, rep_out, hidden, seed)
    elif cfg.model == "kan":
        model = KAN(rep_in.size, rep_out.size, list(cfg.width), cfg.grid, cfg.k, cfg.grid_range, cfg.grid_eps)
    else:
        model = MLP(rep_in.size, rep_out.size, list(cfg.width))
    return model, hidden


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)


def load_data(cfg: Config, data_dir: Path, seed: int) -> dict[str, np.ndarray]:
    data_seed = seed if cfg.data_seed is None else cfg.data_seed
    if cfg.task != "three_body":
        return procedural(cfg.task, cfg.train_size, cfg.test_size, data_seed)
    table = ThreeBodyTable(data_dir, cfg.dataset)
    data = {}
    for split, size, key in (("train", cfg.train_size, "n_train"), ("test", cfg.test_size, "n_test")):
        x, y = table.windows(split)
        if size is not None:
            if size > len(x):
                raise RunError(f"{key} = {size}: {cfg.dataset} has only {len(x)} {split} windows")
            keep = np.sort(np.random.default_rng([data_seed, len(split)]).choice(len(x), size, replace=False))
            x, y = x[keep], y[keep]
        data[f"{split}_x"], data[f"{split}_y"] = x, y
    return data


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """One random mini-batch without replacement, a pure function of (seed, step): resume needs no RNG state."""
    return np.random.default_rng([seed, step]).choice(n, size=batch, replace=False)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])


@torch.no_grad()
def equivariance(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    group: Group,
    rep_in: Rep,
    rep_out: Rep,
    samples: int,
    seed: int,
    chunk: int,
) -> dict[str, float]:
    """ekan.md §6 check 1: mean over g of ||f(rho_in(g) x) - rho_out(g) f(x)||^2 / ||f(x) - mean f(x)||^2,
    and std(f(x)) / std(y), which exposes a (trivially equivariant) constant model."""
    fx = predict(model, x, chunk)
    spread = torch.sum((fx - fx.mean(0)) ** 2).item()
    rng = np.random.default_rng([seed, 7])
    errors = []
    for _ in range(samples):
        g = group.sample(rng)
        r_in = torch.tensor(rep_in.rho(g), dtype=x.dtype, device=x.device)
        r_out = torch.tensor(rep_out.rho(g), dtype=x.dtype, device=x.device)
        gap = predict(model, x @ r_in.T, chunk) - fx @ r_out.T
        errors.append(torch.sum(gap**2).item() / max(spread, 1e-300))
    target_spread = torch.sum((y - y.mean(0)) ** 2).item()
    return {
        "equivariance/rel_error": float(np.mean(errors)),
        "equivariance/output_std_ratio": math.sqrt(spread / max(target_spread, 1e-300)),
    }


def write_curves(run_dir: Path, losses: list[float], evals: list[tuple[int, float]], title: str) -> None:
    with open(run_dir / "loss.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "train_loss"])
        writer.writerows((step, repr(loss)) for step, loss in enumerate(losses))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(losses, label="train (batch)")
    if evals:
        ax.plot(*zip(*evals), "o-", label="test")
    ax.set(xlabel="step", ylabel="MSE", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png")
    plt.close(fig)


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    group = get_group(cfg.group)
    rep_in, rep_out = task_reps(cfg.task, group)
    arrays = load_data(cfg, ctx.data_dir, ctx.seed)
    data = {key: torch.from_numpy(value).float().to(ctx.device) for key, value in arrays.items()}
    n_train = len(data["train_x"])
    batch = min(cfg.batch_size, n_train)
    if batch % ctx.world_size:
        raise RunError(f"batch_size {batch} is not divisible by the world size {ctx.world_size}")
    steps = cfg.budget

    net, hidden = build_model(cfg, group, rep_in, rep_out, ctx.seed)
    net = net.to(ctx.device)
    optimizer = make_optimizer(cfg, net)
    model, optimizer, _ = ctx.strategy.prepare(net, optimizer, None)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["step"] if resumed else 0
    losses: list[float] = list(resumed.get("losses", [])) if resumed else []
    evals: list[tuple[int, float]] = list(resumed.get("evals", [])) if resumed else []
    refit_every = max(cfg.stop_grid_update_step // cfg.grid_update_num, 1)
    for step in ctx.progress(range(start, steps), total=steps, initial=start, desc=f"ekan {cfg.model} {cfg.task}"):
        index = torch.from_numpy(batch_indices(ctx.seed, step, n_train, batch)).to(ctx.device)
        x, y = data["train_x"][index], data["train_y"][index]
        if cfg.augment:
            g = group.sample(np.random.default_rng([ctx.seed, step, 1]))
            r_in, r_out = (torch.tensor(rep.rho(g), dtype=x.dtype, device=x.device) for rep in (rep_in, rep_out))
            x, y = x @ r_in.T, y @ r_out.T
        if cfg.grid_updates and step % refit_every == 0 and step < cfg.stop_grid_update_step:
            net.update_grids(x)  # the whole global batch on every rank: replicas stay identical
        local = slice(ctx.rank, None, ctx.world_size)
        loss = F.mse_loss(model(x[local]), y[local])
        value = checked_step(ctx, loss, step=step, limit=cfg.divergence_limit, lr=cfg.lr)
        losses.append(value)
        metrics = {"train/loss": value}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < steps:
            metrics["test/mse"] = F.mse_loss(predict(net, data["test_x"], cfg.eval_batch_size), data["test_y"]).item()
            evals.append((step + 1, metrics["test/mse"]))
        ctx.log(metrics, step=step)
        done = step + 1
        stop = ctx.should_stop()  # once per step: the answer acted on is the one every rank agreed
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done, "losses": losses, "evals": evals})
        if stop and done < steps:
            raise Preempted(f"stopped at step {done} of {steps}; resume continues from its checkpoint")

    net.eval()
    test_pred = predict(net, data["test_x"], cfg.eval_batch_size)
    test_mse = F.mse_loss(test_pred, data["test_y"]).item()
    train_mse = F.mse_loss(predict(net, data["train_x"], cfg.eval_batch_size), data["train_y"]).item()
    points = min(cfg.equivariance_points, len(data["test_x"]))
    final = {
        "test/mse": test_mse,
        "test/rel_mse": test_mse / max(torch.var(data["test_y"], unbiased=False).item(), 1e-300),
        # a few test inputs beyond the training range can dominate the MSE (the bilinear maps are polynomial)
        "test/median_se": torch.median(((test_pred - data["test_y"]) ** 2).mean(1)).item(),
        "final/train_mse": train_mse,
        "train/loss": losses[-1] if losses else float("nan"),
        "params/count": float(count_parameters(net)),
        **equivariance(
            net,
            data["test_x"][:points],
            data["test_y"][:points],
            group,
            rep_in,
            rep_out,
            cfg.equivariance_samples,
            ctx.seed,
            cfg.eval_batch_size,
        ),
    }
    evals.append((steps, test_mse))
    ctx.log(final, step=steps)
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    if ctx.is_main:
        reps = [
            f"in: {rep_in}",
            *(f"hidden {i}: {rep} ({rep.size} dims)" for i, rep in enumerate(hidden)),
            f"out: {rep_out}",
            f"trainable raw parameters: {count_parameters(net)}",
        ]
        (ctx.run_dir / "model.txt").write_text("\n".join(reps) + "\n")
        if cfg.model in ("ekan", "emlp"):
            bases = {key: value for key, value in solved_bases().items() if key.startswith(f"{group.name}|")}
            np.savez(ctx.run_dir / "projectors.npz", **bases)
        if cfg.plots:
            write_curves(ctx.run_dir, losses, evals, f"{cfg.model} on {cfg.task} ({cfg.group}), N = {n_train}")
    return final


class EKANComponent:
    name = "ekan"
    Config = Config
    presets = {
        "test": TEST,  # seconds: plumbing only
        "smoke": SMOKE,  # ekan.md §6 setting B: the O(2) toy, EKAN width [16], 300 full-batch steps
        "paper": {},  # the Config defaults: particle scattering under O(1,3), width 1000, N = 1000, 15000 steps
    }
    datasets = ("tables/three_body",)

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,) if cfg.task == "three_body" else ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return train(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        group = get_group(cfg.group)
        rep_in, rep_out = task_reps(cfg.task, group)
        model, _ = build_model(cfg, group, rep_in, rep_out, seed=0)
        optimizer = make_optimizer(cfg, model)
        x, y = torch.randn(2, rep_in.size) * 0.25, torch.randn(2, rep_out.size)
        if cfg.grid_updates:
            model.update_grids(x)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()


component = EKANComponent()
