"""Surrogate spike functions: Heaviside forward, a smooth derivative backward.

Each derivative is the exact derivative of SpikingJelly's primitive of the same name, so `alpha` means
what it means there (and in the papers, which quote SpikingJelly's widths: sigmoid 4, atan 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Derivative = Callable[[torch.Tensor, float], torch.Tensor]


def sigmoid_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d/dx sigmoid(alpha x): peak alpha/4 at the threshold."""
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1 - s)


def atan_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d/dx (arctan(pi/2 alpha x)/pi + 1/2): peak alpha/2, heavier tails than the sigmoid."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def triangle_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """SpikingJelly's PiecewiseQuadratic (SLTT's default): alpha - alpha^2 |x| on |x| < 1/alpha, else 0."""
    return torch.clamp(alpha - alpha * alpha * x.abs(), min=0)


SURROGATES: dict[str, tuple[Derivative, float]] = {  # name -> (derivative, default width)
    "sigmoid": (sigmoid_derivative, 4.0),
    "atan": (atan_derivative, 2.0),
    "triangle": (triangle_derivative, 1.0),
}


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, derivative: Derivative, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.derivative, ctx.alpha = derivative, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative(x, ctx.alpha), None, None


def spike(x: torch.Tensor, surrogate: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """H(x) (1 where x >= 0) forward; the named surrogate's derivative backward."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate '{surrogate}': use one of {', '.join(SURROGATES)}")
    derivative, default_alpha = SURROGATES[surrogate]
    return _Heaviside.apply(x, derivative, default_alpha if alpha is None else alpha)
