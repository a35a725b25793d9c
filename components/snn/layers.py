"""Stateless layers applied to every time step at once ([T, B, ...] -> [T*B, ...] -> [T, B, ...])."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class MultiStep(nn.Module):
    """Runs a stateless module (Linear, Conv, BatchNorm ...) on all steps in one call.

    BatchNorm inside sees T*B samples, i.e. statistics shared across time (tdBN-style, what SpikingJelly's
    SeqToANNContainer does).
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.module = modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        steps = x_seq.shape[0]
        y = self.module(rearrange(x_seq, "t b ... -> (t b) ..."))
        return rearrange(y, "(t b) ... -> t b ...", t=steps)
