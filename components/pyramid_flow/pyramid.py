"""Spatial pyramids, the per-stage training pairs, the jump, and the temporal-pyramid token sequences.

Latents are [..., C, H, W]; level k of K has size H / 2^(K-1-k). A sample's sequence is its history units
(oldest first) then the current unit; the model's loss and velocity are read from the current tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from components.pyramid_flow.schedule import StageTable, block_noise


def down(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x downsampling, which for an exact factor 2 is the mean of each 2x2 block."""
    lead = x.shape[:-2]
    return F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), 2).reshape(*lead, x.shape[-2] // 2, x.shape[-1] // 2)


def up(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling: four identical copies per block (what the jump's correction assumes)."""
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def latent_pyramid(x: torch.Tensor, stages: int) -> list[torch.Tensor]:
    """[L_0, ..., L_{K-1}] with L_{K-1} = x and L_{k-1} = Down(L_k)."""
    levels = [x]
    for _ in range(stages - 1):
        levels.append(down(levels[-1]))
    return levels[::-1]


def noise_pyramid(noise: torch.Tensor, stages: int) -> list[torch.Tensor]:
    """[n_0, ..., n_{K-1}] from one full-resolution draw: n_{k-1} = 2 Down(n_k) keeps unit variance."""
    levels = [noise]
    for _ in range(stages - 1):
        levels.append(2.0 * down(levels[-1]))
    return levels[::-1]


def endpoints(
    clean: list[torch.Tensor], noise: list[torch.Tensor], k: int, table: StageTable
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S_k, E_k) of stage k from the clean and noise pyramids, sharing the one noise n_k (pyramid_flow.md §3.3)."""
    s, e = table.start[k], table.end[k]
    start = noise[0] if k == 0 else s * noise[k] + (1 - s) * up(clean[k - 1])
    end = clean[k] if k == table.stages - 1 else e * noise[k] + (1 - e) * clean[k]
    return start, end


def jump(z: torch.Tensor, k: int, table: StageTable, generator: torch.Generator) -> torch.Tensor:
    """Into stage k: alpha Up(z) + beta xi with block-correlated xi, so the state has the start-point law of stage k."""
    upsampled = up(z)
    xi = block_noise(tuple(upsampled.shape), table.gamma, generator, dtype=z.dtype).to(z.device)
    return table.alpha[k] * upsampled + table.beta[k] * xi


def history_levels(stage: int, previous: int) -> list[int]:
    """Levels of the history units 0..previous-1 for the current stage (oldest first): unit j-1 at the current
    level, j-2 one level lower, ..., then level 0 for every older unit."""
    return [max(stage - (previous - unit) + 1, 0) for unit in range(previous)]


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[..., C, h, w] -> [..., (h/p)(w/p), C p p], tokens in row-major order."""
    *lead, c, h, w = x.shape
    x = x.reshape(*lead, c, h // patch, patch, w // patch, patch)
    x = x.movedim(-5, -1)  # [..., h/p, p, w/p, p, C]
    x = x.movedim(-3, -4)  # [..., h/p, w/p, p, p, C]
    return x.reshape(*lead, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """The inverse of patchify: [..., n, C p p] -> [..., C, height, width]."""
    *lead, _, _ = tokens.shape
    x = tokens.reshape(*lead, height // patch, width // patch, patch, patch, channels)
    x = x.movedim(-3, -4)  # [..., h/p, p, w/p, p, C]
    x = x.movedim(-1, -5)
    return x.reshape(*lead, channels, height, width)


@dataclass
class Packed:
    """A padded batch of token sequences. pos indexes the model's table of spatial positions (all levels
    concatenated), frame is the unit index (padding: one past the last frame, so it masks nothing)."""

    tokens: torch.Tensor  # [B, L, C p p]
    pos: torch.Tensor  # [B, L] long
    frame: torch.Tensor  # [B, L] long
    valid: torch.Tensor  # [B, L] bool
    current: torch.Tensor  # [B, L] bool

    @property
    def shape(self) -> torch.Size:
        """The token tensor's shape [B, L, C p p] (what a forward hook records as the model's input)."""
        return self.tokens.shape

    def to(self, device: str | torch.device) -> Packed:
        return Packed(*(t.to(device) for t in (self.tokens, self.pos, self.frame, self.valid, self.current)))


class Layout:
    """Token counts and position-table offsets of every level, for a full-resolution latent of H x W."""

    def __init__(self, stages: int, patch: int, height: int, width: int):
        self.stages, self.patch = stages, patch
        factor = 2 ** (stages - 1)
        if height % (patch * factor) or width % (patch * factor):
            raise ValueError(f"a {height}x{width} latent is not divisible by patch {patch} x 2^{stages - 1}")
        self.sizes = [(height // 2 ** (stages - 1 - k), width // 2 ** (stages - 1 - k)) for k in range(stages)]
        self.grids = [(h // patch, w // patch) for h, w in self.sizes]
        self.tokens = [gh * gw for gh, gw in self.grids]
        self.offsets = [sum(self.tokens[:k]) for k in range(stages)]

    def pack(self, samples: list[list[tuple[torch.Tensor, int, int]]], frames: int) -> Packed:
        """samples[b] = [(tokens [n, D], level, frame), ...] with the current unit LAST; pads to the longest."""
        length = max(sum(block[0].shape[0] for block in blocks) for blocks in samples)
        dim = samples[0][0][0].shape[-1]
        dtype = samples[0][0][0].dtype
        count = len(samples)
        tokens = torch.zeros(count, length, dim, dtype=dtype)
        pos = torch.zeros(count, length, dtype=torch.long)
        frame = torch.full((count, length), frames, dtype=torch.long)
        valid = torch.zeros(count, length, dtype=torch.bool)
        current = torch.zeros(count, length, dtype=torch.bool)
        for b, blocks in enumerate(samples):
            at = 0
            for i, (block, level, unit) in enumerate(blocks):
                n = block.shape[0]
                tokens[b, at : at + n] = block
                pos[b, at : at + n] = torch.arange(self.offsets[level], self.offsets[level] + n)
                frame[b, at : at + n] = unit
                valid[b, at : at + n] = True
                current[b, at : at + n] = i == len(blocks) - 1
                at += n
        return Packed(tokens, pos, frame, valid, current)


@dataclass
class TrainingBatch:
    packed: Packed
    target: torch.Tensor  # [B, L, D], v* = S_k - E_k on the current tokens, zero elsewhere
    stage: torch.Tensor  # [B] long
    tau: torch.Tensor  # [B] model time
    ratio: torch.Tensor  # [B] local ratio r (1 at S_k, 0 at E_k)

    def to(self, device: str | torch.device) -> TrainingBatch:
        return TrainingBatch(
            self.packed.to(device),
            self.target.to(device),
            self.stage.to(device),
            self.tau.to(device),
            self.ratio.to(device),
        )


def training_batch(
    clips: torch.Tensor,
    stage: np.ndarray,
    unit: np.ndarray,
    table: StageTable,
    layout: Layout,
    corrupt_ratio: float,
    generator: torch.Generator,
    history_clips: torch.Tensor | None = None,
) -> TrainingBatch:
    """Training items for clips [B, T, C, H, W]: sample b is unit unit[b] of its clip at stage stage[b].

    Current unit: x_r = r S_k + (1 - r) E_k with r = 1 - i/T, i uniform in 0..T-1, and target v* = S_k - E_k.
    History: units < j of `history_clips` (default: the same clips) as a temporal pyramid, every level
    corrupted as sig eps + (1 - sig) h with one sig ~ U(0, corrupt_ratio) per sample.
    Draws, in this order: full-res noise [B, C, H, W], step indices [B], sig [B], then eps per level."""
    count, frames, channels = clips.shape[:3]
    stage_t = torch.as_tensor(stage, dtype=torch.long)
    rows = torch.arange(count)
    x = clips[rows, torch.as_tensor(unit, dtype=torch.long)]  # [B, C, H, W]
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    index = torch.randint(0, table.train_timesteps, (count,), generator=generator)
    sig = torch.rand(count, generator=generator, dtype=x.dtype) * corrupt_ratio
    clean, noisy = latent_pyramid(x, table.stages), noise_pyramid(noise, table.stages)
    ratio = table.ratio(index).to(x.dtype)
    tau = torch.zeros(count, dtype=torch.float64)
    current_in: dict[int, torch.Tensor] = {}
    target_in: dict[int, torch.Tensor] = {}
    for k in range(table.stages):
        chosen = (stage_t == k).nonzero().flatten()
        if len(chosen) == 0:
            continue
        start, end = endpoints([level[chosen] for level in clean], [level[chosen] for level in noisy], k, table)
        r = ratio[chosen].view(-1, 1, 1, 1)
        x_r, v = r * start + (1 - r) * end, start - end
        tau[chosen] = table.tau(k, index[chosen])
        for row, b in enumerate(chosen.tolist()):
            current_in[b] = patchify(x_r[row], layout.patch)
            target_in[b] = patchify(v[row], layout.patch)

    source = clips if history_clips is None else history_clips
    corrupted = latent_pyramid(source, table.stages)
    s = sig.view(-1, 1, 1, 1, 1)
    hist_tokens = [
        patchify(s * torch.randn(level.shape, generator=generator, dtype=x.dtype) + (1 - s) * level, layout.patch)
        for level in corrupted
    ]  # [B, T, n_l, D] per level
    samples = []
    for b in range(count):
        j, k = int(unit[b]), int(stage[b])
        blocks = [(hist_tokens[level][b, u], level, u) for u, level in enumerate(history_levels(k, j))]
        samples.append(blocks + [(current_in[b], k, j)])
    packed = layout.pack(samples, frames)
    target = torch.zeros_like(packed.tokens)
    for b in range(count):
        target[b, packed.current[b]] = target_in[b]
    return TrainingBatch(packed, target, stage_t, tau.to(x.dtype), ratio)


def per_sample_loss(prediction: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
    """Mean squared error over each sample's current tokens (all weights 1), one value per sample."""
    mask = batch.packed.current.unsqueeze(-1).to(prediction.dtype)
    squared = ((prediction - batch.target) ** 2 * mask).sum(dim=(1, 2))
    return squared / (mask.sum(dim=(1, 2)) * prediction.shape[-1])


def zero_loss(batch: TrainingBatch) -> torch.Tensor:
    """The loss of the zero predictor, mean (v*)^2 per sample."""
    return per_sample_loss(torch.zeros_like(batch.target), batch)
