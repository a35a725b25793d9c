"""Binary weights with per-output-channel scaling and a clipped straight-through estimator (spec 3.3).

W_b[o, :] = a_o sign(W[o, :]),  a_o = mean_i |W[o, i]|,  sign(0) = +1.
alpha_grad = "detach": dL/dW = dL/dW_b * 1{|W| <= 1}   (the STE passes through the whole binariser)
alpha_grad = "autograd": W_b = a(W) * sign_ste(W), with a_o differentiable (XNOR-Net's full gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sign(w: torch.Tensor) -> torch.Tensor:
    """+1 / -1 with sign(0) = +1 (torch.sign(0) = 0 would give a third value)."""
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def channel_scale(w: torch.Tensor) -> torch.Tensor:
    """a_o = mean |W[o, ...]|, shaped to broadcast against w."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class _BinariseSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return channel_scale(w) * sign(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return sign(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def binarise(w: torch.Tensor, alpha_grad: str = "detach") -> torch.Tensor:
    if alpha_grad == "detach":
        return _BinariseSTE.apply(w)
    if alpha_grad == "autograd":
        return channel_scale(w) * _SignSTE.apply(w)
    raise ValueError(f"alpha_grad must be 'detach' or 'autograd'; got '{alpha_grad}'")


class BinaryLinear(nn.Linear):
    """nn.Linear whose forward uses a_o sign(W); the latent real W is what the optimiser updates.

    No bias: a following BatchNorm absorbs it (and a_o folds into that BN at inference)."""

    def __init__(self, in_features: int, out_features: int, alpha_grad: str = "detach") -> None:
        super().__init__(in_features, out_features, bias=False)
        self.alpha_grad = alpha_grad

    def binary_weight(self) -> torch.Tensor:
        return binarise(self.weight, self.alpha_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.binary_weight())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, binary, alpha_grad={self.alpha_grad}"


def binary_weight_fraction(model: nn.Module) -> float:
    """Share of binarised layers' output rows whose effective weights take exactly the two values +-a_o."""
    rows = exact = 0
    for module in model.modules():
        if isinstance(module, BinaryLinear):
            with torch.no_grad():
                wb = module.binary_weight()
                scale = channel_scale(module.weight)
                exact += int(((wb == scale) | (wb == -scale)).all(dim=1).sum())
                rows += wb.shape[0]
    return exact / rows if rows else 0.0


def model_size_bits(model: nn.Module) -> int:
    """Weights at inference: 1 bit per binarised weight (+ one 32-bit scale per row), 32 bits otherwise."""
    bits = 0
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, BinaryLinear) and name == "weight":
                bits += param.numel() + 32 * param.shape[0]
            else:
                bits += 32 * param.numel()
    return bits
