"""lion.md §3.4: the l1/l2 ratio of the raw (pre-clip, unscaled) flattened gradient, in float64.

r = ||g||_1 / ||g||_2 lies in [1, sqrt(d)]; rho = r / sqrt(d) is Theta(1) when the gradient is spread
over its coordinates (a Gaussian vector gives rho -> sqrt(2/pi) = 0.798). The paper's sqrt(d) factor is
harmless exactly when rho stays in a constant band during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch


def grad_ratio(grads: Iterable[torch.Tensor]) -> dict[str, float]:
    l1, sq, d = 0.0, 0.0, 0
    for grad in grads:
        flat = grad.detach().double().reshape(-1)
        l1 += float(flat.abs().sum())
        sq += float(flat.square().sum())
        d += flat.numel()
    l2 = math.sqrt(sq)
    rho = l1 / (l2 * math.sqrt(d)) if l2 > 0 else 0.0
    return {"grad/l1": l1, "grad/l2": l2, "grad/rho": rho}


def parameter_grads(
    model: torch.nn.Module, grad_of: Callable[[torch.nn.Parameter], torch.Tensor | None] = lambda p: p.grad
) -> list[torch.Tensor]:
    """Every trainable parameter's whole gradient (grad_of: the strategy's full_grad, which gathers ZeRO's
    partitions; every rank asks for every parameter, in order)."""
    grads = [grad_of(p) for p in model.parameters() if p.requires_grad]
    return [g for g in grads if g is not None]


def per_tensor_table(named_grads: Iterable[tuple[str, torch.Tensor]]) -> list[dict[str, float | str]]:
    rows = []
    for name, grad in named_grads:
        stats = grad_ratio([grad])
        rows.append(
            {
                "tensor": name,
                "d": grad.numel(),
                "l1": stats["grad/l1"],
                "l2": stats["grad/l2"],
                "r": stats["grad/l1"] / stats["grad/l2"] if stats["grad/l2"] > 0 else 0.0,
                "rho": stats["grad/rho"],
            }
        )
    return rows


def log_ratio_slope(rows: list[dict]) -> float:
    """Least-squares slope of log(l1/l2) against log d over tensors (Theta(sqrt(d)) predicts 0.5)."""
    points = [(math.log(row["d"]), math.log(row["r"])) for row in rows if row["d"] > 1 and row["r"] > 0]
    if len({x for x, _ in points}) < 2:
        return float("nan")
    xs, ys = np.array(points).T
    return float(np.polyfit(xs, ys, 1)[0])
