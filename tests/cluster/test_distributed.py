"""The launcher's translation of torchrun's and SLURM's variables into ranks, and profile loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.distributed import DistEnv, first_slurm_host, from_environment
from cluster.profiles import available_profiles, load_profile
from components.core.errors import ConfigError


def test_torchrun_variables():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "1234"}
    assert from_environment(env) == DistEnv(3, 4, 1, "10.0.0.5", 1234)


def test_slurm_multi_task_job():
    env = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    dist = from_environment(env)
    assert (dist.rank, dist.world_size, dist.local_rank) == (5, 8, 1)
    assert dist.master_addr == "gpu07" and dist.master_port == 20000 + 123456 % 20000


def test_single_task_slurm_job_and_plain_process_are_single():
    assert from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == DistEnv()
    assert from_environment({}) == DistEnv()


def test_first_host_of_a_nodelist_without_scontrol(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert first_slurm_host("node[03-05,09],gpu1") == "node03"
    assert first_slurm_host("single") == "single"


def test_profiles_load_and_validate(tmp_path):
    assert {"local", "cpu-ddp2", "cpu-deepspeed2", "slurm-cpu", "slurm-gpu8"} <= set(available_profiles())
    for name in available_profiles():
        load_profile(name)
    assert load_profile("cpu-deepspeed2").strategy_options()["config"]["zero_optimization"]["stage"] == 2
    with pytest.raises(ConfigError, match="unknown profile 'cpu-dp2' .did you mean 'cpu-ddp2'"):
        load_profile("cpu-dp2")
    bad = tmp_path / "bad.yaml"
    bad.write_text("processes: 2\nstrategy: horovod\n")
    with pytest.raises(ConfigError, match="strategy = 'horovod'"):
        load_profile(bad)
    bad.write_text("strategy: deepspeed\ndeepspeed_config: zero9.json\n")
    with pytest.raises(ConfigError, match="zero9.json' not found"):
        load_profile(bad)


class EventLog:
    """A stand-in for the sweep's ledger: the backend's reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def event(self, run_dir, state: str, **fields) -> None:
        self.events.append((str(run_dir), state, fields))


def test_one_process_torchrun_trials_run_in_a_forked_worker_and_a_crash_fails_only_its_trial(
    params, data_root, tmp_path, monkeypatch
):
    import os

    from cluster.backends import get_backend, local
    from cluster.launch import LaunchSpec
    from cluster.runner import plan_run

    profile = load_profile("local")
    request = plan_run("uba", params, preset="test", seed=0, data_dir=data_root)
    specs = [
        LaunchSpec.from_request(request, tmp_path / name, data_root, profile, backend="torchrun")
        for name in ("crashes", "after", "last")
    ]
    real_run_spec = local.run_spec

    def crash_the_first(spec, **kwargs):  # the worker is a fork: it inherits this patch
        if spec.run_dir.endswith("crashes"):
            os._exit(3)
        return real_run_spec(spec, **kwargs)

    monkeypatch.setattr(local, "run_spec", crash_the_first)
    from cluster.backends.torchrun import fork_is_safe

    assert fork_is_safe()  # no other Python thread here yet (tests/cluster runs before Prefect's and Ray's)
    ledger = EventLog()
    crashed, after, last = get_backend("torchrun")(specs, profile, workdir=tmp_path / "launch", ledger=ledger)
    assert crashed.status == "failed" and "exited 3" in crashed.error
    assert after.status == last.status == "completed" and after.metrics == last.metrics  # same config and seed
    (local_outcome,) = get_backend("local")(
        [LaunchSpec.from_request(request, tmp_path / "local", data_root, profile)], profile
    )
    assert after.metrics == local_outcome.metrics  # bit-exact with the local backend
    running = [fields for _, state, fields in ledger.events if state == "running"]
    assert len(running) == 3 and all(f["job_id"] != f"pid:{os.getpid()}@{os.uname().nodename}" for f in running)
    assert [f["logs"] for f in running] == [[str(tmp_path / "launch" / f"spec-00{i}.log")] for i in range(3)]
    ends = [(Path(run_dir).name, state) for run_dir, state, _ in ledger.events if state != "running"]
    assert ends == [("crashes", "failed"), ("after", "completed"), ("last", "completed")]
    assert all((tmp_path / "launch" / f"spec-00{i}.log").is_file() for i in range(3))


def test_a_process_running_other_threads_spawns_the_worker_instead_of_forking(params, data_root, tmp_path):
    # a fork copies one thread: a lock held by another (a Prefect or Ray client thread) would never be released
    # in the child, which then hangs; with another thread running, the worker is a fresh interpreter
    import os
    import threading

    from cluster.backends import get_backend
    from cluster.backends.torchrun import fork_is_safe
    from cluster.launch import LaunchSpec
    from cluster.runner import plan_run

    profile = load_profile("local")
    request = plan_run("uba", params, preset="test", seed=0, data_dir=data_root)
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        assert not fork_is_safe()
        ledger = EventLog()
        spec = LaunchSpec.from_request(request, tmp_path / "spawned", data_root, profile, backend="torchrun")
        (spawned,) = get_backend("torchrun")([spec], profile, workdir=tmp_path / "launch", ledger=ledger)
    finally:
        release.set()
        other.join()
    (here,) = get_backend("local")([LaunchSpec.from_request(request, tmp_path / "local", data_root, profile)], profile)
    assert spawned.status == "completed" and spawned.metrics == here.metrics
    running = [fields for _, state, fields in ledger.events if state == "running"]
    assert len(running) == 1 and running[0]["job_id"] != f"pid:{os.getpid()}@{os.uname().nodename}"
