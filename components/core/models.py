"""Networks several papers train: the digits MLP of the smoke checks and a CIFAR ResNet-18 (uba, lion, adamw_l1)."""

from __future__ import annotations

import torch
from torch import nn


def digits_mlp(width: int = 64, num_classes: int = 10) -> nn.Module:
    """A 64-w-w-10 ReLU MLP on flattened 8x8 digits (uba.md, lion.md, adamw_l1.md §6); d = w^2 + 76 w + 10."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, num_classes),
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
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """He et al. 2016 with the CIFAR stem (3x3 conv, no max-pool), as ResNet-on-CIFAR recipes use."""

    def __init__(
        self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, in_channels: int = 3, num_classes: int = 10
    ):
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


def resnet18(width: int = 64, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """Basic blocks (2, 2, 2, 2), stage widths w, 2w, 4w, 8w (w = 64: 11.2M parameters)."""
    return ResNet((2, 2, 2, 2), width, in_channels, num_classes)


def build_classifier(task: str, num_classes: int, width: int) -> nn.Module:
    """The classifier a task name stands for in uba, lion and adamw_l1: digits_mlp or resnet18 (CIFAR)."""
    if task == "digits_mlp":
        return digits_mlp(width, num_classes)
    if task == "resnet18":
        return resnet18(width, num_classes)
    raise ValueError(f"task '{task}' has no classifier")
