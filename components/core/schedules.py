"""Learning-rate schedules as pure functions of the optimizer step.

A schedule returns a multiplier of the optimizer's base learning rate (eta_max), so one schedule drives
every optimizer and every param group at its own scale. Being stateless in the step, it checkpoints and
resumes with `LambdaLR` for free.

Every schedule shares the same frame: a linear warm-up over steps [0, W) from init_ratio to 1, then a
decay phase t = step - W of length T = budget - W whose value is
    min_ratio + (1 - min_ratio) * shape(t / T),
held at its final value once t >= T. "constant" is the one exception: it stays at 1 and ignores min_ratio.
All arithmetic is in Python floats (float64).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.core.errors import ConfigError

ScheduleName = Literal["constant", "step", "linear", "cosine", "wsd", "uba"]


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ScheduleName = "cosine"  # the common baseline; UBA with phi = 2 is the same curve
    warmup: int = Field(0, ge=0)  # linear warm-up steps; 0 because the UBA paper's warm-up is unverified
    init_ratio: float = Field(0.0, ge=0, le=1)  # warm-up starts from zero LR, the usual recipe
    min_ratio: float = Field(0.0, ge=0, le=1)  # eta_min / eta_max; decay to zero as cosine recipes do
    phi: float = Field(1.0, gt=0)  # UBA shape: 1 sits above cosine (late decay); 2 is cosine
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: x gamma at 50% and 75%, the ResNet recipe
    gamma: float = Field(0.1, gt=0, le=1)  # step schedule: the classic factor of ten per milestone
    decay_fraction: float = Field(0.2, gt=0, le=1)  # wsd: 10-20% linear cool-down is the usual WSD tail

    @field_validator("milestones")
    @classmethod
    def _milestones_are_fractions(cls, milestones: tuple[float, ...]) -> tuple[float, ...]:
        for fraction in milestones:
            if not 0 < fraction <= 1:
                raise ValueError(f"milestones are fractions of the decay phase in (0, 1], got {fraction}")
        return milestones


def uba_shape(t: float, T: float, phi: float) -> float:
    """The normalised UBA shape g_phi(t) = (eta_t - eta_min) / (eta_max - eta_min) for t in [0, T].

    u = 1 + cos(pi t / T) runs from 2 to 0 and g = 2u / (2 phi + (2 - phi) u), so g(0) = 1, g(T) = 0,
    g(T/2) = 2 / (2 + phi), and phi = 2 is cosine. t may be fractional (the t = j - 1/2 convention).
    """
    if T <= 0:
        raise ValueError(f"the decay length T must be positive, got {T}")
    if phi <= 0:
        raise ValueError(f"phi must be positive, got {phi}")
    u = 1.0 + math.cos(math.pi * t / T)
    return 2.0 * u / (2.0 * phi + (2.0 - phi) * u)


def _step_shape(cfg: ScheduleConfig, t: float, T: int) -> float:
    # A milestone's step is rounded to an integer so 0.3 * 10 lands on step 3, not on 3.0000000000000004.
    passed = sum(1 for fraction in cfg.milestones if t >= round(fraction * T))
    return cfg.gamma**passed


def _wsd_shape(cfg: ScheduleConfig, t: float, T: int) -> float:
    cooldown = cfg.decay_fraction * T
    return min(1.0, (T - t) / cooldown)


def _decay_shape(cfg: ScheduleConfig, t: float, T: int) -> float:
    """shape(t/T) in [0, 1], from 1 at t = 0; t is already clamped to [0, T]."""
    if cfg.name == "step":
        return _step_shape(cfg, t, T)
    if cfg.name == "linear":
        return 1.0 - t / T
    if cfg.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / T))
    if cfg.name == "wsd":
        return _wsd_shape(cfg, t, T)
    if cfg.name == "uba":
        return uba_shape(t, T, cfg.phi)
    raise ConfigError(f"unknown schedule '{cfg.name}'")


def check_budget(cfg: ScheduleConfig, budget: int, budget_key: str = "budget") -> None:
    """The one constraint between a schedule and its run: a warm-up shorter than the budget, so the decay phase is
    not empty. resolve_config (components/core/config.py) calls it for every Config with a `schedule` and a
    `budget`, so a bad pair is rejected before a run directory exists; `budget_key` is the key the message names."""
    if budget < 1:
        raise ConfigError(f"{budget_key} must be at least 1 step for the schedule, got {budget}")
    if cfg.warmup >= budget:
        raise ConfigError(
            f"schedule.warmup ({cfg.warmup}) must be smaller than {budget_key} ({budget} steps): "
            "the decay phase would be empty"
        )


_check_budget = check_budget


def multiplier(cfg: ScheduleConfig, step: int, budget: int) -> float:
    """The factor on eta_max at optimizer step `step` (0-based) of a run of `budget` steps."""
    _check_budget(cfg, budget)
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    if step < cfg.warmup:
        return cfg.init_ratio + (1.0 - cfg.init_ratio) * step / cfg.warmup
    if cfg.name == "constant":
        return 1.0
    decay_length = budget - cfg.warmup
    t = min(step - cfg.warmup, decay_length)
    return cfg.min_ratio + (1.0 - cfg.min_ratio) * _decay_shape(cfg, t, decay_length)


def lr_lambda(cfg: ScheduleConfig, budget: int) -> Callable[[int], float]:
    """`step -> multiplier`, checked against the budget now rather than at the first step.

    A functools.partial (not a closure) so the scheduler stays picklable and LambdaLR's state_dict
    stores nothing of it: on resume the lambda is rebuilt from the config.
    """
    _check_budget(cfg, budget)
    return functools.partial(multiplier, cfg, budget=budget)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, budget: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step: after k scheduler.step() calls, lr = base_lr * multiplier(k)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, budget))
