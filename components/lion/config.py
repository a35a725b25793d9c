"""LION's Config. Defaults are the full-scale vision setting (lion.md §7); presets shrink it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.schedules import ScheduleConfig

OptimizerChoice = Literal["lion", "sgd_plain", "sgd", "msgdw", "adamw"]
NoDecayChoice = Literal["table", "none", "ndim<2", "ndim<2+embeddings"]  # "table" or core.optim.NO_DECAY_RULES


class QuadraticConfig(BaseModel):
    """lion.md §6(a): f(x) = 0.5 ||x - a||^2 with a ~ N(0, a_std^2 I); the box solution is clip(a, +-1/lambda)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(1000, ge=1)  # the spec's d = 1000
    a_std: float = Field(2.0, gt=0)  # a ~ N(0, 4 I): about 32% of the coordinates lie outside the radius-2 box
    noise: float = Field(0.0, ge=0)  # sigma of the Gaussian gradient noise; 0 is the deterministic check 3
    init_std: float = Field(0.0, ge=0)  # x_0 ~ N(0, init_std^2 I); 0 starts at the origin, inside the box
    problem_seed: int = Field(0, ge=0)  # a is fixed across run seeds; the run seed draws x_0 and the noise


class TheoryConfig(BaseModel):
    """Theorems 2/5 of 2411.07724: beta1 = 1 - c1/sqrt(K), beta2 = 1 - c2/sqrt(K), eta = c3 / (sqrt(d) K^(3/4))."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    c1: float = Field(1.0, gt=0)  # the spec's check 4; the paper's constants were not read
    c2: float = Field(1.0, gt=0)  # as c1
    c3: float = Field(40.0, gt=0)  # the spec's check 4: enough travel to reach the box faces at K = 1000


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["resnet18", "digits_mlp", "box_quadratic"] = "resnet18"  # lion.md §7: ResNet-18 on CIFAR-10
    dataset: str = "images/cifar10"  # CIFAR-10 prepared with `paperzoo prepare` (source cifar-python)
    optimizer: OptimizerChoice = "lion"  # the paper's method; sgd_plain is the spec's SGD baseline (no momentum)
    lr: float | None = Field(None, gt=0)  # None: the optimizer table's default (0.02 on the quadratic, check 3)
    lr_scale: float = Field(1.0, gt=0)  # multiplies lr, so one sweep axis spans every optimizer's own LR scale
    weight_decay: float | None = Field(None, ge=0)  # lambda; None: the table's default (0.5 on the quadratic)
    no_decay: NoDecayChoice = "table"  # "table": the optimizer's own rule; "none" puts every tensor in the box
    betas: tuple[float, float] = (0.9, 0.99)  # Chen et al. 2023 defaults (lion only)
    schedule: ScheduleConfig = ScheduleConfig(name="cosine")  # the usual practical LION schedule for ResNets
    theory: TheoryConfig | None = None  # set: the theorem's K-dependent eta and betas replace lr, betas, schedule
    budget: int = Field(39100, ge=1)  # optimizer steps K: 100 CIFAR epochs at batch 128
    batch_size: int = Field(128, ge=1)  # global batch, split across ranks
    width: int = Field(64, ge=1)  # ResNet base width / MLP hidden width
    augment: Literal["none", "pad-crop-flip"] = "pad-crop-flip"  # the CIFAR ResNet recipe: pad 4, crop, flip
    normalise: bool = True  # per-channel mean/std of the train split (False: pixels mapped to [-1, 1])
    log_every: int = Field(50, ge=1)  # probe (grad l1/l2) and box statistics every N steps
    eval_every: int = Field(0, ge=0)  # val metrics every N steps (0: only at the end)
    eval_batch_size: int = Field(1024, ge=1)  # full-split passes are chunked to bound memory
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run as diverged
    plots: bool = True  # curves.png; grid tests turn it off to save matplotlib time
    quadratic: QuadraticConfig = QuadraticConfig()

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        if any(not 0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas = {self.betas}: each beta must lie in [0, 1)")
        if self.theory is not None:
            if self.optimizer != "lion":
                raise ValueError(f"theory: the theorem schedule is LION's; optimizer is '{self.optimizer}'")
            if self.lr is not None:
                raise ValueError("lr: the theory schedule sets eta = c3/(sqrt(d) K^(3/4)); unset lr, tune theory.c3")
            if self.theory.c1 >= self.budget**0.5 or self.theory.c2 >= self.budget**0.5:
                raise ValueError(f"theory: c1, c2 must be below sqrt(budget) = {self.budget**0.5:.4g} (beta >= 0)")
        if self.task == "box_quadratic" and self.optimizer not in ("lion", "sgd_plain"):
            raise ValueError(f"optimizer: the box quadratic runs lion or sgd_plain, not '{self.optimizer}'")
        return self
