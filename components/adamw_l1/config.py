"""adamw_l1's Config. Defaults are the paper-scale measurement (adamw_l1.md §7, a ResNet image classifier:
the spec's plausible, unverified setting); presets shrink it to the spec's digits MLP (§6)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.core.optim import OptimizerName
from components.core.schedules import ScheduleConfig


class QuadraticConfig(BaseModel):
    """adamw_l1.md §6 check 4: the stochastic diagonal quadratic of the rate sanity check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(1000, ge=1)  # the spec's d
    curvature_min: float = Field(0.1, gt=0)  # curvatures log-uniform in [0.1, 10], as the spec
    curvature_max: float = Field(10.0, gt=0)  # condition number 100
    noise: float = Field(1.0, ge=0)  # sigma of the additive N(0, sigma^2 I) gradient noise, as the spec
    horizons: tuple[int, ...] = (250, 1000, 4000)  # K, each 4x the last: the check is on avg(4K)/avg(K)
    eta0: float = Field(1.0, gt=0)  # eta = eta0 / K^(3/4), eta0 = 1 as the spec
    x0: float = Field(0.0)  # x_1 = x0 * ones (the spec leaves it open); 0 reproduces its prototype's 0.57-0.58
    weight_decay: float = Field(0.0, ge=0)  # the theorem allows a small lambda; 0 keeps the optimum at x = 0

    @field_validator("horizons")
    @classmethod
    def _increasing(cls, horizons: tuple[int, ...]) -> tuple[int, ...]:
        if len(horizons) < 2 or any(k < 2 for k in horizons) or list(horizons) != sorted(set(horizons)):
            raise ValueError("needs at least two strictly increasing horizons K >= 2")
        return horizons

    @model_validator(mode="after")
    def _range(self) -> QuadraticConfig:
        if self.curvature_min > self.curvature_max:
            raise ValueError(f"curvature_min {self.curvature_min} exceeds curvature_max {self.curvature_max}")
        return self


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["resnet18", "digits_mlp", "quadratic"] = "resnet18"  # §7: a ResNet image classifier
    dataset: str = "images/cifar10"  # CIFAR-10 prepared with `paperzoo prepare` (source cifar-python)
    widths: tuple[int, ...] = (16, 32, 64, 128)  # ResNet-18 base widths: d = 0.7M .. 44.7M, 1.8 decades of d
    optimizer: OptimizerName = "adamw"  # the paper's optimizer; rho is a property of the gradient, so sweep it
    lr: float | None = Field(None, gt=0)  # None: the optimizer table's default (adamw 1e-3, the spec's value)
    weight_decay: float | None = Field(None, ge=0)  # None: the table's default (adamw 1e-2, the spec's value)
    schedule: ScheduleConfig = ScheduleConfig(name="cosine")  # the usual ResNet recipe; rho is measured under any
    budget: int = Field(39100, ge=1)  # optimizer steps per width: 100 CIFAR epochs at batch 128
    batch_size: int = Field(128, ge=1)  # global batch, split across ranks
    augment: Literal["none", "pad-crop-flip"] = "pad-crop-flip"  # the CIFAR ResNet recipe: pad 4, crop, flip
    normalise: bool = True  # per-channel mean/std of the train split (False: pixels mapped to [0, 1])
    grad_clip: float | None = Field(None, gt=0)  # l2 clipping AFTER the probe; the spec's runs do not clip
    log_every: int = Field(1, ge=1)  # probe every step: one float64 pass over the gradient (<1% of a step)
    true_grad_every: int = Field(1955, ge=0)  # large-batch gradient every 5 epochs (§3.4 step 3); 0: never
    true_grad_samples: int | None = Field(4096, ge=1)  # M = 32 batches of 128 (spec: 16-64); None: whole split
    eval_batch_size: int = Field(1024, ge=1)  # chunks of the full-split evaluation and the large-batch gradient
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run as diverged
    quadratic: QuadraticConfig = QuadraticConfig()

    @field_validator("widths")
    @classmethod
    def _widths(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if len(widths) < 2 or any(w < 1 for w in widths) or list(widths) != sorted(set(widths)):
            raise ValueError("needs at least two strictly increasing positive widths: the slope is fitted across d")
        return widths
