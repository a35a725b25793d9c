"""How LION's networks (core.models.build_classifier: digits MLP, CIFAR ResNet-18) see images: standardised by the
train split's channel statistics (the CIFAR recipe), or mapped to [-1, 1] without them (digits)."""

from __future__ import annotations

import torch
from einops import rearrange


def to_input(images: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, H, W, C] -> float input, channels first: (x / 255 - mean) / std per channel
    with the train split's stats, else [-1, 1]."""
    if stats is None:
        x = images.float().div(127.5).sub(1.0)
    else:
        mean, std = (s.to(images.device) for s in stats)
        x = (images.float().div(255.0) - mean) / std
    return rearrange(x, "b h w -> b 1 h w") if x.ndim == 3 else rearrange(x, "b h w c -> b c h w")
