"""uba.md §6 checks 1-3 (check 4 is report-only: see components/uba/README.md and benchmarks/uba_budgets.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cluster.runner import execute, plan_run
from components.core.schedules import ScheduleConfig, multiplier

T = 100


def shape(phi: float, t: int, min_ratio: float = 0.0) -> float:
    return multiplier(ScheduleConfig(name="uba", phi=phi, min_ratio=min_ratio), t, T)


# Check 1: formula identities, exact.
@pytest.mark.parametrize("phi", [0.1, 0.5, 1, 2, 5, 20])
def test_endpoints_and_monotone(phi):
    values = [shape(phi, t, 0.01) for t in range(T + 1)]
    assert abs(values[0] - 1.0) < 1e-12 and abs(values[-1] - 0.01) < 1e-12
    assert all(b <= a + 1e-15 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("phi", [0.5, 1, 2, 5, 20])
def test_midpoint_is_two_over_two_plus_phi(phi):
    # a stub returning cosine fails every phi != 2 here; a sign error in (2 - phi) fails too
    assert abs(shape(phi, T // 2) - 2 / (2 + phi)) < 1e-12


def test_phi_two_is_cosine():
    cosine = ScheduleConfig(name="cosine")
    assert max(abs(shape(2, t) - multiplier(cosine, t, T)) for t in range(T + 1)) < 1e-12


def test_harmonic_member():
    eta_max, eta_min = 1.0, 0.01
    for t in range(T + 1):
        eta = eta_max * shape(2 * eta_max / eta_min, t, eta_min / eta_max)
        inverse = ((1 / eta_min + 1 / eta_max) - (1 / eta_min - 1 / eta_max) * math.cos(math.pi * t / T)) / 2
        assert abs(eta - 1 / inverse) < 1e-10


# Check 2: the quadratic ground truth, through the component's quadratic mode.
def quadratic_residual(params, tmp_path, **overrides) -> float:
    sets = {"task": "quadratic", "budget": T, "schedule.warmup": 0, **overrides}
    request = plan_run("uba", params, preset="test", overrides=sets, data_dir=tmp_path)
    return execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False).metrics["quad/worst_residual"]


def test_quadratic_matched_phi_contracts_and_cosine_does_not(params, tmp_path):
    matched = quadratic_residual(
        params, tmp_path, **{"lr": 1.0, "schedule.name": "uba", "schedule.phi": 200, "schedule.min_ratio": 0.01}
    )
    cosine = quadratic_residual(params, tmp_path, **{"lr": 0.01, "schedule.name": "cosine", "schedule.min_ratio": 0.0})
    underestimated = quadratic_residual(
        params, tmp_path, **{"lr": 1.0, "schedule.name": "uba", "schedule.phi": 100, "schedule.min_ratio": 0.01}
    )
    assert matched < 1e-4  # measured 7.7e-6 in the spec for t = 0..T-1
    assert cosine > 0.3  # spec: 0.60
    assert underestimated > 1e3  # the large early steps are really there


# Check 3: plumbing on digits: UBA(phi=2) and a closed-form cosine give the same per-step losses.
def step_losses(run_dir) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


def digits_losses(params, data_root, tmp_path, name: str, phi: float) -> np.ndarray:
    sets = {
        "schedule.name": name,
        "schedule.phi": phi,
        "schedule.warmup": 5,
        "schedule.init_ratio": 0.1,
        "schedule.min_ratio": 0.01,
        "budget": 40,
    }
    request = plan_run("uba", params, preset="test", overrides=sets, data_dir=data_root)
    result = execute(request, run_root=tmp_path / name / str(phi), data_dir=data_root, show_progress=False)
    return np.array(step_losses(result.run_dir))


def test_uba_phi_two_matches_cosine_per_step(params, data_root, tmp_path):
    uba = digits_losses(params, data_root, tmp_path, "uba", 2.0)
    cosine = digits_losses(params, data_root, tmp_path, "cosine", 2.0)
    assert len(uba) == 40
    assert np.max(np.abs(uba - cosine) / np.abs(cosine)) < 1e-6
    other = digits_losses(params, data_root, tmp_path, "uba", 0.5)  # the comparison can tell schedules apart
    assert np.max(np.abs(other - cosine) / np.abs(cosine)) > 1e-6
