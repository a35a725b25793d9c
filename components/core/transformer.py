"""A small decoder-only Transformer shared by the sequence papers (NUPA, LDHD), with pluggable position encodings.

Position encodings (`DecoderConfig.position`):
- `rope`: rotary embedding of queries and keys (the Llama default);
- `nope`: none, the causal mask alone;
- `alibi`: logit_ij += -m_h (p_i - p_j) for j <= i with m_h = 2^(-8h/H), h = 1..H (the standard negative bias;
  NUPA's official patch adds +m_h |i - j|, which favours distant keys: nupa.md §8);
- `ape`: learned absolute position embeddings added to the input;
- `rpe`: a learned bias b_h(clip(p_i - p_j, -R, R)) per head, zero-initialised (ldhd.md §3.4);
- `rpe_square_hard`: c_h(seg(i), seg(j), clip(r(i) - r(j), -R, R)) with r(i) = i - s(i), s(i) the position of
  the last anchor token (separator) at or before i and seg(i) the number of anchors before i, clipped;
- `rpe_square_soft`: the anchor is attended to: alpha_{i i'} = softmax over anchors i' <= i of
  (e_h(i - i') + g_h^T x_{i'}) and logit_ij += sum_{i', j'} alpha_{i i'} alpha_{j j'} c_h((i - i') - (j - j')),
  computed as P_i C_h P_j^T over offsets; with one-hot alpha on the last anchor it is the hard form without
  segments. Both RPE-Square forms are ldhd.md's reconstruction (the paper's equation was not available).

Attention runs through PyTorch's fused `F.scaled_dot_product_attention` (`attention="fused"`): with `is_causal`
and no mask for rope / nope / ape without padding, with the bias as an additive mask otherwise. `attention=
"naive"` is the reference (explicit softmax of QK^T / sqrt(d) + bias + mask); tests/components/core/
test_transformer.py checks the two agree for every encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

PositionEncoding = Literal["rope", "nope", "alibi", "ape", "rpe", "rpe_square_hard", "rpe_square_soft"]
POSITION_ENCODINGS: tuple[str, ...] = PositionEncoding.__args__
Attention = Literal["fused", "naive"]


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    d_ff: int | None = None  # None: 4 d_model, the GPT-2 MLP width
    max_positions: int = 1024  # APE table size and RoPE/ALiBi's largest position id
    position: PositionEncoding = "rope"
    rope_base: float = 10000.0
    rpe_clip: int = 64  # R: relative offsets are clipped to [-R, R]
    rpe_segments: int = 4  # RPE-Square hard: segments seen (BOS-part, operand 2, answer, ...), clipped
    anchor_tokens: tuple[int, ...] = field(default_factory=tuple)  # separator ids for RPE-Square's anchors
    attention: Attention = "fused"
    tie_embeddings: bool = True

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.position not in POSITION_ENCODINGS:
            raise ValueError(f"position must be one of {', '.join(POSITION_ENCODINGS)}, got {self.position!r}")
        if self.position.startswith("rpe_square") and not self.anchor_tokens:
            raise ValueError("RPE-Square needs anchor_tokens (the separator ids its offsets are measured from)")


def alibi_slopes(heads: int) -> torch.Tensor:
    """m_h = 2^(-8h/H), h = 1..H (Press et al. 2022)."""
    return torch.tensor([2.0 ** (-8.0 * h / heads) for h in range(1, heads + 1)])


def rope_rotate(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding of x [B, H, T, D] at integer positions [B, T] (half-split pairing, as Llama)."""
    half = x.shape[-1] // 2
    frequencies = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = positions.to(torch.float32)[:, None, :, None] * frequencies  # [B, 1, T, half]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def last_anchor(anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, seg) per token: the index of the last anchor at or before it (0 before any) and how many anchors
    came strictly before that one (its segment number)."""
    length = anchors.shape[1]
    index = torch.arange(length, device=anchors.device).expand_as(anchors)
    marked = torch.where(anchors, index, torch.zeros_like(index))
    start = torch.cummax(marked, dim=1).values
    segment = (anchors.long().cumsum(dim=1) - 1).clamp(min=0)
    return start, segment


class SelfAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.d_model // cfg.heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor | None, keep: torch.Tensor | None):
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.cfg.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.cfg.position == "rope":
            q, k = rope_rotate(q, positions, self.cfg.rope_base), rope_rotate(k, positions, self.cfg.rope_base)
        if self.cfg.attention == "naive":
            y = naive_attention(q, k, v, bias, keep)
        else:
            y = fused_attention(q, k, v, bias, keep)
        return self.out(y.transpose(1, 2).reshape(batch, length, self.cfg.d_model))


def causal_keep(length: int, keep: torch.Tensor | None, device) -> torch.Tensor:
    """[B or 1, 1, T, T] bool: key j visible from query i (j <= i and j not padding; a padding query sees itself
    so its softmax is defined)."""
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    if keep is None:
        return causal
    eye = torch.eye(length, dtype=torch.bool, device=device)[None, None]
    return (causal & keep[:, None, None, :]) | eye


def naive_attention(q, k, v, bias, keep) -> torch.Tensor:
    """The reference: softmax(QK^T / sqrt(d) + bias, masked) V, written out."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    logits = logits.masked_fill(~causal_keep(q.shape[2], keep, q.device), float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


def fused_attention(q, k, v, bias, keep) -> torch.Tensor:
    if bias is None and keep is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    visible = causal_keep(q.shape[2], keep, q.device)
    mask = torch.zeros(visible.shape, dtype=q.dtype, device=q.device).masked_fill(~visible, float("-inf"))
    if bias is not None:
        mask = mask + bias
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model)
        self.attention = SelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model)
        hidden = cfg.d_ff or 4 * cfg.d_model
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, hidden, bias=False), nn.GELU(), nn.Linear(hidden, cfg.d_model, bias=False)
        )

    def forward(self, x, positions, bias, keep):
        x = x + self.attention(self.norm1(x), positions, bias, keep)
        return x + self.mlp(self.norm2(x))


class PositionBias(nn.Module):
    """The additive attention bias [B, H, T, T] of alibi / rpe / rpe_square_*; shared by every layer."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        span = 2 * cfg.rpe_clip + 1
        if cfg.position == "alibi":
            self.register_buffer("slopes", alibi_slopes(cfg.heads), persistent=False)
        elif cfg.position == "rpe":
            self.table = nn.Parameter(torch.zeros(cfg.heads, span))  # zero init: untrained offsets stay neutral
        elif cfg.position == "rpe_square_hard":
            self.table = nn.Parameter(torch.zeros(cfg.heads, cfg.rpe_segments, cfg.rpe_segments, span))
        elif cfg.position == "rpe_square_soft":
            self.table = nn.Parameter(torch.zeros(cfg.heads, span))
            # e_h(d) starts at -d: the nearest anchor wins, so training starts from (almost) the hard form
            self.anchor_offset = nn.Parameter(
                -torch.arange(cfg.max_positions, dtype=torch.float32).expand(cfg.heads, -1).clone()
            )
            self.anchor_content = nn.Linear(cfg.d_model, cfg.heads, bias=False)
            nn.init.zeros_(self.anchor_content.weight)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        cfg = self.cfg
        if cfg.position == "alibi":
            distance = (positions[:, :, None] - positions[:, None, :]).to(x.dtype)  # p_i - p_j >= 0 where visible
            return -self.slopes.to(x.dtype)[None, :, None, None] * distance[:, None]
        if cfg.position == "rpe":
            offset = (positions[:, :, None] - positions[:, None, :]).clamp(-cfg.rpe_clip, cfg.rpe_clip) + cfg.rpe_clip
            return self.table[:, offset].permute(1, 0, 2, 3)
        anchors = torch.isin(tokens, torch.tensor(cfg.anchor_tokens, device=tokens.device))
        if cfg.position == "rpe_square_hard":
            start, segment = last_anchor(anchors)
            relative = positions - torch.gather(positions, 1, start)
            offset = (relative[:, :, None] - relative[:, None, :]).clamp(-cfg.rpe_clip, cfg.rpe_clip) + cfg.rpe_clip
            segment = segment.clamp(max=cfg.rpe_segments - 1)
            bias = self.table[:, segment[:, :, None], segment[:, None, :], offset]  # [H, B, T, T]
            return bias.permute(1, 0, 2, 3)
        return self.soft_bias(anchors, positions, x)

    def soft_bias(self, anchors: torch.Tensor, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        batch, length = anchors.shape
        back = positions[:, :, None] - positions[:, None, :]  # i - i' over candidate anchors i'
        usable = anchors[:, None, :] & (back >= 0)
        usable = usable | (~usable.any(dim=-1, keepdim=True) & (back == 0))  # no anchor yet: the token itself
        logits = self.anchor_offset[:, back.clamp(0, cfg.max_positions - 1)].permute(1, 0, 2, 3)  # [B, H, T, T']
        logits = logits + self.anchor_content(x).permute(0, 2, 1)[:, :, None, :]
        alpha = torch.softmax(logits.masked_fill(~usable[:, None], float("-inf")), dim=-1)
        # P_i(d) = alpha_{i, i'} at offset d = i - i' (offsets clipped to R like the table)
        span = cfg.rpe_clip + 1
        offset_index = back.clamp(0, cfg.rpe_clip)
        profile = torch.zeros(batch, cfg.heads, length, span, dtype=alpha.dtype, device=alpha.device)
        profile.scatter_add_(3, offset_index[:, None].expand(-1, cfg.heads, -1, -1), alpha)
        d = torch.arange(span, device=alpha.device)
        table_index = (d[:, None] - d[None, :]).clamp(-cfg.rpe_clip, cfg.rpe_clip) + cfg.rpe_clip
        table = self.table[:, table_index]  # C_h[d1, d2] = c_h(d1 - d2)
        return torch.einsum("bhid,hde,bhje->bhij", profile, table, profile)


class Decoder(nn.Module):
    """Token embedding -> pre-norm blocks -> RMSNorm -> tied LM head."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.absolute = nn.Embedding(cfg.max_positions, cfg.d_model) if cfg.position == "ape" else None
        self.bias = (
            PositionBias(cfg) if cfg.position in ("alibi", "rpe", "rpe_square_hard", "rpe_square_soft") else None
        )
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(
        self, tokens: torch.Tensor, positions: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [B, T, V] of tokens [B, T]. `keep` [B, T] marks real tokens (False: padding, e.g. left padding
        for generation); `positions` [B, T] default to 0, 1, ... counted from each row's first real token."""
        if positions is None:
            positions = default_positions(tokens, keep)
        if int(positions.max()) >= self.cfg.max_positions:
            raise ValueError(f"position {int(positions.max())} exceeds max_positions {self.cfg.max_positions}")
        x = self.embed(tokens)
        if self.absolute is not None:
            x = x + self.absolute(positions)
        bias = self.bias(tokens, positions, x) if self.bias is not None else None
        for block in self.blocks:
            x = block(x, positions, bias, keep)
        return self.head(self.norm(x))


def default_positions(tokens: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    if keep is None:
        return torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    return (keep.long().cumsum(dim=1) - 1).clamp(min=0)


@torch.no_grad()
def greedy(model: Decoder, prompts: list[list[int]], max_new_tokens: int, eos: int, pad: int) -> list[list[int]]:
    """Greedy continuation of each prompt (left-padded into one batch, contiguous positions from 0), stopping at
    EOS or after max_new_tokens; returns the new tokens without EOS. No KV cache: small models, short answers."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    keep = torch.zeros_like(tokens, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        tokens[row, width - len(prompt) :] = torch.tensor(prompt, device=device)
        keep[row, width - len(prompt) :] = True
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        next_token = model(tokens, keep=keep)[:, -1].argmax(dim=-1)
        for row in torch.nonzero(~done).flatten().tolist():
            if int(next_token[row]) == eos:
                done[row] = True
            else:
                out[row].append(int(next_token[row]))
        if bool(done.all()):
            break
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        keep = torch.cat([keep, torch.ones_like(keep[:, :1])], dim=1)
    return out
