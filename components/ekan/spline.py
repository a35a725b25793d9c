"""The KAN basis on scalars: order-k B-splines on a per-scalar uniform grid (pykan's Cox-de Boor
recursion, grid extended by k knots each side) followed by SiLU, K = G + k + 1 functions (ekan.md §3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def extend_grid(grid: torch.Tensor, k: int) -> torch.Tensor:
    """(n, G + 1) knots -> (n, G + 1 + 2k): k more knots each side at the grid's mean spacing."""
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    steps = torch.arange(1, k + 1, dtype=grid.dtype, device=grid.device)
    left = grid[:, :1] - h * steps.flip(0)
    right = grid[:, -1:] + h * steps
    return torch.cat([left, grid, right], dim=1)


def bspline(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, n), grid (n, G + 1) -> (B, n, G + k) B-spline values; scalar j uses grid row j."""
    knots = extend_grid(grid, k)
    x = x.unsqueeze(-1)
    basis = ((x >= knots[:, :-1]) & (x < knots[:, 1:])).to(x.dtype)
    for order in range(1, k + 1):
        left = (x - knots[:, : -(order + 1)]) / (knots[:, order:-1] - knots[:, : -(order + 1)]) * basis[..., :-1]
        right = (knots[:, order + 1 :] - x) / (knots[:, order + 1 :] - knots[:, 1:-order]) * basis[..., 1:]
        basis = left + right
    return basis


def kan_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """(B, n) scalars -> (B, n, K): the G + k splines first, SiLU last (the official checkpoint layout)."""
    return torch.cat([bspline(x, grid, k), F.silu(x).unsqueeze(-1)], dim=-1)


def uniform_grid(count: int, intervals: int, low: float, high: float) -> torch.Tensor:
    return torch.linspace(low, high, intervals + 1).expand(count, intervals + 1).contiguous()


def refit_grid(x: torch.Tensor, intervals: int, eps: float, margin: float = 0.01) -> torch.Tensor:
    """pykan's grid update for each scalar column of x (B, n): eps * a uniform grid over
    [min - margin, max + margin] + (1 - eps) * sample quantiles. EKAN uses eps = 1 (uniform)."""
    ordered = torch.sort(x, dim=0).values.T  # (n, B)
    batch = x.shape[0]
    ids = [int(batch / intervals * i) for i in range(intervals)] + [-1]
    adaptive = ordered[:, ids]
    fractions = torch.linspace(0, 1, intervals + 1, dtype=x.dtype, device=x.device)
    low = adaptive[:, :1] - margin
    uniform = low + (adaptive[:, -1:] - adaptive[:, :1] + 2 * margin) * fractions
    return eps * uniform + (1 - eps) * adaptive
