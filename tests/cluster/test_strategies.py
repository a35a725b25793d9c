"""Strategies for real on CPU: DDP (gloo) at world size 2 through torchrun follows the world size 1 loss
curve with the same global batch (DeepSpeed at world size 2 equals DDP bit for bit:
tests/cluster/test_deepspeed_parity.py); DeepSpeed ZeRO stages and its checkpoints resume exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from cluster.backends import get_backend
from cluster.backends.torchrun import torchrun_command
from cluster.launch import LaunchSpec
from cluster.profiles import Profile, load_profile
from cluster.runner import execute, load_request, plan_run
from components.core.errors import Preempted

pytestmark = pytest.mark.integration
PARITY_RTOL = 1e-5  # world size 2 sums gradients in another order; measured differences are ~1e-7


def step_losses(run_dir: Path) -> np.ndarray:
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return np.array([r["train/loss"] for r in records if "train/loss" in r])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    from pipelines.params import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    request = plan_run("uba", params, preset="test", overrides=["budget=25"], seed=4, data_dir=data_root)
    result = execute(request, tmp_path_factory.mktemp("ref") / "run", data_dir=data_root, show_progress=False)
    return request, result


@pytest.mark.parametrize("profile_name", ["cpu-ddp2"])
def test_world_size_two_follows_world_size_one(profile_name, reference, data_root, tmp_path):
    request, single = reference
    profile = load_profile(profile_name)
    spec = LaunchSpec.from_request(request, tmp_path / "run", data_root, profile, backend="torchrun")
    (outcome,) = get_backend("torchrun")([spec], profile, workdir=tmp_path / "launch")
    assert outcome.status == "completed", outcome.error
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["world_size"] == 2 and info["strategy"] == profile.strategy
    two, one = step_losses(tmp_path / "run"), step_losses(single.run_dir)
    assert len(two) == len(one) == 25
    np.testing.assert_allclose(two, one, rtol=PARITY_RTOL)
    assert outcome.metrics["val/acc"] == pytest.approx(single.metrics["val/acc"], abs=1 / 269)


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_zero_stages_match_plain_at_world_size_one(stage, reference, data_root, tmp_path):
    request, single = reference
    options = Profile(strategy="deepspeed", deepspeed_config=f"zero{stage}.json").strategy_options()
    result = execute(
        request,
        tmp_path / "run",
        data_dir=data_root,
        show_progress=False,
        strategy="deepspeed",
        strategy_options=options,
    )
    np.testing.assert_allclose(step_losses(result.run_dir), step_losses(single.run_dir), rtol=PARITY_RTOL)
    assert (result.run_dir / "model.safetensors").is_file()
    assert "RANK" not in os.environ and "MASTER_PORT" not in os.environ  # nothing stale for jobs started later


def test_deepspeed_checkpoint_resumes_exactly(reference, data_root, tmp_path, preempt_at):
    request, _ = reference
    options = Profile(strategy="deepspeed", deepspeed_config="zero2.json").strategy_options()
    common = dict(
        data_dir=data_root, show_progress=False, strategy="deepspeed", strategy_options=options, checkpoint_every=5
    )
    whole = execute(request, tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, tmp_path / "cut", sinks=[preempt_at(12)], **common)
    assert any((tmp_path / "cut" / "checkpoints").glob("step_*/deepspeed"))
    resumed = execute(load_request(tmp_path / "cut"), tmp_path / "cut", **common)
    assert resumed.metrics == whole.metrics
    np.testing.assert_array_equal(step_losses(tmp_path / "cut"), step_losses(tmp_path / "whole"))


def rank_zero_of(launcher: subprocess.Popen) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == "0" and "cluster.launch" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_a_signal_to_one_rank_stops_all_ranks_at_one_checkpoint(data_root, tmp_path, params):
    """SLURM signals one task first; if only that rank stopped, the other would wait in a collective forever."""
    request = plan_run("uba", params, preset="test", overrides=["budget=3000"], seed=5, data_dir=data_root)
    profile = load_profile("cpu-ddp2")
    cut = LaunchSpec.from_request(request, tmp_path / "cut", data_root, profile, backend="torchrun")
    (tmp_path / "cut.json").write_text(cut.to_json())
    launcher = subprocess.Popen(
        torchrun_command(tmp_path / "cut.json", 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "cut" / "metrics.jsonl"
        while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 20):
            time.sleep(0.05)
        rank_zero_of(launcher).send_signal(signal.SIGTERM)  # rank 0 only
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["status"] == "preempted", info
    (checkpoint,) = (tmp_path / "cut" / "checkpoints").glob("step_*")  # one checkpoint, written by both ranks
    stopped_at = int(checkpoint.name.split("_")[1])
    assert 20 <= stopped_at < 3000

    whole = LaunchSpec.from_request(request, tmp_path / "whole", data_root, profile, backend="torchrun")
    finished, resumed = get_backend("torchrun")([whole, cut], profile, workdir=tmp_path / "launch")
    assert resumed.status == finished.status == "completed", resumed.error
    assert resumed.metrics == finished.metrics
    np.testing.assert_array_equal(step_losses(tmp_path / "cut"), step_losses(tmp_path / "whole"))
