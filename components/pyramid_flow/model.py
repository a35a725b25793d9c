"""A small DiT for pyramid token sequences: one patch embedding for every level, spatial sin-cos positions
taken at each token's location on the full-resolution grid (so a low-res history token sits where the
full-res tokens it summarises sit), temporal sin-cos by unit index, a temporal-causal mask, and the model
time (the stage's slice of the global timeline, never the local ratio) added to every token.

Attention is written as explicit matmuls: FlopCounterMode counts them (the fused SDPA call is not counted
on CPU), which the sampling-cost check needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from components.pyramid_flow.pyramid import Layout, Packed


def sincos(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """[N] float positions -> [N, dim] (sin of dim/2 frequencies, then cos)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(base) * torch.arange(half, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[:, None] * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(torch.float32)


def spatial_table(layout: Layout, dim: int) -> torch.Tensor:
    """Positions of every level's tokens, concatenated: token (i, j) of a level at downsample factor f covers
    f x f full-res tokens, so its centre on the full-res token grid is ((i + 1/2) f - 1/2, (j + 1/2) f - 1/2)."""
    rows = []
    for k, (grid_h, grid_w) in enumerate(layout.grids):
        factor = 2 ** (layout.stages - 1 - k)
        ys = (torch.arange(grid_h, dtype=torch.float64) + 0.5) * factor - 0.5
        xs = (torch.arange(grid_w, dtype=torch.float64) + 0.5) * factor - 0.5
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        rows.append(torch.cat([sincos(yy.flatten(), dim // 2), sincos(xx.flatten(), dim // 2)], dim=1))
    return torch.cat(rows)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (width // self.heads) ** -0.5 + bias
        out = torch.matmul(scores.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class PyramidDiT(nn.Module):
    """Velocity model v_theta(tokens, positions, frames, tau) over packed pyramid sequences."""

    def __init__(
        self, layout: Layout, channels: int, width: int, depth: int, heads: int, mlp_ratio: float, frames: int
    ):
        super().__init__()
        if width % heads or width % 4:
            raise ValueError(f"width {width} must be divisible by heads {heads} and by 4")
        self.layout, self.width, self.frames = layout, width, frames
        token_dim = channels * layout.patch**2
        self.embed = nn.Linear(token_dim, width)
        self.register_buffer("spatial", spatial_table(layout, width), persistent=False)
        self.register_buffer("temporal", sincos(torch.arange(frames + 1), width), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, token_dim)

    def forward(self, packed: Packed, tau: torch.Tensor) -> torch.Tensor:
        """Predictions for every token [B, L, C p p]; only the current unit's are used."""
        x = self.embed(packed.tokens)
        time = self.time_mlp(sincos(tau, self.width).to(x.device, packed.tokens.dtype))
        # buffers stay float32 when a strategy casts only the parameters (DeepSpeed bf16): follow the activations
        x = x + (self.spatial[packed.pos] + self.temporal[packed.frame]).to(x.dtype) + time[:, None].to(x.dtype)
        # a query attends to valid keys of its own or an earlier unit (history never sees the current unit)
        allowed = packed.valid[:, None, :] & (packed.frame[:, None, :] <= packed.frame[:, :, None])
        bias = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill(~allowed, float("-inf"))[:, None]
        for block in self.blocks:
            x = block(x, bias)
        return self.head(self.norm(x))

    def flops_per_layer(self) -> tuple[float, float]:
        """(c_lin, c_attn) of pyramid_flow.md §6 check 4 for one block: F(n) = n c_lin + n^2 c_attn FLOPs,
        counting 2 FLOPs per multiply-add of the linear layers and of the two attention matmuls."""
        block = self.blocks[0]
        params = sum(m.in_features * m.out_features for m in block.modules() if isinstance(m, nn.Linear))
        return 2.0 * params, 4.0 * self.width
