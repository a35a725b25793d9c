"""SLURM for real: cluster/slurm-local starts munged, slurmctld and slurmd on loopback, and the submitit
backend runs a job array of a uba_phi sub-grid, an array whose tasks run several trials each, a 2-task
DeepSpeed training and a job requeued in the middle of training, against it. A missing SLURM is a failure
(slurm-local installs it), never a skip."""

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

from cluster.backends import get_backend, submitit_backend
from cluster.backends.submitit_backend import slurm_time_minutes, trials_per_task
from cluster.launch import LaunchSpec
from cluster.profiles import Profile, load_profile
from cluster.runner import plan_run
from pipelines.ledger import Ledger, read_ledger
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

    chunk = trials_per_task(len(requests), profile)  # several trials a task where the node has fewer CPUs
    on_slurm = get_backend("submitit")(specs("submitit"), profile, workdir=tmp_path / "submitit", metric="val/loss")
    printed = capsys.readouterr().out
    array_ids = re.findall(r"as SLURM job (\d+)_(\d+)", printed)
    assert len(array_ids) == 4 and len({job for job, _ in array_ids}) == 1, printed  # one array for 4 trials
    assert [int(task) for _, task in array_ids] == [index // chunk for index in range(4)]
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
    assert sorted(states) == sorted({f"{job}_{task}" for job, task in array_ids})
    # a task fails when one of its trials did (the last one diverged); the others completed
    assert [states[f"{job}_{task}"] for job, task in array_ids] == ["COMPLETED"] * (3 // chunk * chunk) + ["FAILED"] * (
        4 - 3 // chunk * chunk
    )


def test_chunk_size_follows_the_partition_and_the_profile(monkeypatch):
    assert [slurm_time_minutes(t) for t in ("infinite", "30", "1:30:00", "2-00:00:00", "45:00")] == [
        None,
        30,
        90,
        2880,
        45,
    ]
    monkeypatch.setattr(submitit_backend, "partition_capacity", lambda profile: (8, None))
    one_cpu = Profile(name="cpu", timeout_min=30)
    assert [trials_per_task(n, one_cpu) for n in (1, 8, 9, 32)] == [1, 1, 2, 4]  # never fewer tasks at once
    assert trials_per_task(32, Profile(name="wide", cpus_per_task=4)) == 16  # 2 trials fit at once
    assert trials_per_task(32, Profile(name="ddp", processes=2)) == 1  # a process group per task
    assert trials_per_task(32, Profile(name="gpu", gpus_per_node=1)) == 1
    monkeypatch.setattr(submitit_backend, "partition_capacity", lambda profile: (8, 60))
    assert trials_per_task(32, one_cpu) == 2  # two 30-minute trials fill the 60-minute limit


def test_chunked_array_runs_each_trial_once_with_its_own_run_dir_record_and_log(
    slurm, params, data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(submitit_backend, "partition_capacity", lambda profile: (2, None))  # 2 tasks of 3
    monkeypatch.setattr(submitit_backend, "LISTED_SUBMISSIONS", 4)  # 6 trials: one line for the submission
    profile = load_profile("slurm-cpu")
    seeds = range(6)
    requests = [plan_run("uba", params, preset="test", seed=seed, data_dir=data_root) for seed in seeds]
    specs = [
        LaunchSpec.from_request(r, tmp_path / "trials" / f"s{seed}", data_root, profile, backend="submitit")
        for seed, r in zip(seeds, requests)
    ]
    ledger = Ledger(tmp_path / "sweep")
    for index, spec in enumerate(specs):
        ledger.write(index, name=f"s{index}", run_dir=spec.run_dir, state="pending")
    outcomes = get_backend("submitit")(specs, profile, workdir=tmp_path / "launch", metric="val/loss", ledger=ledger)
    local = get_backend("local")(
        [LaunchSpec.from_request(r, tmp_path / "local" / f"s{i}", data_root, profile) for i, r in enumerate(requests)],
        profile,
    )
    assert [o.metrics for o in outcomes] == [o.metrics for o in local]  # bit-exact, trial by trial
    records = read_ledger(tmp_path / "sweep")
    job_ids = [r["job_id"] for r in records]
    assert len(set(job_ids)) == 2 and job_ids == [job_ids[0]] * 3 + [job_ids[3]] * 3  # two array tasks
    printed = capsys.readouterr().out
    array = job_ids[0].removeprefix("slurm:").split("_")[0]
    assert f"submitted 6 trials as SLURM job array {array} (2 tasks, 3 trials each)" in printed, printed
    assert not re.search(r"as SLURM job \d", printed)  # no line per trial: `paperzoo status` lists them
    assert all(r["state"] == "completed" and r["run_dir"] == s.run_dir for r, s in zip(records, specs))
    own_logs = [Path(r["logs"][0]) for r in records]
    assert len(set(own_logs)) == 6 and all(
        log.name.endswith(f"_trial{i % 3}_log.out") for i, log in enumerate(own_logs)
    )
    for log, spec in zip(own_logs, specs):
        assert log.read_text().splitlines()[0].endswith(spec.run_dir)  # its own trial's output, no other's
    for spec in specs:  # run once: one attempt, every step logged once
        info = json.loads((Path(spec.run_dir) / "run.json").read_text())
        assert info["status"] == "completed" and not info.get("resumed")
        assert [step for step, _ in train_losses(Path(spec.run_dir))] == list(range(requests[0].config.budget))


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


def test_requeued_chunk_skips_its_finished_trials_and_resumes_the_cut_one(
    slurm, params, data_root, tmp_path, monkeypatch
):
    monkeypatch.setattr(submitit_backend, "partition_capacity", lambda profile: (1, None))  # one task of 3
    profile = load_profile("slurm-cpu")
    budgets = (300, 4000, 300)  # the second trial runs ~8 s: long enough to requeue it mid-training
    requests = [
        plan_run("uba", params, preset="test", overrides={"budget": b}, seed=3, data_dir=data_root) for b in budgets
    ]
    specs = [
        LaunchSpec.from_request(r, tmp_path / f"t{i}", data_root, profile, checkpoint_every=100, backend="submitit")
        for i, r in enumerate(requests)
    ]
    outcomes = []
    worker = threading.Thread(
        target=lambda: outcomes.extend(get_backend("submitit")(specs, profile, workdir=tmp_path / "launch"))
    )
    worker.start()
    try:
        checkpoints = tmp_path / "t1" / "checkpoints"
        wait_for(lambda: checkpoints.is_dir() and any(checkpoints.iterdir()), START_BUDGET_S, "trial 1's checkpoint")
        first_finished = json.loads((tmp_path / "t0" / "run.json").read_text())["finished"]
        (job_dir,) = (tmp_path / "launch" / "submitit").glob("*/[0-9]*")
        requeued = subprocess.run(["scontrol", "requeue", job_dir.name], capture_output=True, text=True, timeout=60)
        assert requeued.returncode == 0, requeued.stderr
    finally:
        worker.join(timeout=300)
    assert not worker.is_alive(), "the requeued chunk did not finish in 5 minutes"
    assert [o.status for o in outcomes] == ["completed"] * 3, [o.error for o in outcomes]
    infos = [json.loads((tmp_path / f"t{i}" / "run.json").read_text()) for i in range(3)]
    assert infos[0]["finished"] == first_finished and not infos[0].get("resumed")  # not run again
    assert infos[1]["resumed"] == 1 and not infos[2].get("resumed")
    whole = get_backend("local")(
        [replace(spec, run_dir=str(tmp_path / f"whole{i}"), backend="local") for i, spec in enumerate(specs)], profile
    )
    assert [o.metrics for o in outcomes] == [o.metrics for o in whole]  # bit-exact, the cut one included
