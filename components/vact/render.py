"""The procedural "video" world of vact.md §6: a renderer that draws a world x as frames, and the stand-in
detector ("VLLM") that reads each variable back from its region; plus the latent variant (a T x |V| array with
Gaussian noise, decoded by a fixed random linear map).

Layout: variable i owns the square cell (row i // per_row, column i % per_row) of side round(6/32 of the short
side) (6 x 6 pixels at 32 x 32); a state variable is a bright (1) or dark (0) block; a motion variable is a bar that
moves across the frames (1) or a dim block that stays still (0); an occluded variable's cell is a 0/255
checkerboard, for which the detector answers NA (None)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from components.core.errors import DataError

BRIGHT, DARK, BAR, OCCLUDED = 200, 30, 220, 255
STATE_THRESHOLD = (BRIGHT + DARK) / 2  # mean intensity above it: the block is lit
MOTION_THRESHOLD = 8.0  # mean absolute frame difference above it: something moves


def cell_side(height: int, width: int) -> int:
    return max(3, round(6 * min(height, width) / 32))


@functools.lru_cache(maxsize=256)
def cells(count: int, height: int, width: int) -> list[tuple[slice, slice]]:
    """The pixel region of each of `count` variables; raises DataError when they do not fit the frame."""
    side = cell_side(height, width)
    per_row = width // side
    if per_row == 0 or (count + per_row - 1) // per_row * side > height:
        raise DataError(f"vact: {count} variables do not fit a {height} x {width} frame in cells of {side} pixels")
    return [
        (slice((i // per_row) * side, (i // per_row + 1) * side), slice((i % per_row) * side, (i % per_row + 1) * side))
        for i in range(count)
    ]


def render(
    values: Sequence[int],
    kinds: Sequence[str],
    *,
    frames: int,
    height: int,
    width: int,
    channels: int = 1,
    occluded: Sequence[bool] | None = None,
) -> np.ndarray:
    """uint8 [frames, height, width, channels] showing each variable's value in its cell."""
    video = np.zeros((frames, height, width), dtype=np.uint8)
    for i, ((rows, cols), value, kind) in enumerate(zip(cells(len(values), height, width), values, kinds, strict=True)):
        side = rows.stop - rows.start
        if occluded is not None and occluded[i]:
            checker = (np.add.outer(np.arange(side), np.arange(side)) % 2) * OCCLUDED
            video[:, rows, cols] = checker.astype(np.uint8)
        elif kind == "motion":
            video[:, rows, cols] = DARK
            bar = max(1, side // 3)
            for t in range(frames):
                # value 1: the bar sweeps left to right and wraps; value 0: it stays at the left edge
                left = (t * bar) % (side - bar + 1) if value else 0
                video[t, rows, cols.start + left : cols.start + left + bar] = BAR
        else:
            video[:, rows, cols] = BRIGHT if value else DARK
    return np.repeat(video[..., None], channels, axis=-1)


def detect(video: np.ndarray, index: int, count: int, kind: str) -> int | None:
    """The stand-in VLLM's answer for variable `index` of `count`: 1, 0 or None (cannot tell: occluded)."""
    if video.ndim != 4 or video.dtype != np.uint8:
        raise DataError(f"vact: a video must be uint8 [T, H, W, C], got {video.dtype} {video.shape}")
    frames, height, width, _ = video.shape
    rows, cols = cells(count, height, width)[index]
    region = video[:, rows, cols, 0] if video.shape[-1] == 1 else video[:, rows, cols].mean(axis=-1)
    if region.max() == OCCLUDED and region.min() == 0:  # the checkerboard: nothing else is pure black and white
        return None
    if kind == "motion":
        if frames < 2:
            raise DataError("vact: a motion variable needs at least 2 frames")
        change = np.abs(np.diff(region.astype(np.int16), axis=0)).sum() / (region.size - region[0].size)
        return int(change > MOTION_THRESHOLD)
    return int(region.sum() / region.size > STATE_THRESHOLD)


class LatentWorld:
    """The latent variant: z[t, v] = (2 x_v - 1) + sigma * noise, decoded to [T, dim] by a fixed random linear map
    A (|V| x dim, full row rank); the detector inverts A by least squares, averages over time and thresholds at 0."""

    def __init__(self, variables: int, dim: int = 16, sigma: float = 0.3, seed: int = 0):
        if dim < variables:
            raise DataError(f"vact: latent dim {dim} is below the {variables} variables (A would not invert)")
        self.decoder = np.random.default_rng([seed, 7]).standard_normal((variables, dim))
        self.sigma = sigma

    def render(self, values: Sequence[int], frames: int, rng: np.random.Generator) -> np.ndarray:
        signs = 2.0 * np.asarray(values, dtype=np.float64) - 1.0
        z = signs[None, :] + self.sigma * rng.standard_normal((frames, len(values)))
        return z @ self.decoder

    def detect_all(self, decoded: np.ndarray) -> list[int]:
        z, *_ = np.linalg.lstsq(self.decoder.T, decoded.T, rcond=None)
        means = z.T.mean(axis=0)
        return [int(m > 0) for m in means]
