"""A sweep whose driver dies mid-sweep, re-run: finished trials are not run again, the interrupted one resumes
from its checkpoint, the summary equals an uninterrupted sweep's. On the local backend (the driver is the
trainer), on the local SLURM (the jobs outlive a detached, then killed, driver; `cancel` scancels) and on Ray
(trials a local sweep completed are not run again on Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from pipelines.ledger import read_ledger, trial_state
from pipelines.sweep import run_sweep
from tests.cluster.test_slurm import slurm  # noqa: F401 - the local SLURM, up for this module

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
START_BUDGET_S = float(os.environ.get("PAPERZOO_TEST_START_BUDGET_S") or 240)
SWEEP = "resume_probe"


def probe_params(params: dict, budget: int) -> dict:
    """uba at its test preset with a longer budget (seconds a trial), three grid points, one seed."""
    params["uba"] = {**(params.get("uba") or {}), "budget": budget}
    params["sweeps"][SWEEP] = {
        "component": "uba",
        "grid": {"schedule.phi": [0.5, 2, 5]},
        "seeds": [0],
        "metric": "val/loss",
        "mode": "min",
    }
    return params


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def the_sweep(root: Path) -> Path:
    folders = sorted((root / "sweeps" / SWEEP).iterdir())
    return folders[-1]


def checkpointed(run_dir: str) -> bool:
    folder = Path(run_dir) / "checkpoints"
    return folder.is_dir() and any(folder.iterdir())


def cli_args(params_file: Path, data_root: Path, root: Path, *args: str) -> list[str]:
    return ["--params", str(params_file), "--data-dir", str(data_root), "--run-root", str(root), *args]


def driver(params_file: Path, data_root: Path, root: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipelines.cli", *cli_args(params_file, data_root, root, "sweep", SWEEP, *args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PAPERZOO_PROGRESS_EVERY": "0"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def test_local_driver_killed_mid_sweep_then_rerun(params, data_root, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(probe_params(params, budget=1500)))
    root = tmp_path / "runs"
    process = driver(params_file, data_root, root, "--preset", "test", "--checkpoint-every", "100")
    try:
        directory = wait_for(lambda: (root / "sweeps" / SWEEP).is_dir() and the_sweep(root), 120, "the sweep folder")
        wait_for(
            lambda: (
                len(records := read_ledger(directory)) == 3
                and records[0]["state"] == "completed"
                and checkpointed(records[1]["run_dir"])
            ),
            START_BUDGET_S,
            "trial 1's first checkpoint",
        )
        process.send_signal(signal.SIGKILL)  # no handler runs: the driver leaves only what it wrote as it went
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    records = read_ledger(directory)
    assert [trial_state(r) for r in records] == ["completed", "interrupted", "pending"]
    assert not (directory / "summary.md").exists()
    finished_at = json.loads((Path(records[0]["run_dir"]) / "run.json").read_text())["finished"]

    capsys.readouterr()
    assert main(cli_args(params_file, data_root, root, "status", str(directory))) == 0
    status = capsys.readouterr().out
    assert "driver gone; 1 completed, 1 interrupted, 1 pending" in status and "/1500" in status

    assert main(cli_args(params_file, data_root, root, "sweep", SWEEP, "--preset", "test")) == 0
    rerun = the_sweep(root)
    again = read_ledger(rerun)
    assert [r["origin"] for r in again] == ["cached", "resumed", "new"]
    assert [r["run_dir"] for r in again[:2]] == [r["run_dir"] for r in records[:2]]
    assert json.loads((Path(records[0]["run_dir"]) / "run.json").read_text())["finished"] == finished_at  # not rerun
    resumed = json.loads((Path(records[1]["run_dir"]) / "run.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumed"] == 1

    whole = run_sweep(
        SWEEP, yaml.safe_load(params_file.read_text()), preset="test", run_root=tmp_path / "whole", data_dir=data_root
    )
    assert (rerun / "summary.csv").read_text() == (whole.directory / "summary.csv").read_text()  # bit-exact


@pytest.mark.usefixtures("slurm")
def test_slurm_detached_driver_killed_its_jobs_go_on_and_the_rerun_adopts_them(params, data_root, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(probe_params(params, budget=2000)))  # ~4 s a trial
    root = tmp_path / "runs"
    args = ("--preset", "test", "--backend", "submitit", "--profile", "slurm-cpu", "--checkpoint-every", "100")
    capsys.readouterr()
    assert main(cli_args(params_file, data_root, root, "sweep", SWEEP, *args, "--detach")) == 0
    printed = capsys.readouterr().out
    assert "paperzoo status" in printed and "paperzoo cancel" in printed
    directory = the_sweep(root)
    records = wait_for(
        lambda: len(r := read_ledger(directory)) == 3 and all(x["job_id"].startswith("slurm:") for x in r) and r,
        START_BUDGET_S,
        "the jobs in the ledger",
    )
    assert all(r["logs"] and r["logs"][0].endswith("_log.out") for r in records)
    driver_pid = json.loads((directory / "sweep.json").read_text())["pid"]
    wait_for(lambda: any(checkpointed(r["run_dir"]) for r in records), START_BUDGET_S, "a trial's first checkpoint")
    os.kill(driver_pid, signal.SIGKILL)
    wait_for(
        lambda: not Path(f"/proc/{driver_pid}").exists() or "Z" in Path(f"/proc/{driver_pid}/stat").read_text(),
        30,
        "the driver to die",
    )
    assert any(trial_state(r) in ("running", "queued") for r in read_ledger(directory))  # its jobs go on

    assert main(cli_args(params_file, data_root, root, "sweep", SWEEP, *args)) == 0
    rerun = the_sweep(root)
    again = read_ledger(rerun)
    assert {r["origin"] for r in again} <= {"adopted", "cached"} and "adopted" in {r["origin"] for r in again}
    assert [r["run_dir"] for r in again] == [r["run_dir"] for r in records]  # no trial ran twice
    whole = run_sweep(
        SWEEP, yaml.safe_load(params_file.read_text()), preset="test", run_root=tmp_path / "whole", data_dir=data_root
    )
    assert (rerun / "summary.csv").read_text() == (whole.directory / "summary.csv").read_text()


@pytest.mark.usefixtures("slurm")
def test_slurm_cancel_scancels_and_records(params, data_root, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(probe_params(params, budget=20000)))
    root = tmp_path / "runs"
    args = ("--preset", "test", "--backend", "submitit", "--profile", "slurm-cpu")
    assert main(cli_args(params_file, data_root, root, "sweep", SWEEP, *args, "--detach")) == 0
    directory = the_sweep(root)
    wait_for(
        lambda: len(r := read_ledger(directory)) == 3 and any(trial_state(x) == "running" for x in r),
        START_BUDGET_S,
        "a running job",
    )
    # a logout: SIGTERM to the driver leaves the jobs running and says how to follow them
    driver_pid = json.loads((directory / "sweep.json").read_text())["pid"]
    os.kill(driver_pid, signal.SIGTERM)
    wait_for(lambda: json.loads((directory / "sweep.json").read_text())["status"] == "detached", 60, "the detach")
    assert f"paperzoo status {directory}" in (directory / "driver.log").read_text()
    assert any(trial_state(r) in ("running", "queued") for r in read_ledger(directory))

    capsys.readouterr()
    assert main(cli_args(params_file, data_root, root, "cancel", str(directory))) == 0
    assert "scancel" in capsys.readouterr().out
    states = [r["state"] for r in read_ledger(directory)]
    assert set(states) <= {"cancelled", "preempted", "failed", "interrupted"} and "cancelled" in states, states
    assert all(trial_state(r) not in ("running", "queued") for r in read_ledger(directory))
    assert (directory / "summary.md").is_file()


def test_ray_rerun_runs_only_what_a_local_sweep_did_not_complete(params, data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    grid = {"schedule.phi": [0.5], "optimizer": ["sgd"]}
    local = run_sweep("uba_phi", params, grid=grid, seeds=[0], preset="test", run_root=tmp_path, data_dir=data_root)
    on_ray = run_sweep(
        "uba_phi",
        params,
        backend="ray",
        grid=grid,
        seeds=[0, 1],
        preset="test",
        run_root=tmp_path,
        data_dir=data_root,
    )
    records = read_ledger(on_ray.directory)
    assert [r["origin"] for r in records] == ["cached", "new"]
    assert records[0]["run_dir"] == local.results[0].run_dir
    assert records[1]["state"] == "completed" and records[1]["attempts"] == 1 and records[1]["job_id"]
