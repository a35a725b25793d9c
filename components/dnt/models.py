"""The Deeply Normalized Transformer (dnt.md §3.2) and its ablation variants, as a ViT and as a GPT.

One block layout serves every variant; a variant only decides which normalisations exist:

    x0 = InputNorm(embed(input))
    per block:  x = x + MidNorm_attn(Attention(PreNorm(x)))       QKNorm per head inside Attention
                x = x + MidNorm_ffn(W_2 act(W_1 FFNPreNorm(x)))
    out = FinalNorm(x)

A missing normalisation is an nn.Identity, so the structure test can count the real ones. Nothing is
ever normalised after a residual add (that would be PostNorm, which the paper rejects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


@dataclass(frozen=True)
class Layout:
    input_norm: bool
    ffn_prenorm: bool
    qk_norm: bool
    mid_norm: bool


LAYOUTS: dict[str, Layout] = {
    "standard": Layout(input_norm=False, ffn_prenorm=True, qk_norm=False, mid_norm=False),  # S1: pre-LN
    "s2": Layout(input_norm=False, ffn_prenorm=True, qk_norm=True, mid_norm=False),  # S1 + QKNorm
    "s3": Layout(input_norm=True, ffn_prenorm=True, qk_norm=True, mid_norm=False),  # S2 + InputNorm
    "s4": Layout(input_norm=True, ffn_prenorm=True, qk_norm=True, mid_norm=True),  # S3 + MidNorm
    "dnt": Layout(input_norm=True, ffn_prenorm=False, qk_norm=True, mid_norm=True),  # S5 = S4 - FFN PreNorm
}


class RMSNorm(nn.Module):
    """gamma * z / sqrt(mean(z^2) + eps), computed in float32 so bf16 autocast cannot lose the scale."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.float()
        z = z * torch.rsqrt(z.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (z * self.weight.float()).to(x.dtype)


NORM_TYPES = (RMSNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Spec:
    """Everything that shapes a model (from the Config plus what the data says)."""

    variant: str = "dnt"
    depth: int = 4
    dim: int = 64
    heads: int = 4
    ffn_dim: int = 128
    norm_type: str = "rmsnorm"
    norm_eps: float = 1e-6
    act: str = "relu"
    bias: bool = False
    drop_path: float = 0.0  # stochastic depth of the last block; block i of N drops at i / (N - 1) of it (timm)

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.variant]

    def norm(self, dim: int) -> nn.Module:
        if self.norm_type == "rmsnorm":
            return RMSNorm(dim, self.norm_eps)
        return nn.LayerNorm(dim, eps=self.norm_eps, bias=self.bias)


class Attention(nn.Module):
    """Multi-head attention with separate W_q, W_k, W_v, W_o (so each can be rescaled on its own) and QKNorm
    applied per head over d_h (an RMSNorm of the head vector, gain shared across heads)."""

    def __init__(self, spec: Spec, causal: bool):
        super().__init__()
        self.heads = spec.heads
        self.causal = causal
        head_dim = spec.dim // spec.heads
        self.q, self.k, self.v, self.o = (nn.Linear(spec.dim, spec.dim, bias=spec.bias) for _ in range(4))
        self.q_norm = spec.norm(head_dim) if spec.layout.qk_norm else nn.Identity()
        self.k_norm = spec.norm(head_dim) if spec.layout.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads) for proj in (self.q, self.k, self.v))
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # logits scaled by 1/sqrt(d_h)
        return self.o(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.w1 = nn.Linear(spec.dim, spec.ffn_dim, bias=spec.bias)
        self.w2 = nn.Linear(spec.ffn_dim, spec.dim, bias=spec.bias)
        self.act = nn.ReLU() if spec.act == "relu" else nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.w1(x)))


class DropPath(nn.Module):
    """Stochastic depth (timm's drop_path): in training, each sample's residual branch is zeroed with probability
    `rate` and kept branches are scaled by 1 / (1 - rate), so the expectation is unchanged; the identity in eval."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return branch
        keep = 1.0 - self.rate
        mask = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(keep)
        return branch * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """timm's linearly increasing stochastic-depth rule: 0 for the first block, `rate` for the last."""
    return [rate * i / (depth - 1) if depth > 1 else rate for i in range(depth)]


class Block(nn.Module):
    def __init__(self, spec: Spec, causal: bool, drop_path: float = 0.0):
        super().__init__()
        layout = spec.layout
        self.drop_path = DropPath(drop_path)  # one rate per block, a fresh mask per branch (attention, FFN)
        self.attn_norm = spec.norm(spec.dim)  # PreNorm: every variant has it
        self.attn = Attention(spec, causal)
        self.attn_mid_norm = spec.norm(spec.dim) if layout.mid_norm else nn.Identity()
        self.ffn_norm = spec.norm(spec.dim) if layout.ffn_prenorm else nn.Identity()
        self.ffn = FeedForward(spec)
        self.ffn_mid_norm = spec.norm(spec.dim) if layout.mid_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn_mid_norm(self.attn(self.attn_norm(x))))  # MidNorm on the branch, pre-add
        return x + self.drop_path(self.ffn_mid_norm(self.ffn(self.ffn_norm(x))))


class Trunk(nn.Module):
    """InputNorm -> blocks -> FinalNorm, on an embedded sequence [B, N, dim]."""

    def __init__(self, spec: Spec, causal: bool):
        super().__init__()
        self.input_norm = spec.norm(spec.dim) if spec.layout.input_norm else nn.Identity()
        rates = drop_path_rates(spec.drop_path, spec.depth)
        self.blocks = nn.ModuleList(Block(spec, causal, rate) for rate in rates)
        self.final_norm = spec.norm(spec.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


class ViT(nn.Module):
    """V-DNT: non-overlapping patches -> linear patch embedding, a cls token and learned positions; the
    classifier reads the cls token. Images come in as float [B, H, W, C]."""

    def __init__(self, spec: Spec, image_size: int, channels: int, patch_size: int, num_classes: int):
        super().__init__()
        self.patch_size = patch_size
        tokens = (image_size // patch_size) ** 2 + 1
        self.patch_embed = nn.Linear(patch_size * patch_size * channels, spec.dim, bias=spec.bias)
        self.cls = nn.Parameter(torch.zeros(spec.dim))  # 1-D, so the optimizer table never decays it
        self.pos = nn.Embedding(tokens, spec.dim)  # an Embedding, so the table's no-decay rule exempts it
        self.trunk = Trunk(spec, causal=False)
        self.head = nn.Linear(spec.dim, num_classes, bias=spec.bias)
        init_vit(self)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        patches = rearrange(images, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=p, p2=p)
        cls = repeat(self.cls, "d -> b 1 d", b=images.shape[0])
        return torch.cat([cls, self.patch_embed(patches)], dim=1) + self.pos.weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(self.embed(images))[:, 0])


class GPT(nn.Module):
    """L-DNT: token + position embeddings, causal attention, LM head tied to the token embedding (nanoGPT)."""

    def __init__(self, spec: Spec, vocab_size: int, seq_len: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, spec.dim)
        self.wpe = nn.Embedding(seq_len, spec.dim)
        self.trunk = Trunk(spec, causal=True)
        init_gpt(self, spec.depth)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.wte(tokens) + self.wpe.weight[: tokens.shape[1]]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(self.trunk(self.embed(tokens)), self.wte.weight)


def init_vit(model: ViT) -> None:
    """timm's ViT init: truncated normal(0.02) for linears and positions, zero biases, cls near zero."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.trunc_normal_(model.pos.weight, std=0.02)
    nn.init.normal_(model.cls, std=1e-6)


def init_gpt(model: GPT, depth: int) -> None:
    """nanoGPT's init: normal(0.02) everywhere, residual projections (W_o, W_2) at 0.02 / sqrt(2 depth)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    for block in model.trunk.blocks:
        for projection in (block.attn.o, block.ffn.w2):
            nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * depth))


def count_norms(model: nn.Module) -> int:
    return sum(isinstance(module, NORM_TYPES) for module in model.modules())


def sigma1_wqk(model: nn.Module) -> list[float]:
    """Per block, the largest singular value of W_q^T W_k (logits = a^T W_q^T W_k a before QKNorm)."""
    values = []
    for block in model.trunk.blocks:
        product = block.attn.q.weight.detach().float().T @ block.attn.k.weight.detach().float()
        values.append(torch.linalg.matrix_norm(product, ord=2).item())
    return values
