"""Gradient statistics of dnt.md §3.6: how heavy-tailed the entries of the weight-matrix gradients are."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

QUANTILES = {"q50": 0.5, "q90": 0.9, "q99": 0.99, "q99_9": 0.999}
MAX_ENTRIES = 1 << 24  # torch.quantile's input limit; larger models are subsampled (seeded, so reproducible)
HIST_EDGES = np.linspace(-14.0, 2.0, 161)  # log10 |g| bins, 0.1 decade wide


def param_grad(param: nn.Parameter) -> torch.Tensor | None:
    return param.grad


def matrix_gradients(
    model: nn.Module, grad_of: Callable[[nn.Parameter], torch.Tensor | None] = param_grad
) -> torch.Tensor:
    """|entries| of the gradients of every parameter with >= 2 dims, flattened into one float32 vector. grad_of
    reads a parameter's whole gradient: a run passes its strategy's full_grad, which gathers ZeRO's partitions
    (a collective: every rank asks for every matrix, in order)."""
    grads = [grad_of(p) for p in model.parameters() if p.ndim >= 2 and p.requires_grad]
    grads = [g.detach().abs().float().flatten() for g in grads if g is not None]
    return torch.cat(grads) if grads else torch.zeros(0)


def gradient_stats(
    model: nn.Module, grad_of: Callable[[nn.Parameter], torch.Tensor | None] = param_grad
) -> tuple[dict[str, float], np.ndarray]:
    """Quantiles, max, RMS and tail ratio q99.9 / q50 of |g| over all matrix gradients, and a log10 histogram."""
    values = matrix_gradients(model, grad_of)
    if values.numel() == 0:  # no gradients (called before any backward)
        return {}, np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
    stats = {"grad/max": values.max().item(), "grad/rms": values.pow(2).mean().sqrt().item()}
    sample = values
    if values.numel() > MAX_ENTRIES:
        generator = torch.Generator(device=values.device).manual_seed(0)
        sample = values[torch.randint(values.numel(), (MAX_ENTRIES,), generator=generator, device=values.device)]
    levels = torch.tensor(list(QUANTILES.values()), dtype=sample.dtype, device=sample.device)
    for name, value in zip(QUANTILES, torch.quantile(sample, levels).tolist()):
        stats[f"grad/{name}"] = value
    stats["grad/tail_ratio"] = stats["grad/q99_9"] / max(stats["grad/q50"], 1e-30)
    logs = torch.log10(sample.clamp_min(1e-30)).cpu().numpy()
    histogram, _ = np.histogram(np.clip(logs, HIST_EDGES[0], HIST_EDGES[-1]), bins=HIST_EDGES)
    return stats, histogram
