"""The models UBA's experiments train: the spec's digits MLP, a small CNN, and a CIFAR ResNet-18."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


def digits_mlp(width: int = 64, num_classes: int = 10) -> nn.Module:
    """uba.md §6: a 64-64-64-10 ReLU MLP on flattened 8x8 digits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, num_classes),
    )


def digits_cnn(width: int = 16, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, num_classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """He et al. 2016 with the CIFAR stem (3x3 conv, no max-pool), as ResNet-on-CIFAR recipes use."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, in_channels: int = 3,
                 num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, channels = [], width
        for index, count in enumerate(blocks):
            out_channels = width * 2**index
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))


def build_model(task: str, num_classes: int, width: int) -> nn.Module:
    if task == "digits_mlp":
        return digits_mlp(width, num_classes)
    if task == "digits_cnn":
        return digits_cnn(width, num_classes)
    if task == "resnet18":
        return ResNet((2, 2, 2, 2), width, 3, num_classes)
    raise ValueError(f"task '{task}' has no model")


def to_input(images: torch.Tensor, task: str) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, H, W, C] -> float model input in [-1, 1], channels first."""
    x = images.float().div(127.5).sub(1.0)
    if x.ndim == 3:
        x = rearrange(x, "b h w -> b 1 h w")
    else:
        x = rearrange(x, "b h w c -> b c h w")
    return x
