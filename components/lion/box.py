"""The constrained view (lion.md §3.2): with decoupled decay lambda, LION solves min f(x) s.t. ||x||_inf <= 1/lambda.

S(x) = sum_i |g_i| (1 + lambda x_i sign(g_i)) = ||g||_1 + lambda <x, g> is the KKT residual of that problem
for feasible x: S >= 0, and S = 0 exactly at KKT points (lambda times the Frank-Wolfe gap over the box).
With lambda = 0 it is ||g||_1, the unconstrained measure the paper's rate is stated in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def kkt_residual(x: torch.Tensor, grad: torch.Tensor, lam: float) -> float:
    x, grad = x.detach().double(), grad.detach().double()
    return float((grad.abs() * (1.0 + lam * x * torch.sign(grad))).sum())


def box_solution(a: torch.Tensor, lam: float) -> torch.Tensor:
    """argmin 0.5 ||x - a||^2 over the box: the KKT point is the clip of a to the box."""
    if lam == 0:
        return a.clone()
    return a.clamp(-1.0 / lam, 1.0 / lam)


def max_excess(x: torch.Tensor, lam: float) -> float:
    """max_i max(|x_i| - 1/lambda, 0): how far the iterate sits outside the box (0 inside; 0 when lambda = 0)."""
    if lam == 0:
        return 0.0
    return float((x.detach().abs() - 1.0 / lam).clamp(min=0).max())


def lambdas(groups: Sequence[dict]) -> list[tuple[torch.Tensor, float]]:
    """(parameter, its group's lambda) for every parameter of an optimizer's groups, read before a strategy
    (DeepSpeed ZeRO) swaps the groups' tensors for flat partitions."""
    return [(param, float(group.get("weight_decay", 0.0))) for group in groups for param in group["params"]]


@torch.no_grad()
def max_abs_times_lambda(pairs: Iterable[tuple[torch.Tensor, float]]) -> float:
    """max over decayed coordinates of lambda |x_i|: at most 1 inside the box (0 when nothing is decayed)."""
    values = [lam * float(param.abs().max()) for param, lam in pairs if lam > 0 and param.numel()]
    return max(values, default=0.0)


@torch.no_grad()
def network_kkt_residual(pairs: Iterable[tuple[torch.Tensor, float]], grads: dict[int, torch.Tensor]) -> float:
    """S summed over every parameter with its own lambda (lambda = 0 contributes its plain l1 norm)."""
    return float(sum(kkt_residual(param, grads[id(param)], lam) for param, lam in pairs if id(param) in grads))
