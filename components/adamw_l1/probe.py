"""The gradient-norm probe (adamw_l1.md §3.4): l1 and l2 norms of the whole flattened gradient.

Sums are accumulated per tensor in float64 and only then combined, so the statistic is the one of the
global vector g in R^d: l1 = sum |g_i|, l2 = sqrt(sum g_i^2), r = l1 / l2, rho = r / sqrt(d). Averaging
per-tensor ratios instead is a different statistic, dominated by the small tensors (§8). Under sharded
gradients each shard's partial sums are all-reduced (a plain SUM) before any ratio is formed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from components.core.errors import RunError


@dataclass(frozen=True)
class NormStats:
    l1: float
    l2: float
    d: int

    @property
    def ratio(self) -> float:
        """r = l1 / l2, in [1, sqrt(d)] for a nonzero vector (Cauchy-Schwarz with the sign vector)."""
        return self.l1 / self.l2 if self.l2 > 0 else math.nan

    @property
    def rho(self) -> float:
        """r / sqrt(d): 1 for a constant-magnitude vector, 1/sqrt(d) for a one-hot one, ~0.798 for N(0, I)."""
        return self.ratio / math.sqrt(self.d)


def partial_sums(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """[len(tensors), 3] float64: (sum |g|, sum g^2, numel) of each tensor, on the tensors' device."""
    rows = []
    for tensor in tensors:
        values = tensor.detach().to(torch.float64)
        count = torch.tensor(float(values.numel()), dtype=torch.float64, device=values.device)
        rows.append(torch.stack([values.abs().sum(), values.square().sum(), count]))
    return torch.stack(rows)


def stats_from_sums(sums: torch.Tensor) -> NormStats:
    """NormStats of a (sum |g|, sum g^2, count) row; the sums may come from several shards added up."""
    l1, square, count = (float(v) for v in sums.tolist())
    return NormStats(l1=l1, l2=math.sqrt(square), d=int(round(count)))


def vector_stats(vector: torch.Tensor) -> NormStats:
    return stats_from_sums(partial_sums([vector])[0])


def gradient_norms(
    named_parameters: Sequence[tuple[str, torch.nn.Parameter]],
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grad_of: Callable[[torch.nn.Parameter], torch.Tensor | None] = lambda param: param.grad,
) -> tuple[NormStats, dict[str, NormStats]]:
    """Global and per-tensor statistics of the raw gradient of every trainable parameter given.

    Call after backward (and after unscaling under AMP) and before clipping and the optimizer step.
    `grad_of` reads a parameter's whole gradient (a run passes its strategy's full_grad, which gathers ZeRO's
    partitions). `all_reduce` sums the partial sums over a group of gradient shards (tensor parallel); it is
    None when every rank holds the whole, already averaged, gradient.
    """
    grads = [grad_of(param) for _, param in named_parameters]
    missing = [name for (name, _), grad in zip(named_parameters, grads) if grad is None]
    if missing:
        raise RunError(
            f"the gradient probe found no gradient on {missing[0]} ({len(missing)} tensors): call it after "
            "backward and before the optimizer step"
        )
    sums = partial_sums(grads)
    if all_reduce is not None:
        sums = all_reduce(sums)
    rows = sums.cpu()  # one device-to-host copy per probe
    total = stats_from_sums(rows.sum(dim=0))
    per_tensor = {name: stats_from_sums(row) for (name, _), row in zip(named_parameters, rows)}
    return total, per_tensor


def loglog_slope(sizes: Sequence[float], ratios: Sequence[float]) -> float:
    """Least-squares slope of log(ratio) against log(size): 1/2 when ratio grows like sqrt(size)."""
    if len(sizes) < 2:
        return math.nan
    x = torch.tensor([math.log(s) for s in sizes], dtype=torch.float64)
    y = torch.tensor([math.log(r) for r in ratios], dtype=torch.float64)
    x_centred = x - x.mean()
    return float((x_centred * (y - y.mean())).sum() / x_centred.square().sum())
