"""What the ray backend pays once, not per trial: one Ray start for a whole sweep, and one worker process that
imports Tune and torch once and runs trial after trial (reuse_actors). Speed itself is measured by
benchmarks/ray_sweep.py, never asserted here."""

from __future__ import annotations

import json
import os

import pytest
import ray

import cluster.backends.ray_backend as ray_backend
from pipelines.sweep import run_sweep

pytestmark = pytest.mark.integration


def test_a_sweep_starts_ray_once_and_runs_its_trials_in_one_reused_worker(params, data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the backend would connect to it instead of its own Ray
    assert not ray.is_initialized(), "this test counts the backend's own Ray start"
    starts: list[dict] = []
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: starts.append(kwargs) or real_init(*args, **kwargs))
    monkeypatch.setattr(ray_backend, "local_cpus", lambda: 1)  # a one-CPU Ray: one trial at a time, one worker
    params["sweeps"]["uba_phi"]["scheduler"] = "fifo"  # every trial to its end (ASHA: tests/cluster/test_ray.py)
    outcome = run_sweep(
        "uba_phi",
        params,
        backend="ray",
        grid={"schedule.phi": [0.5, 2], "optimizer": ["sgd"]},
        seeds=[0, 1],
        preset="test",
        run_root=tmp_path / "runs",
        data_dir=data_root,
    )
    assert [r.status for r in outcome.results] == ["completed"] * 4
    assert len(starts) == 1 and not ray.is_initialized()  # one start for the sweep, stopped when it ends
    runs = [json.loads(path.read_text()) for path in sorted(outcome.directory.glob("trials/*/run.json"))]
    assert len(runs) == 4 and len({run["pid"] for run in runs}) == 1  # every trial in the same worker process
    (tune_dir,) = [p for p in outcome.directory.iterdir() if p.name.startswith("tune")]
    trial_dirs = sorted(p for p in tune_dir.iterdir() if p.is_dir())
    assert [p.name for p in trial_dirs] == [f"trial-{index:03d}" for index in range(4)]  # Tune's own folders stay
    assert not [p.name for d in trial_dirs for p in d.iterdir() if p.name in ("result.json", "progress.csv")]


def test_quiet_tune_turns_tune_loggers_off_only_for_the_fit(monkeypatch):
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    with ray_backend.quiet_tune():  # Tune reads it when the fit builds its callbacks
        assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ
