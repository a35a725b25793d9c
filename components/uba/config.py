"""UBA's Config. Defaults are the paper-scale vision setting (uba.md §7); presets shrink it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from components.core.optim import OptimizerName
from components.core.schedules import ScheduleConfig


class QuadraticConfig(BaseModel):
    """uba.md §6(a): f(x) = 0.5 sum_i lambda_i x_i^2, lambda uniform on [mu, L]; GD's worst-case residual."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mu: float = Field(1.0, gt=0)  # smallest curvature; eta_max = 1/mu is the matched peak step
    L: float = Field(100.0, gt=0)  # largest curvature; kappa = L/mu = 100 as in the spec's numerics
    eigenvalues: int = Field(20001, ge=2)  # the spec's grid; residuals are exact products, so density is cheap


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["resnet18", "digits_mlp", "digits_cnn", "quadratic"] = "resnet18"  # uba.md §7 vision setting
    dataset: str = "images/cifar10"  # CIFAR-10's python batches prepared with `paperzoo prepare` (cifar-python)
    optimizer: OptimizerName = "sgd"  # SGD momentum 0.9, the ResNet recipe the paper compares schedules on
    lr: float | None = Field(None, gt=0)  # eta_max; None: the optimizer table's default for that optimizer
    weight_decay: float | None = Field(None, ge=0)  # None: the optimizer table's default
    schedule: ScheduleConfig = ScheduleConfig(name="uba", phi=1.0)  # phi < 2: above cosine (late decay)
    budget: int = Field(39100, ge=1)  # optimizer steps: 100 CIFAR epochs at batch 128
    batch_size: int = Field(128, ge=1)  # global batch, split across ranks
    width: int = Field(64, ge=1)  # ResNet base width / MLP hidden width / CNN channels
    augment: Literal["none", "pad-crop-flip"] = "pad-crop-flip"  # the CIFAR ResNet recipe: pad 4, crop, flip
    normalise: bool = True  # per-channel mean/std of the train split (False: pixels mapped to [-1, 1])
    eval_every: int = Field(0, ge=0)  # log val metrics every N steps (0: only at the end of the budget)
    eval_batch_size: int = Field(1024, ge=1)  # full-split evaluation is chunked to bound memory
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run as diverged
    quadratic: QuadraticConfig = QuadraticConfig()
