"""Pyramid Flow's Config. Defaults are the paper's released autoregressive recipe (pyramid_flow.md §3, §7) on a
single-stream DiT of SD3-Medium's width and depth; presets shrink it to the spec's moving-squares smoke test."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.optim import OptimizerName
from components.pyramid_flow.schedule import stage_table


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "video/clips_384p"  # VAE latents of your corpus (`paperzoo prepare video ...`, source video-folder)
    stages: int = Field(3, ge=1)  # K = 3: stages [1, 2, 4] of the released scripts (downsample 4, 2, 1)
    stage_range: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0)  # equal thirds of the global sigma grid
    gamma: float = Field(1 / 3, gt=0, le=1 / 3)  # block-noise correlation; Sigma is PSD only for gamma <= 1/3
    shift: float = Field(1.0, gt=0)  # SD3 timestep shift; 1.0 in every released script
    train_timesteps: int = Field(1000, ge=2)  # the global grid of 1000 steps (and 1000 local steps per stage)
    sample_ratios: tuple[int, ...] = (1, 2, 1)  # stage mix per batch (train_pyramid_flow.py overrides [1, 1, 1])
    corrupt_ratio: float = Field(1 / 3, ge=0, lt=1)  # history corruption sig_h ~ U(0, 1/3), the code default
    patch: int = Field(2, ge=1)  # patch 2 on the latent, as SD3
    width: int = Field(1536, ge=4)  # SD3-Medium: 24 heads x 64
    depth: int = Field(24, ge=1)  # SD3-Medium's 24 blocks (single-stream here: no text stream, an assumption)
    heads: int = Field(24, ge=1)  # 24 heads of 64
    mlp_ratio: float = Field(4.0, gt=0)  # the DiT/SD3 MLP expansion
    optimizer: OptimizerName = "adamw"  # AdamW, as train_pyramid_flow.py
    lr: float = Field(5e-5, gt=0)  # autoregressive video training (1e-4 for the non-AR variant)
    weight_decay: float = Field(1e-4, ge=0)  # the released scripts' 1e-4
    betas: tuple[float, float] = (0.9, 0.95)  # the released scripts' AdamW betas (core's adamw uses 0.999)
    warmup: int = Field(1000, ge=0)  # 1000 linear warm-up steps, then a constant LR
    grad_clip: float = Field(1.0, gt=0)  # max gradient norm 1.0 (under DeepSpeed the engine clips with it)
    precision: Literal["fp32", "bf16"] = "bf16"  # the released scripts train the DiT in bf16
    batch_size: int = Field(64, ge=1)  # global: 8 GPUs x 4 per GPU x 2 accumulation steps
    steps: int = Field(40000, ge=1)  # 20 epochs x 2000 iterations of the fine-tuning scripts
    sample_steps: tuple[int, ...] = (20, 20, 20)  # Euler steps per stage for the first unit (the image)
    video_sample_steps: tuple[int, ...] = (10, 10, 10)  # Euler steps per stage for every later unit
    sample_clips: int = Field(32, ge=1)  # clips generated at the end (sample metrics; the grid shows the first)
    grid_clips: int = Field(8, ge=1)  # clips of samples.png
    val_clips: int = Field(64, ge=1)  # val clips scored (each at every stage, fixed noise and timesteps)
    eval_every: int = Field(0, ge=0)  # log val metrics every N steps (0: only at the end)
    eval_batch_size: int = Field(64, ge=1)  # val items per forward pass
    cost_steps: int = Field(10, ge=1)  # N of the sampling-cost check: N per stage against K N at full resolution
    jump_draws: int = Field(100000, ge=1000)  # Monte Carlo draws behind jump/cov_err
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run as diverged

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if len(self.stage_range) != self.stages + 1:
            raise ValueError(
                f"stage_range needs stages + 1 = {self.stages + 1} boundaries, got {len(self.stage_range)}"
            )
        if self.stage_range[0] != 0 or self.stage_range[-1] != 1:
            raise ValueError(f"stage_range must run from 0 to 1, got {list(self.stage_range)}")
        if any(b <= a for a, b in zip(self.stage_range, self.stage_range[1:])):
            raise ValueError(f"stage_range must increase strictly, got {list(self.stage_range)}")
        table = stage_table(self.stages, self.stage_range, self.gamma, self.shift, self.train_timesteps)
        if any(e >= s for s, e in zip(table.start, table.end)):
            raise ValueError(
                f"stage_range {list(self.stage_range)} leaves a stage without a path on the "
                f"{self.train_timesteps}-step grid (start noise {table.start}, end {table.end})"
            )
        for key in ("sample_ratios", "sample_steps", "video_sample_steps"):
            values = getattr(self, key)
            if len(values) != self.stages:
                raise ValueError(f"{key} needs one entry per stage ({self.stages}), got {list(values)}")
        if any(r < 0 for r in self.sample_ratios) or sum(self.sample_ratios) < 1:
            raise ValueError(f"sample_ratios must be non-negative with a positive sum, got {list(self.sample_ratios)}")
        if any(n < 1 for n in (*self.sample_steps, *self.video_sample_steps)):
            raise ValueError("sample_steps and video_sample_steps must be >= 1 per stage")
        if self.batch_size % sum(self.sample_ratios):
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of sum(sample_ratios) = "
                f"{sum(self.sample_ratios)} (each stage gets its share of every batch)"
            )
        if self.width % self.heads or self.width % 4:
            raise ValueError(f"width {self.width} must be divisible by heads ({self.heads}) and by 4")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")
        if self.warmup >= self.steps:
            raise ValueError(f"warmup ({self.warmup}) must be smaller than steps ({self.steps})")
        return self
