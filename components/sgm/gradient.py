"""The skip gradient: decay the gradient through residual branches during backpropagation only (sgm.md §3.1, §3.3).

Two implementations of one rule:
- `skip_gradient` (the explicit form, the spec's clean placement): a forward hook on the last module of every
  decayed residual branch returns GS_gamma(output), identity forward and gradient times gamma backward, so that
  g = dl/dz_L prod_i (I + gamma df_i/dz_i) dz_0/dx exactly.
- `official_relu_hooks` (the official code's rule, [ICLR] utils_sgm.py): a full backward hook on every ReLU module
  whose name contains "relu" (ResNet: not "0.relu"; DenseNet: not "transition") scales grad_input by gamma
  (ResNet-18/34, one ReLU called twice per block) or sqrt(gamma) (ResNet-50/101/152 and DenseNet, three calls per
  block / two ReLUs per dense layer). It equals the explicit form up to one global factor, which sign() ignores.
Both are context managers that remove their hooks on exit, so one model can be attacked at several gammas in turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from components.core.errors import ConfigError


class GradScale(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by `factor` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    return GradScale.apply(x, factor)


def decayed_branches(model: nn.Module) -> list[nn.Module]:
    """The last module of every residual branch SGM decays (declared by the blocks, components/sgm/models.py)."""
    return [
        getattr(block, block.sgm_branch_end)
        for block in model.modules()
        if hasattr(block, "sgm_branch_end") and getattr(block, "sgm_decay", False)
    ]


def check_gamma(gamma: float) -> None:
    if not 0 < gamma <= 1:
        raise ConfigError(f"gamma must be in (0, 1] (1 is plain PGD), got {gamma}")


@contextmanager
def skip_gradient(model: nn.Module, gamma: float) -> Iterator[nn.Module]:
    """Decay every residual branch's gradient by gamma while the context is open. Hooks are installed even at
    gamma = 1 (a multiplication by 1.0 is exact), so plain PGD is reproduced by the mechanism itself."""
    check_gamma(gamma)
    branches = decayed_branches(model)
    if not branches:
        raise ConfigError(f"{type(model).__name__} has no residual branch to decay: SGM needs a skip-connection source")
    handles = [branch.register_forward_hook(lambda module, inputs, out: scale_grad(out, gamma)) for branch in branches]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


# the official per-ReLU factor is gamma ** exponent (sgm.md §3.3b): a BasicBlock's one ReLU runs twice (skip path 1
# call, residual 2), a Bottleneck's three times, a dense layer has two on its new features; the residual MLP's one
# branch ReLU runs once per block
OFFICIAL_EXPONENT = {"resnet-basic": 1.0, "resnet-bottleneck": 0.5, "densenet": 0.5, "resmlp": 1.0}


def official_factor(arch_family: str, gamma: float) -> float:
    if arch_family not in OFFICIAL_EXPONENT:
        raise ConfigError(
            f"the official hooks are defined for ResNet, DenseNet and residual-MLP sources, not {arch_family}"
        )
    return gamma ** OFFICIAL_EXPONENT[arch_family]


def official_hooked_relus(model: nn.Module, arch_family: str) -> list[tuple[str, nn.Module]]:
    """The ReLU modules the official code hooks, by its own name filters (which also skip e.g. ResNet-152's
    layer3.10/20/30, a quirk of the string match that we keep in this mode; sgm.md §3.3)."""
    excluded = "transition" if arch_family == "densenet" else "0.relu"
    if arch_family == "resmlp":
        excluded = "\0"  # the residual MLP has no strided first blocks: every branch ReLU is hooked
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ReLU) and "relu" in name and excluded not in name
    ]


@contextmanager
def official_relu_hooks(model: nn.Module, arch_family: str, gamma: float) -> Iterator[nn.Module]:
    check_gamma(gamma)
    factor = official_factor(arch_family, gamma)
    relus = official_hooked_relus(model, arch_family)
    if not relus:
        raise ConfigError(f"no ReLU module to hook in {type(model).__name__} ({arch_family})")

    def scale(module, grad_input, grad_output):
        return tuple(None if g is None else g * factor for g in grad_input)

    handles = [module.register_full_backward_hook(scale) for _, module in relus]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
