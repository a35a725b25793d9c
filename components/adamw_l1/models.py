"""How the width-swept networks (core.models.build_classifier: digits MLP, CIFAR ResNet-18) see images: [0, 1]."""

from __future__ import annotations

import torch
from einops import rearrange


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W] or [B, H, W, C] -> float in [0, 1], channels first. For digits this is the spec's
    inputs / 16 (the shards store round(v * 255 / 16))."""
    x = images.float().div(255.0)
    if x.ndim == 3:
        return rearrange(x, "b h w -> b 1 h w")
    return rearrange(x, "b h w c -> b c h w")
