"""The projected-gradient linear op (hlop.md §3.3): the forward is the plain layer; only the weight gradient's
presynaptic factor is projected, grad W = g^T (x - x H_o^T H_o), so the update has no component in the span of
the old tasks' activity. The input gradient stays g W (errors reach lower layers unprojected)."""

from __future__ import annotations

from typing import Literal

import torch

ProjectionType = Literal["input", "weight"]


class _ProjectedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, basis: torch.Tensor, kind: str) -> torch.Tensor:
        ctx.save_for_backward(x, weight, basis)
        ctx.kind = kind
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, weight, basis = ctx.saved_tensors
        grad_input = grad_output @ weight if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            if ctx.kind == "input":  # project the presynaptic activity, then form the outer product
                grad_weight = grad_output.T @ (x - (x @ basis.T) @ basis)
            else:  # "weight": the equivalent form that projects the finished gradient (cheaper for conv patches)
                plain = grad_output.T @ x
                grad_weight = plain - (plain @ basis.T) @ basis
        return grad_input, grad_weight, None, None


def projected_linear(
    x: torch.Tensor, weight: torch.Tensor, basis: torch.Tensor | None, kind: ProjectionType = "input"
) -> torch.Tensor:
    """x [..., n_in] @ weight^T [n_out, n_in]; with a basis [k, n_in] (orthonormal rows) the weight gradient is
    projected onto the basis' orthogonal complement. None or an empty basis: a plain linear layer."""
    if basis is None or basis.shape[0] == 0:
        return x @ weight.T
    if kind not in ("input", "weight"):
        raise ValueError(f"projection type must be 'input' or 'weight'; got '{kind}'")
    rows = x.reshape(-1, x.shape[-1])
    out = _ProjectedLinear.apply(rows, weight, basis.detach(), kind)
    return out.reshape(*x.shape[:-1], weight.shape[0])
