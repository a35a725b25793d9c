"""Input encodings: a static input becomes a [T, batch, ...] sequence."""

from __future__ import annotations

import torch


def direct(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Direct (analog) coding: the same input current at every step; the first layer does the encoding."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    return x.unsqueeze(0).expand(steps, *x.shape)


def rate(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate (Bernoulli) coding: intensity in [0, 1] is the spike probability at each step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"rate coding needs intensities in [0, 1]; got [{x.min().item():.3g}, {x.max().item():.3g}]")
    probabilities = x.unsqueeze(0).expand(steps, *x.shape)
    return torch.bernoulli(probabilities, generator=generator)
