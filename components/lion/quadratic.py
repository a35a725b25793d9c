"""lion.md §6(a): the box quadratic f(x) = 0.5 ||x - a||^2 under ||x||_inf <= 1/lambda, whose KKT point is
x* = clip(a, -1/lambda, 1/lambda) in closed form. The optimizer sees g = (x - a) + sigma * noise; S and the
distance to x* use the exact gradient. All arithmetic in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from components.core.errors import RunError
from components.core.schedules import ScheduleConfig, make_scheduler
from components.lion import box
from components.lion.config import Config
from components.lion.optimizers import make_vector_optimizer, weight_decay


@dataclass
class Trace:
    steps: list[int] = field(default_factory=list)
    kkt: list[float] = field(default_factory=list)
    excess: list[float] = field(default_factory=list)


def target(cfg: Config) -> torch.Tensor:
    rng = np.random.default_rng(cfg.quadratic.problem_seed)
    return torch.from_numpy(rng.normal(0.0, cfg.quadratic.a_std, cfg.quadratic.dim))


def solve(cfg: Config, seed: int, log=None) -> tuple[dict[str, float], Trace]:
    """Run K = cfg.budget steps; `log(metrics, step)` receives S, the excess and the gap every log_every steps."""
    q = cfg.quadratic
    a = target(cfg)
    lam = weight_decay(cfg)
    rng = np.random.default_rng(seed)
    start = rng.normal(0.0, q.init_std, q.dim) if q.init_std > 0 else np.zeros(q.dim)
    x = torch.nn.Parameter(torch.from_numpy(start))
    optimizer = make_vector_optimizer(cfg, x)
    schedule = ScheduleConfig(name="constant") if cfg.theory is not None else cfg.schedule
    scheduler = make_scheduler(optimizer, schedule, cfg.budget)
    solution = box.box_solution(a, lam)
    f_star = 0.5 * float((solution - a).square().sum())

    trace, kkt_sum = Trace(), 0.0
    for step in range(cfg.budget):
        exact = x.detach() - a
        kkt = box.kkt_residual(x, exact, lam)
        kkt_sum += kkt  # the theorem's average over the iterates x_0 .. x_{K-1} where gradients are taken
        if step % cfg.log_every == 0:
            excess = box.max_excess(x, lam)
            trace.steps.append(step), trace.kkt.append(kkt), trace.excess.append(excess)
            if log is not None:
                gap = 0.5 * float(exact.square().sum()) - f_star
                log({"kkt/S": kkt, "box/excess": excess, "quad/gap": gap}, step)
        noise = torch.from_numpy(rng.normal(0.0, q.noise, q.dim)) if q.noise > 0 else 0.0
        x.grad = exact + noise
        optimizer.step()
        scheduler.step()
        if not torch.isfinite(x).all():
            raise RunError(f"the iterate diverged at step {step} (lr {optimizer.param_groups[0]['lr']:.4g})")

    exact = x.detach() - a
    lam_x = lam * float(x.detach().abs().max())
    final = {
        "kkt/S": box.kkt_residual(x, exact, lam),
        "kkt/S_avg": kkt_sum / cfg.budget,
        "quad/err_to_solution": float((x.detach() - solution).abs().max()),
        "quad/gap": 0.5 * float(exact.square().sum()) - f_star,
        "box/max_abs_times_lambda": lam_x,
        "box/excess": box.max_excess(x, lam),
        "quad/eta0": float(optimizer.param_groups[0]["initial_lr"]),
    }
    if not all(math.isfinite(value) for value in final.values()):
        raise RunError(f"non-finite final metrics after {cfg.budget} steps: {final}")
    return final, trace
