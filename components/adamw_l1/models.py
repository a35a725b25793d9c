"""How the width-swept networks (core.models.build_classifier: digits MLP, CIFAR ResNet-18) see images."""

from __future__ import annotations

import torch
from einops import rearrange


def to_input(images: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 [B, H, W] or [B, H, W, C] -> float, channels first: (x / 255 - mean) / std per channel with the train
    split's stats (the CIFAR recipe), else [0, 1]; for digits that is the spec's inputs / 16 (the shards store
    round(v * 255 / 16))."""
    x = images.float().div(255.0)
    if stats is not None:
        mean, std = (s.to(images.device) for s in stats)
        x = (x - mean) / std
    if x.ndim == 3:
        return rearrange(x, "b h w -> b 1 h w")
    return rearrange(x, "b h w c -> b c h w")
