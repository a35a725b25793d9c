"""DNT's Config. Defaults are the paper's L-DNT-Small setting (GPT-2 124M on OpenWebText, mSGDW at LR 1.0 in the
EMA momentum form, dnt.md §3.5 and §4); presets shrink it. The vision setting (V-DNT on ImageNet) is a set of
overrides (README)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.optim import OptimizerName
from components.core.schedules import ScheduleConfig

Backbone = Literal["vit", "gpt"]
# standard = S1 (pre-LN Transformer), dnt = S5; s2-s4 are the paper's ablation steps between them (dnt.md §3.2)
Variant = Literal["standard", "s2", "s3", "s4", "dnt"]
TokenSource = Literal["bin", "stdlib", "markov"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: Backbone = "gpt"  # L-DNT-Small: the setting whose mSGDW LR (1.0) the paper's appendix gives
    variant: Variant = "dnt"  # S5: InputNorm + PreNorm + QKNorm + MidNorm, no FFN PreNorm, no PostNorm
    norm_type: Literal["rmsnorm", "layernorm"] = "rmsnorm"  # the paper's Jacobian analysis is written for RMSNorm
    norm_eps: float = Field(1e-6, gt=0)  # dnt.md §3.1
    act: Literal["gelu", "relu"] = "gelu"  # GPT-2's and ViT's activation; the analysis uses ReLU
    bias: bool = False  # nanoGPT's train.py default; biases would break the exact rescaling invariance
    depth: int = Field(12, ge=1)  # GPT-2 small: 12 blocks
    dim: int = Field(768, ge=1)  # GPT-2 small width
    heads: int = Field(12, ge=1)  # GPT-2 small: 12 heads of 64
    ffn_dim: int = Field(3072, ge=1)  # 4 x dim, the GPT-2/ViT FFN

    # data: vit reads an image dataset; gpt reads a token stream (tokens=bin: nanoGPT's train.bin/val.bin)
    dataset: str = "tokens/openwebtext"  # vit: a prepared image dataset; gpt + tokens=bin: a folder under data/
    tokens: TokenSource = "bin"  # OpenWebText as nanoGPT's GPT-2 BPE uint16 files (the paper's GPT data)
    vocab_size: int = Field(50304, ge=2)  # tokens=bin: GPT-2's 50257 padded to a multiple of 64 (nanoGPT)
    seq_len: int = Field(1024, ge=1)  # nanoGPT's block size
    markov_symbols: int = Field(32, ge=2)  # tokens=markov: dnt.md §6's order-2 chain over 32 symbols
    image_size: int = Field(224, ge=1)  # vit: ImageNet at 224 (checked against the dataset's manifest)
    channels: int = Field(3, ge=1)  # vit: RGB
    num_classes: int = Field(1000, ge=2)  # vit: ImageNet-1k
    patch_size: int = Field(16, ge=1)  # vit: ViT-L/16

    # vit only: the timm/DeiT training recipe dnt.md §7 names ("timm/DeiT-style recipe ... heavy augmentation"), at
    # DeiT's values (Touvron et al. 2021, its main.py defaults); the gpt ignores these. Eval is never augmented
    augment: Literal["none", "random-resized-crop-flip"] = "random-resized-crop-flip"  # scale (0.08, 1), 3/4-4/3
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of a random-resized crop (torchvision, DeiT)
    normalise: bool = True  # ImageNet mean/std (DeiT); False: pixels mapped to [-1, 1] (any channel count)
    randaugment_layers: int = Field(2, ge=0)  # rand-m9-mstd0.5-inc1: 2 ops per image; 0: no RandAugment
    randaugment_magnitude: float = Field(9.0, ge=0, le=10)  # m9
    randaugment_magnitude_std: float = Field(0.5, ge=0)  # mstd0.5: the magnitude is N(9, 0.5^2) per op
    random_erasing: float = Field(0.25, ge=0, le=1)  # DeiT's reprob: one noise box per image at this probability
    mixup_alpha: float = Field(0.8, ge=0)  # Beta(0.8, 0.8) lam; 0: no mixup
    cutmix_alpha: float = Field(1.0, ge=0)  # Beta(1, 1) lam; 0: no cutmix
    mix_switch_prob: float = Field(0.5, ge=0, le=1)  # with both on: cutmix with this probability, else mixup
    label_smoothing: float = Field(0.1, ge=0, lt=1)  # DeiT's smoothing, folded into the (mixed) soft targets
    drop_path: float = Field(0.1, ge=0, lt=1)  # stochastic depth of the last block, linear from 0 (DeiT-B's 0.1)

    # optimisation: lr None -> lr_by_optimizer[optimizer] -> the optimizer table's default (same for weight decay)
    # the paper's point: momentum SGD with decoupled decay, in the EMA form b = 0.9 b + 0.1 g, the form in which the
    # paper's LR 1.0 trains (in PyTorch's b = 0.9 b + g it diverges: README, "Momentum form")
    optimizer: OptimizerName = "msgdw_ema"
    lr: float | None = Field(None, gt=0)  # one peak LR for whichever optimizer; None: the per-optimizer value
    lr_by_optimizer: dict[OptimizerName, float] = {  # appendix via reviews; nanoGPT
        "msgdw_ema": 1.0,  # L-DNT-Small's mSGDW LR
        "msgdw": 0.1,  # the same step in PyTorch's form (b there is 10x the EMA's)
        "adamw": 6e-4,
    }
    weight_decay: float | None = Field(None, ge=0)  # None: the per-optimizer value
    adamw_betas: tuple[float, float] = (0.9, 0.95)  # AdamW's (beta1, beta2): nanoGPT's GPT-2; the ViT's timm 0.999
    weight_decay_by_optimizer: dict[OptimizerName, float] = {"adamw": 0.1}  # nanoGPT; mSGDW's value not retrieved
    schedule: ScheduleConfig = ScheduleConfig(name="cosine", warmup=2000, min_ratio=0.1)  # nanoGPT: cosine to lr/10
    steps: int = Field(100000, ge=1)  # Sophia's GPT-2 small budget (the paper reused its recipe)
    batch_size: int = Field(480, ge=1)  # 480 x 1024 = 491,520 tokens per step, nanoGPT's ~0.5M
    precision: Literal["fp32", "bf16"] = "bf16"  # the paper trains under bf16 autocast
    # max global gradient L2 norm before each step; None: no clipping (the paper names none; nanoGPT clips at 1.0).
    # Under DeepSpeed the engine clips with this value (profiles must not set gradient_clipping)
    grad_clip: float | None = Field(None, gt=0)
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run as diverged

    eval_every: int = Field(2000, ge=0)  # log val metrics every N steps (0: only at the end)
    eval_batches: int = Field(200, ge=1)  # gpt: validation windows = eval_batches x eval_batch_size (nanoGPT: 200)
    eval_batch_size: int = Field(16, ge=1)  # chunk size of every evaluation
    grad_stats_every: int = Field(1000, ge=0)  # gradient-tail statistics (dnt.md §3.6) every N steps; 0: init only
    workers: int = Field(4, ge=0)  # vit: image-decoding DataLoader workers (the order is the same for any count)

    @model_validator(mode="after")
    def _shapes_agree(self) -> Config:
        if not all(0.0 <= beta < 1.0 for beta in self.adamw_betas):
            raise ValueError(f"adamw_betas must lie in [0, 1), got {self.adamw_betas}")
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        if self.backbone == "vit" and self.image_size % self.patch_size:
            raise ValueError(f"patch_size ({self.patch_size}) must divide image_size ({self.image_size})")
        if self.backbone == "vit" and self.normalise and self.channels != 3:
            raise ValueError(
                f"normalise uses ImageNet's RGB mean/std: set normalise=false for {self.channels} channel(s)"
            )
        if self.crop_scale[0] <= 0 or self.crop_scale[0] > self.crop_scale[1] or self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.schedule.warmup >= self.steps:
            raise ValueError(f"schedule.warmup ({self.schedule.warmup}) must be smaller than steps ({self.steps})")
        return self
