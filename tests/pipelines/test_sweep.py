"""Sweeps: expansion and narrowing, the summary table over seeds, and failed trials that do not stop the rest."""

from __future__ import annotations

import json

import pytest

from components.core.errors import ConfigError
from pipelines.sweep import expand_sweep, parse_grid, run_sweep


def test_uba_phi_expands_to_phi_times_optimizer_times_seeds(params):
    trials = expand_sweep(params["sweeps"]["uba_phi"])
    assert len(trials) == 4 * 4 * 2
    assert {t.overrides["optimizer"] for t in trials} == {"sgd", "msgdw", "adamw", "lion"}
    assert {t.overrides["schedule.phi"] for t in trials} == {0.5, 1, 2, 5}


def test_narrowing_with_grid_and_seeds(params):
    grid = parse_grid(["schedule.phi=0.5,2", "optimizer=lion"])
    assert grid == {"schedule.phi": [0.5, 2], "optimizer": ["lion"]}
    trials = expand_sweep(params["sweeps"]["uba_phi"], grid, [0])
    assert [(t.overrides["schedule.phi"], t.overrides["optimizer"], t.seed) for t in trials] == [
        (0.5, "lion", 0),
        (2, "lion", 0),
    ]
    with pytest.raises(ConfigError, match="has no axis 'schedule.ph' .did you mean 'schedule.phi'"):
        expand_sweep(params["sweeps"]["uba_phi"], {"schedule.ph": [1]}, name="uba_phi")


def test_invalid_trial_is_rejected_before_any_trial_runs(params, data_root, tmp_path):
    with pytest.raises(ConfigError, match="schedule.phi = -1"):
        run_sweep(
            "uba_phi",
            params,
            grid={"schedule.phi": [0.5, -1]},
            seeds=[0],
            preset="test",
            run_root=tmp_path,
            data_dir=data_root,
        )
    assert not (tmp_path / "sweeps").exists()


def test_sweep_table_and_a_diverging_trial(params, data_root, tmp_path):
    params["sweeps"]["lr_probe"] = {
        "component": "uba",
        "grid": {"lr": [0.05, 1e6]},
        "seeds": [0, 1],
        "metric": "val/loss",
        "mode": "min",
    }
    outcome = run_sweep("lr_probe", params, preset="test", run_root=tmp_path, data_dir=data_root)
    statuses = {(r.trial.overrides["lr"], r.trial.seed): r.status for r in outcome.results}
    assert statuses == {(0.05, 0): "completed", (0.05, 1): "completed", (1e6, 0): "failed", (1e6, 1): "failed"}
    assert "diverged at step" in outcome.results[-1].error
    best = outcome.rows[0]
    assert best["lr"] == 0.05 and best["seeds"] == 2 and best["failed"] == 0
    losses = [r.metrics["val/loss"] for r in outcome.results if r.status == "completed"]
    assert best["val/loss mean"] == pytest.approx(sum(losses) / 2)
    assert best["val/loss std"] > 0
    assert outcome.rows[1]["failed"] == 2
    for name in ("summary.md", "summary.csv", "trials.jsonl", "sweep.json"):
        assert (outcome.directory / name).is_file()
    assert len((outcome.directory / "trials.jsonl").read_text().splitlines()) == 4
    ledger = json.loads((outcome.directory / "sweep.json").read_text())
    assert ledger["metric"] == "val/loss" and ledger["status"] == outcome.status == "failed"
    assert ledger["counts"] == {"completed": 2, "failed": 2} and len(outcome.failed) == 2
    assert "2 of 4 trials did not complete" in (outcome.directory / "summary.md").read_text()


@pytest.mark.integration
def test_local_and_torchrun_backends_give_the_same_trials(params, data_root, tmp_path):
    grid = {"schedule.phi": [0.5, 2], "optimizer": ["sgd"]}
    runs = {
        backend: run_sweep(
            "uba_phi",
            params,
            backend=backend,
            grid=grid,
            seeds=[0],
            preset="test",
            run_root=tmp_path / backend,
            data_dir=data_root,
        )
        for backend in ("local", "torchrun")
    }
    for local, torchrun in zip(runs["local"].results, runs["torchrun"].results):
        assert local.trial == torchrun.trial and local.status == torchrun.status == "completed"
        assert local.metrics == torchrun.metrics  # bit-exact: same specs, pinned threads
