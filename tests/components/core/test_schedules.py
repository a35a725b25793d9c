"""Schedules against their closed forms, the UBA identities and quadratic ground truth, and LambdaLR driving."""

from __future__ import annotations

import math
import pickle
import typing

import numpy as np
import pydantic
import pytest
import torch

from components.core.errors import ConfigError
from components.core.schedules import (
    ScheduleConfig,
    ScheduleName,
    lr_lambda,
    make_scheduler,
    multiplier,
    uba_shape,
)

# Closed forms of each decay shape at the fraction s = t / T, written independently of the module.
MIN_RATIO = 0.05
CLOSED_FORM_SHAPES = {
    "linear": lambda s: 1 - s,
    "cosine": lambda s: (1 + math.cos(math.pi * s)) / 2,
    "uba": lambda s: 2 * (1 + math.cos(math.pi * s)) / (2 * 0.5 + 1.5 * (1 + math.cos(math.pi * s))),  # phi 0.5
}


def schedule(name: str, **fields) -> ScheduleConfig:
    return ScheduleConfig(name=name, min_ratio=MIN_RATIO, phi=0.5, **fields)


# --- config ----------------------------------------------------------------------------------------


def test_schedule_names_cover_the_literal():
    assert set(typing.get_args(ScheduleName)) == {"constant", "step", "linear", "cosine", "wsd", "uba"}


@pytest.mark.parametrize("phi", [0.0, -1.0])
def test_non_positive_phi_is_rejected(phi):
    with pytest.raises(pydantic.ValidationError, match="phi"):
        ScheduleConfig(name="uba", phi=phi)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "cosinus"},
        {"min_ratio": 1.5},
        {"warmup": -1},
        {"gamma": 0.0},
        {"milestones": (0.5, 1.5)},
        {"decay_fraction": 0.0},
        {"phii": 1.0},
    ],
)
def test_bad_fields_are_rejected(fields):
    with pytest.raises(pydantic.ValidationError):
        ScheduleConfig(**fields)


@pytest.mark.parametrize("warmup, budget", [(10, 10), (11, 10), (0, 0)])
def test_warmup_not_below_budget_is_a_config_error(warmup, budget):
    cfg = ScheduleConfig(warmup=warmup)
    with pytest.raises(ConfigError, match="budget"):
        lr_lambda(cfg, budget)
    with pytest.raises(ConfigError):
        multiplier(cfg, 0, budget)


def test_warmup_error_names_the_key():
    with pytest.raises(ConfigError, match=r"schedule\.warmup"):
        lr_lambda(ScheduleConfig(warmup=5), 5)


# --- closed forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLOSED_FORM_SHAPES))
@pytest.mark.parametrize("warmup", [0, 20])
def test_decaying_schedules_match_closed_forms(name, warmup):
    budget = warmup + 100
    cfg = schedule(name, warmup=warmup)
    shape = CLOSED_FORM_SHAPES[name]
    for t in (0, 25, 50, 75, 100, 150):
        expected = MIN_RATIO + (1 - MIN_RATIO) * shape(min(t, 100) / 100)
        assert multiplier(cfg, warmup + t, budget) == pytest.approx(expected, abs=1e-12), t
    assert multiplier(cfg, warmup + 100, budget) == pytest.approx(MIN_RATIO, abs=1e-12)


@pytest.mark.parametrize("name", ["constant", "step", "linear", "cosine", "wsd", "uba"])
def test_warmup_is_linear_from_init_ratio_to_one(name):
    cfg = ScheduleConfig(name=name, warmup=8, init_ratio=0.2, min_ratio=0.1)
    assert multiplier(cfg, 0, 40) == 0.2
    assert multiplier(cfg, 4, 40) == pytest.approx(0.6, abs=1e-15)
    assert multiplier(cfg, 7, 40) == pytest.approx(0.2 + 0.8 * 7 / 8, abs=1e-15)
    assert multiplier(cfg, 8, 40) == pytest.approx(1.0, abs=1e-15)


def test_constant_ignores_min_ratio():
    cfg = schedule("constant", warmup=3)
    assert [multiplier(cfg, step, 13) for step in (3, 8, 13, 50)] == [1.0, 1.0, 1.0, 1.0]


def test_step_schedule_multiplies_by_gamma_at_each_milestone_above_the_floor():
    cfg = schedule("step", warmup=10, gamma=0.1, milestones=(0.5, 0.75))
    budget = 110  # decay phase T = 100: milestones at t = 50 and t = 75
    floor = MIN_RATIO
    assert multiplier(cfg, 10, budget) == 1.0
    assert multiplier(cfg, 10 + 49, budget) == 1.0
    assert multiplier(cfg, 10 + 50, budget) == pytest.approx(floor + (1 - floor) * 0.1, abs=1e-15)
    assert multiplier(cfg, 10 + 74, budget) == pytest.approx(floor + (1 - floor) * 0.1, abs=1e-15)
    assert multiplier(cfg, 10 + 75, budget) == pytest.approx(floor + (1 - floor) * 0.01, abs=1e-15)
    assert multiplier(cfg, 10 + 100, budget) == pytest.approx(floor + (1 - floor) * 0.01, abs=1e-15)


def test_step_schedule_without_floor_is_the_classic_recipe():
    cfg = ScheduleConfig(name="step")
    assert [multiplier(cfg, step, 8) for step in (0, 3, 4, 5, 6, 8)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_step_milestones_round_to_the_nearest_step():
    # 0.3 * 10 is 3.0000000000000004 in floats; the milestone must still fire at step 3.
    cfg = ScheduleConfig(name="step", milestones=(0.3,), gamma=0.5)
    assert multiplier(cfg, 2, 10) == 1.0
    assert multiplier(cfg, 3, 10) == 0.5


def test_wsd_is_stable_then_cools_down_linearly():
    cfg = schedule("wsd", warmup=10, decay_fraction=0.2)
    budget = 110  # T = 100: stable on t in [0, 80], cool-down over the last 20 steps
    assert multiplier(cfg, 10, budget) == 1.0
    assert multiplier(cfg, 10 + 50, budget) == 1.0
    assert multiplier(cfg, 10 + 80, budget) == 1.0
    assert multiplier(cfg, 10 + 90, budget) == pytest.approx(MIN_RATIO + (1 - MIN_RATIO) * 0.5, abs=1e-15)
    assert multiplier(cfg, 10 + 95, budget) == pytest.approx(MIN_RATIO + (1 - MIN_RATIO) * 0.25, abs=1e-15)
    assert multiplier(cfg, 10 + 100, budget) == pytest.approx(MIN_RATIO, abs=1e-15)


@pytest.mark.parametrize("name", ["step", "linear", "cosine", "wsd", "uba"])
def test_value_is_held_after_the_budget_and_never_increases(name):
    cfg = schedule(name, warmup=5)
    values = [multiplier(cfg, step, 60) for step in range(5, 90)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))
    assert values[-1] == values[55] and min(values) >= MIN_RATIO - 1e-15


# --- UBA identities (uba.md 6.1) ---------------------------------------------------------------------

T = 100
STEPS = range(T + 1)


@pytest.mark.parametrize("phi", [0.1, 0.5, 1, 2, 5, 20])
def test_uba_endpoints_and_monotone(phi):
    eta_max, eta_min = 0.4, 0.004
    cfg = ScheduleConfig(name="uba", phi=phi, min_ratio=eta_min / eta_max)
    lrs = [eta_max * multiplier(cfg, t, T) for t in STEPS]
    assert lrs[0] == pytest.approx(eta_max, abs=1e-12)
    assert lrs[T] == pytest.approx(eta_min, abs=1e-12)
    assert all(later <= earlier for earlier, later in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("phi", [0.1, 0.5, 1, 2, 5, 20])
def test_uba_midpoint_is_two_over_two_plus_phi(phi):
    assert uba_shape(T / 2, T, phi) == pytest.approx(2 / (2 + phi), abs=1e-12)
    cfg = ScheduleConfig(name="uba", phi=phi)
    assert multiplier(cfg, T // 2, T) == pytest.approx(2 / (2 + phi), abs=1e-12)


def test_uba_with_phi_two_is_cosine():
    uba = ScheduleConfig(name="uba", phi=2.0, min_ratio=0.01)
    cosine = ScheduleConfig(name="cosine", min_ratio=0.01)
    for t in STEPS:
        assert multiplier(uba, t, T) == pytest.approx(multiplier(cosine, t, T), abs=1e-12)
        assert uba_shape(t, T, 2.0) == pytest.approx((1 + math.cos(math.pi * t / T)) / 2, abs=1e-12)


@pytest.mark.parametrize("eta_max, eta_min", [(1.0, 0.01), (0.1, 0.001), (3e-4, 3e-5)])
def test_uba_harmonic_member(eta_max, eta_min):
    # phi = 2 eta_max / eta_min makes the inverse LR a cosine (uba.md 3.2).
    cfg = ScheduleConfig(name="uba", phi=2 * eta_max / eta_min, min_ratio=eta_min / eta_max)
    for t in STEPS:
        eta = eta_max * multiplier(cfg, t, T)
        cos = math.cos(math.pi * t / T)
        inverse = ((1 / eta_min + 1 / eta_max) - (1 / eta_min - 1 / eta_max) * cos) / 2
        assert eta == pytest.approx(1 / inverse, rel=1e-10, abs=1e-10)


# --- quadratic ground truth (uba.md 6.2) --------------------------------------------------------------

EIGENVALUES = np.linspace(1.0, 100.0, 20001)


def worst_residual(lrs) -> float:
    """max over eigenvalues of |prod_t (1 - eta_t lambda)|: GD's error factor on the diagonal quadratic."""
    residual = np.ones_like(EIGENVALUES)
    for eta in lrs:
        residual *= 1.0 - eta * EIGENVALUES
    return float(np.max(np.abs(residual)))


def uba_lrs(convention: str, phi: float, eta_max: float = 1.0, eta_min: float = 0.01) -> list[float]:
    if convention == "t=j-1/2":
        return [eta_min + (eta_max - eta_min) * uba_shape(j - 0.5, T, phi) for j in range(1, T + 1)]
    cfg = ScheduleConfig(name="uba", phi=phi, min_ratio=eta_min / eta_max)
    steps = range(T) if convention == "t=0..T-1" else range(1, T + 1)
    return [eta_max * multiplier(cfg, t, T) for t in steps]


CONVENTIONS = ["t=0..T-1", "t=1..T", "t=j-1/2"]


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_uba_matched_to_the_condition_number_solves_the_quadratic(convention):
    # phi = 2 kappa = 200 with eta_max = 1/mu and eta_min = 1/L: the Chebyshev steps (uba.md 3.3).
    assert worst_residual(uba_lrs(convention, phi=200.0)) < 1e-4


def test_uba_half_integer_convention_reaches_the_chebyshev_bound():
    kappa = 100.0
    bound = 2 * ((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)) ** T
    assert worst_residual(uba_lrs("t=j-1/2", phi=2 * kappa)) == pytest.approx(bound, rel=1e-3)


def test_cosine_from_one_over_L_stays_far_from_the_solution():
    cfg = ScheduleConfig(name="cosine", min_ratio=0.0)
    assert worst_residual([0.01 * multiplier(cfg, t, T) for t in range(T)]) > 0.3


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_uba_with_half_the_matched_phi_blows_up(convention):
    assert worst_residual(uba_lrs(convention, phi=100.0)) > 1e3


# --- LambdaLR --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["constant", "step", "linear", "cosine", "wsd", "uba"])
def test_lambda_lr_applies_the_multiplier_per_optimizer_step(name):
    cfg = ScheduleConfig(name=name, warmup=4, init_ratio=0.1, min_ratio=0.02, phi=3.0)
    budget = 30
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 0.3}, {"params": [params[1]]}], lr=0.05)
    scheduler = make_scheduler(optimizer, cfg, budget)
    for k in range(budget + 3):
        assert [group["lr"] for group in optimizer.param_groups] == [
            0.3 * multiplier(cfg, k, budget),
            0.05 * multiplier(cfg, k, budget),
        ]
        optimizer.step()
        scheduler.step()


def test_scheduler_is_picklable_and_its_state_holds_no_config():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make_scheduler(optimizer, ScheduleConfig(name="uba", phi=0.7), 10)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored.lr_lambdas[0](3) == scheduler.lr_lambdas[0](3)
    assert scheduler.state_dict()["lr_lambdas"] == [{}]
    assert scheduler.state_dict()["last_epoch"] == 3
