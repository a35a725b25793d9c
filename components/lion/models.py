"""How LION's networks (core.models.build_classifier: digits MLP, CIFAR ResNet-18) see images: [-1, 1]."""

from __future__ import annotations

import torch
from einops import rearrange


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, H, W, C] -> float input in [-1, 1], channels first."""
    x = images.float().div(127.5).sub(1.0)
    return rearrange(x, "b h w -> b 1 h w") if x.ndim == 3 else rearrange(x, "b h w c -> b c h w")
