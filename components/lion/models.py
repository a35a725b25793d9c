"""The networks LION is compared on: the spec's digits MLP (smoke) and a CIFAR ResNet-18 (full scale)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from components.core.models import digits_mlp, resnet18


def build_model(task: str, num_classes: int, width: int) -> nn.Module:
    if task == "digits_mlp":
        return digits_mlp(width, num_classes)
    if task == "resnet18":
        return resnet18(width, num_classes)
    raise ValueError(f"task '{task}' has no network")


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, H, W, C] -> float input in [-1, 1], channels first."""
    x = images.float().div(127.5).sub(1.0)
    return rearrange(x, "b h w -> b 1 h w") if x.ndim == 3 else rearrange(x, "b h w c -> b c h w")
