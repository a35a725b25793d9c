"""SLURM for real: cluster/slurm-local starts munged, slurmctld and slurmd on loopback, and the submitit
backend runs a job array of a uba_phi sub-grid, a 2-task DeepSpeed training and a job requeued in the
middle of training, against it. A missing SLURM is a failure (slurm-local installs it), never a skip."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.backends import get_backend
from cluster.launch import LaunchSpec
from cluster.profiles import load_profile
from cluster.runner import plan_run
from pipelines.sweep import expand_sweep

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SLURM_LOCAL = ROOT / "cluster" / "slurm-local"
SACCT = ROOT / "cluster" / "slurm" / "sacct"
START_BUDGET_S = float(os.environ.get("PAPERZOO_TEST_START_BUDGET_S") or 240)  # tests/conftest.py sets it
# `up` waits up to the budget (PAPERZOO_SLURM_START_TIMEOUT, the same number) for munged, then for the node
UP_TIMEOUT_S = 2 * START_BUDGET_S + 60


def slurm_local(*args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(SLURM_LOCAL), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm():
    """The single-node cluster, up for this module and down after it (left as found if it already ran)."""
    already_up = slurm_local("status").returncode == 0
    started = slurm_local("up", timeout=900 + UP_TIMEOUT_S)  # the first time installs slurm-wlm and munge
    if started.returncode != 0:
        pytest.fail(f"cluster/slurm-local up failed:\n{started.stdout}{started.stderr}")
    conf = slurm_local("env").stdout.split("=", 1)[1].strip()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", conf)  # in case /etc/slurm/slurm.conf belongs to another cluster
        yield conf
        if not already_up:
            stopped = slurm_local("down")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            assert "running" not in slurm_local("status").stdout


def shim_states(*job_ids: str) -> dict[str, str]:
    args = [arg for job_id in job_ids for arg in ("-j", job_id)]
    out = subprocess.run(
        [str(SACCT), "-o", "JobID,State,NodeList", "--parsable2", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert out[0] == "JobID|State|NodeList"
    return {line.split("|")[0]: line.split("|")[1] for line in out[1:]}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]


def test_sbatch_job_completes_and_sacct_shim_reports_it(slurm, tmp_path):
    out = tmp_path / "job.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "-o", str(out), "--wrap", "echo ran on $SLURMD_NODENAME"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    wait_for(lambda: shim_states(job_id).get(job_id) == "COMPLETED", START_BUDGET_S, f"job {job_id} to complete")
    assert out.read_text().strip() == "ran on localhost"


def test_job_array_of_a_sweep_matches_the_local_backend(slurm, params, data_root, tmp_path, capsys):
    trials = expand_sweep(
        params["sweeps"]["uba_phi"], {"schedule.phi": [0.5, 2, 5], "optimizer": ["adamw"]}, [1], "uba_phi"
    )
    overrides = [dict(t.overrides) for t in trials] + [{"optimizer": "sgd", "lr": 1e6}]  # the last one diverges
    requests = [plan_run("uba", params, preset="test", overrides=o, seed=1, data_dir=data_root) for o in overrides]
    profile = load_profile("slurm-cpu")

    def specs(backend: str) -> list[LaunchSpec]:
        return [
            LaunchSpec.from_request(r, tmp_path / backend / f"trial{i}", data_root, profile, backend=backend)
            for i, r in enumerate(requests)
        ]

    on_slurm = get_backend("submitit")(specs("submitit"), profile, workdir=tmp_path / "submitit", metric="val/loss")
    printed = capsys.readouterr().out
    array_ids = re.findall(r"as SLURM job (\d+)_(\d+)", printed)
    assert len(array_ids) == 4 and len({job for job, _ in array_ids}) == 1, printed  # one array of 4 tasks
    local = get_backend("local")(specs("local"), profile, workdir=tmp_path / "local")
    for slurm_outcome, local_outcome in zip(on_slurm[:3], local[:3]):
        assert slurm_outcome.status == "completed", slurm_outcome.error
        assert slurm_outcome.metrics == local_outcome.metrics  # bit-exact: same inputs, one thread each
        info = json.loads((Path(slurm_outcome.spec.run_dir) / "run.json").read_text())
        assert info["backend"] == "submitit" and info["threads"] == 1
    diverged, diverged_locally = on_slurm[3], local[3]
    assert diverged.status == diverged_locally.status == "failed"
    assert "loss diverged at step" in diverged.error and diverged.error == diverged_locally.error
    deadline = time.monotonic() + 30  # slurmctld settles a finished task's state a moment after submitit sees it
    while True:
        states = shim_states(array_ids[0][0])
        if time.monotonic() > deadline or not {"RUNNING", "COMPLETING", "PENDING"} & set(states.values()):
            break
        time.sleep(0.5)
    assert sorted(states) == sorted(f"{job}_{task}" for job, task in array_ids)
    assert [states[f"{job}_{task}"] for job, task in array_ids] == ["COMPLETED"] * 3 + ["FAILED"]


def test_two_task_job_trains_uba_under_deepspeed(slurm, params, data_root, tmp_path):
    profile = load_profile("cpu-deepspeed2")  # 2 processes, DeepSpeed ZeRO-2 over gloo
    assert profile.processes == 2 and profile.strategy == "deepspeed"
    request = plan_run("uba", params, preset="test", seed=0, data_dir=data_root)
    spec = LaunchSpec.from_request(request, tmp_path / "run", data_root, profile, backend="submitit")
    (outcome,) = get_backend("submitit")([spec], profile, workdir=tmp_path, metric="val/loss")
    assert outcome.status == "completed", outcome.error
    assert outcome.metrics and all(math.isfinite(value) for value in outcome.metrics.values())
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["world_size"] == 2 and info["strategy"] == "deepspeed"
    assert len(list((tmp_path / "submitit").glob("*/*/*_result.pkl"))) == 2  # both SLURM tasks finished
    assert [step for step, _ in train_losses(tmp_path / "run")] == list(range(request.config.budget))


def test_requeued_job_resumes_from_its_checkpoint_bit_exact(slurm, params, data_root, tmp_path):
    # ~8 s of training on one core: long enough to requeue it well before the end
    request = plan_run("uba", params, preset="test", overrides={"budget": 4000}, seed=3, data_dir=data_root)
    profile = load_profile("slurm-cpu")
    spec = LaunchSpec.from_request(
        request, tmp_path / "run", data_root, profile, checkpoint_every=100, backend="submitit"
    )
    outcomes = []
    worker = threading.Thread(
        target=lambda: outcomes.extend(
            get_backend("submitit")([spec], profile, workdir=tmp_path / "launch", metric="val/loss")
        )
    )
    worker.start()
    try:
        checkpoints = tmp_path / "run" / "checkpoints"
        wait_for(
            lambda: checkpoints.is_dir() and any(checkpoints.iterdir()), START_BUDGET_S, "the job's first checkpoint"
        )
        (job_dir,) = (tmp_path / "launch" / "submitit").glob("*/[0-9]*")
        job_id = job_dir.name
        requeued = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
        assert requeued.returncode == 0, requeued.stderr
    finally:
        worker.join(timeout=300)
    assert not worker.is_alive(), "the requeued job did not finish in 5 minutes"
    (outcome,) = outcomes
    assert outcome.status == "completed", outcome.error

    stopped = re.search(r"stopped at step (\d+) of 4000", (job_dir / f"{job_id}_0_log.out").read_text())
    assert stopped and 0 < int(stopped.group(1)) < 4000  # it really was cut mid-training
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed"] == 1

    uninterrupted = replace(spec, run_dir=str(tmp_path / "whole"), backend="local")
    (whole,) = get_backend("local")([uninterrupted], profile, workdir=tmp_path / "local")
    assert whole.status == "completed" and outcome.metrics == whole.metrics  # bit-exact
    resumed_curve = train_losses(tmp_path / "run")
    assert [step for step, _ in resumed_curve] == list(range(4000))  # one train/loss per step, none twice
    assert resumed_curve == train_losses(tmp_path / "whole")


def submit_trivial_job() -> int:
    done = subprocess.run(
        ["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().split(";")[0])


def test_slurm_local_is_idempotent_and_never_reuses_job_ids(slurm):
    before = submit_trivial_job()
    for _ in range(2):
        stopped = slurm_local("down")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    status = slurm_local("status")
    assert status.returncode != 0 and "running" not in status.stdout
    for _ in range(2):
        started = slurm_local("up")
        assert started.returncode == 0, started.stdout + started.stderr
    assert slurm_local("status").returncode == 0
    assert submit_trivial_job() > before  # a cold start continues after the last id, it does not restart at 1
