"""The models UBA's experiments train: the spec's digits MLP, a small CNN, and a CIFAR ResNet-18."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from components.core.models import build_classifier


def digits_cnn(width: int = 16, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, num_classes),
    )


def build_model(task: str, num_classes: int, width: int) -> nn.Module:
    if task == "digits_cnn":
        return digits_cnn(width, num_classes)
    return build_classifier(task, num_classes, width)


def to_input(images: torch.Tensor, task: str, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, H, W, C] -> float model input, channels first: standardised by the train
    split's per-channel (mean, std) on the [0, 1] scale when stats are given, else mapped to [-1, 1]."""
    if stats is None:
        x = images.float().div(127.5).sub(1.0)
    else:
        mean, std = (s.to(images.device) for s in stats)
        x = (images.float().div(255.0) - mean) / std
    if x.ndim == 3:
        x = rearrange(x, "b h w -> b 1 h w")
    else:
        x = rearrange(x, "b h w c -> b c h w")
    return x
