"""The launcher's translation of torchrun's and SLURM's variables into ranks, and profile loading."""

from __future__ import annotations

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
