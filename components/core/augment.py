"""The standard image recipes as plain numpy on uint8 batches [B, H, W, C]: CIFAR's pad-crop-flip and per-channel
mean/std normalisation statistics measured on the training split (never on val or test).

Augmentation draws from a generator the caller seeds per (seed, step, rank), so a resumed run sees the same
crops as an uninterrupted one."""

from __future__ import annotations

import numpy as np
import torch


def pad_crop_flip(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad each image by `pad` pixels, crop a uniformly placed H x W window, mirror it left-right with
    probability 1/2 (the CIFAR ResNet recipe, pad 4). images: uint8 [B, H, W] or [B, H, W, C]."""
    batch, height, width = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)) + ((0, 0),) * (images.ndim - 3))
    dy = rng.integers(0, 2 * pad + 1, batch)
    dx = rng.integers(0, 2 * pad + 1, batch)
    rows = (dy[:, None] + np.arange(height))[:, :, None]  # [B, H, 1]
    cols = (dx[:, None] + np.arange(width))[:, None, :]  # [B, 1, W]
    out = padded[np.arange(batch)[:, None, None], rows, cols]
    flip = rng.random(batch) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images [N, H, W, C] on the [0, 1] scale, accumulated in float64 in
    chunks (50k CIFAR images would take 1.2 GB as one float64 array)."""
    channels = images.shape[-1]
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].reshape(-1, channels).astype(np.float64) / 255.0
        total += part.sum(axis=0)
        squares += (part**2).sum(axis=0)
        count += len(part)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
