"""The model families whose width is swept: the spec's digits MLP (smoke) and a CIFAR ResNet-18 (paper)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from components.core.models import digits_mlp, resnet18


def build_model(task: str, width: int, num_classes: int) -> nn.Module:
    if task == "digits_mlp":
        return digits_mlp(width, num_classes)
    if task == "resnet18":
        return resnet18(width, num_classes)
    raise ValueError(f"task '{task}' has no model")


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W] or [B, H, W, C] -> float in [0, 1], channels first. For digits this is the spec's
    inputs / 16 (the shards store round(v * 255 / 16))."""
    x = images.float().div(255.0)
    if x.ndim == 3:
        return rearrange(x, "b h w -> b 1 h w")
    return rearrange(x, "b h w c -> b c h w")
