"""Early stopping that can act: every params.yaml sweep ranked by a training curve makes its trials report the
ranked metric mid-run, at the points the sweep's `evaluations` key sets through RunContext.evaluations, and those
reports only read the model, so a trial's results equal a run without them. (ASHA acting on them under Ray:
tests/cluster/test_ray.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.backends.ray_backend import ASHA_GRACE_PERIOD, say_if_asha_could_not_act
from cluster.runner import execute, plan_run
from components.core.training import evaluation_due
from pipelines.sweep import expand_sweep

# Counts only: the test presets run 1-2 epochs, where a metric validated once an epoch has no mid-run point.
MORE_EPOCHS = {"transdf": {"epochs": 4}}


def curve_sweeps(params) -> list[str]:
    return [name for name, sweep in params["sweeps"].items() if sweep.get("scheduler", "asha") == "asha"]


def test_the_training_curve_sweeps_are_the_ones_asha_can_rank(params):
    assert sorted(curve_sweeps(params)) == [
        "dnt_optimizers",
        "grsnn_delays",
        "lion_weight_decay",
        "transdf_rank",
        "uba_phi",
    ]


def test_evaluation_points_are_evenly_spaced_and_never_the_last_step():
    assert [done for done in range(1, 31) if evaluation_due(done, 30, 0, 8)] == [3, 7, 11, 15, 18, 22, 26]  # + end
    assert [done for done in range(1, 31) if evaluation_due(done, 30, 10, 0)] == [10, 20]  # the config's own
    assert not any(evaluation_due(done, 30, 0, 0) for done in range(1, 31))  # neither asks: the end only
    assert [done for done in range(1, 4) if evaluation_due(done, 3, 0, 8)] == [1, 2]  # more points than steps
    for budget in (1, 2, 7, 30, 300, 39100):
        for evaluations in (1, 2, 3, 8, 10):
            points = {k * budget // evaluations for k in range(1, evaluations)} - {0}
            assert {done for done in range(1, budget + 1) if evaluation_due(done, budget, 0, evaluations)} == points


def reports(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(record["step"], record[metric]) for record in records if metric in record]


@pytest.mark.parametrize("name", ["uba_phi", "dnt_optimizers", "lion_weight_decay", "transdf_rank", "grsnn_delays"])
def test_a_curve_sweep_reports_its_metric_mid_run_without_changing_the_result(name, params, data_root, tmp_path):
    sweep = params["sweeps"][name]
    trial = expand_sweep(sweep, None, None, name)[0]
    overrides = {**trial.overrides, **MORE_EPOCHS.get(sweep["component"], {})}
    request = plan_run(sweep["component"], params, preset="test", overrides=overrides, seed=0, data_dir=data_root)
    asked = execute(
        request, tmp_path / "asked", data_dir=data_root, show_progress=False, evaluations=sweep.get("evaluations", 0)
    )
    plain = execute(request, tmp_path / "plain", data_dir=data_root, show_progress=False)

    metric = sweep["metric"]
    mid_run = reports(asked.run_dir, metric)[:-1]  # the last report is the final metrics
    assert len(mid_run) >= ASHA_GRACE_PERIOD, f"{name}: {metric} reported {len(mid_run)} times before the end"
    assert len({step for step, _ in mid_run}) == len(mid_run)  # at distinct steps: ASHA's rungs are report counts
    assert asked.metrics == plain.metrics  # reporting reads the model only


def test_ray_says_when_asha_could_stop_nothing(capsys):
    once = [SimpleNamespace(metrics={"training_iteration": 1}), SimpleNamespace(metrics={"training_iteration": 2})]
    say_if_asha_could_not_act(once, "val/loss")
    assert "ASHA could stop nothing" in capsys.readouterr().out
    say_if_asha_could_not_act([*once, SimpleNamespace(metrics={"training_iteration": 8})], "val/loss")
    assert capsys.readouterr().out == ""
