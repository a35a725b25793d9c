"""The local launcher: run directories, determinism, resume after preemption, atomic stage outputs."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch
import yaml

import cluster.runner
from cluster.runner import JsonlSink, StopFlag, execute, load_request, plan_run
from cluster.states import State, run_state
from components.core.errors import DataError, Preempted, RunError


def test_run_directory_holds_everything(params, data_root, tmp_path):
    request = plan_run("uba", params, preset="test", overrides=["schedule.phi=0.5"], seed=1, data_dir=data_root)
    result = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path / "uba" and run_dir.name.endswith(f"-{request.config_hash}-s1")
    for name in (
        "config.yaml",
        "metrics.json",
        "metrics.jsonl",
        "run.json",
        "environment.json",
        "lr.csv",
        "lr.png",
        "model.safetensors",
        "dvclive",
    ):
        assert (run_dir / name).exists(), name
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["schedule"]["phi"] == 0.5
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["seed"] == 1 and len(info["code"]["git_sha"]) >= 7
    assert "torch" in json.loads((run_dir / "environment.json").read_text())["packages"]
    assert json.loads((run_dir / "metrics.json").read_text()) == result.metrics
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[:3] == [0, 1, 2] and steps[-1] == 30


def test_another_seed_gives_other_metrics(params, data_root, tmp_path):
    runs = [
        execute(
            plan_run("uba", params, preset="test", seed=seed, data_dir=data_root),
            run_root=tmp_path,
            data_dir=data_root,
            show_progress=False,
        )
        for seed in (0, 1)
    ]
    assert runs[0].metrics != runs[1].metrics
    assert runs[0].run_dir != runs[1].run_dir


def test_resume_after_preemption_is_bit_exact(params, data_root, tmp_path, preempt_at):
    sets = ["budget=40", "schedule.warmup=3"]
    request = plan_run("uba", params, preset="test", overrides=sets, seed=2, data_dir=data_root)
    whole = execute(request, run_root=tmp_path / "whole", data_dir=data_root, show_progress=False, checkpoint_every=10)
    with pytest.raises(Preempted):
        execute(
            request,
            run_root=tmp_path / "cut",
            data_dir=data_root,
            show_progress=False,
            checkpoint_every=10,
            sinks=[preempt_at(17)],
        )
    (cut_dir,) = (tmp_path / "cut" / "uba").iterdir()
    assert json.loads((cut_dir / "run.json").read_text())["status"] == "preempted"
    assert (cut_dir / "checkpoints" / "step_000000018").is_dir()
    resumed = execute(load_request(cut_dir), cut_dir, data_dir=data_root, show_progress=False, checkpoint_every=10)
    assert resumed.metrics == whole.metrics
    losses = [
        [r.get("train/loss") for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
        for d in (whole.run_dir, cut_dir)
    ]
    assert losses[0] == losses[1]
    with pytest.raises(RunError, match="already completed"):
        load_request(cut_dir)


def test_stage_output_is_replaced_only_on_success(params, data_root, tmp_path):
    out = tmp_path / "dvc" / "uba"
    good = plan_run("uba", params, preset="test", data_dir=data_root)
    execute(good, out, data_dir=data_root, show_progress=False, replace=True)
    before = (out / "metrics.json").read_text()
    diverging = plan_run("uba", params, preset="test", overrides=["lr=1e6"], data_dir=data_root)
    with pytest.raises(RunError, match=r"loss diverged at step \d+"):
        execute(diverging, out, data_dir=data_root, show_progress=False, replace=True)
    assert (out / "metrics.json").read_text() == before


def test_missing_dataset_fails_before_anything_is_written(params, tmp_path):
    with pytest.raises(DataError, match="paperzoo prepare images digits"):
        plan_run("uba", params, preset="test", data_dir=tmp_path / "nodata")


def test_bad_shards_are_caught_at_the_start(params, data_root, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(data_root, broken)
    shard = sorted((broken / "images" / "digits").glob("train-*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:-512])
    with pytest.raises(DataError, match=shard.name):
        plan_run("uba", params, preset="test", data_dir=broken)
    shard.unlink()
    with pytest.raises(DataError, match=shard.name):
        plan_run("uba", params, preset="test", data_dir=broken)


def test_a_signal_during_the_stop_reduction_is_not_lost(monkeypatch):
    """A rank waits inside all_reduce most of the time; a signal landing there must still stop the next check."""
    flag = StopFlag(synchronised=True)

    def reduce_while_signal_arrives(tensor, op=None):
        flag._handle(signal.SIGTERM, None)  # arrives after this rank contributed 0 to the reduction

    monkeypatch.setattr(torch.distributed, "all_reduce", reduce_while_signal_arrives)
    assert flag() is False  # nobody had been signalled when the ranks agreed
    assert flag() is True  # the next agreement carries this rank's signal


def test_a_running_run_whose_process_is_gone_reads_as_interrupted(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    here = {"status": "running", "host": socket.gethostname()}
    assert run_state({**here, "pid": child.pid}) == State.INTERRUPTED
    assert run_state({**here, "pid": os.getpid()}, tmp_path) == State.INTERRUPTED  # this process, run not active
    assert run_state({**here, "pid": os.getpid()}) == "running"
    assert run_state({**here, "host": "elsewhere", "pid": child.pid}) == "running"  # cannot tell from here
    assert run_state({"status": "running"}) == "running"  # an older run.json without a pid
    assert run_state({**here, "pid": child.pid, "status": "completed"}) == State.COMPLETED


def test_a_failed_metrics_write_keeps_whole_records(tmp_path, monkeypatch):
    sink = JsonlSink(tmp_path / "metrics.jsonl")
    sink({"train/loss": 1.0}, 0)

    def half_then_full(handle, data):
        handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cluster.runner, "write_all", half_then_full)
    with pytest.raises(RunError, match=f"cannot write {tmp_path / 'metrics.jsonl'}: no space left on device"):
        sink({"train/loss": 0.5}, 1)
    sink.close()
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0]
