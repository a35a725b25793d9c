"""Strategies for real on CPU: DDP and DeepSpeed (gloo) at world size 2 through torchrun follow the world
size 1 loss curve with the same global batch; DeepSpeed ZeRO stages and its checkpoints resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cluster.backends import get_backend
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


@pytest.mark.parametrize("profile_name", ["cpu-ddp2", "cpu-deepspeed2"])
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
    result = execute(request, tmp_path / "run", data_dir=data_root, show_progress=False, strategy="deepspeed",
                     strategy_options=options)
    np.testing.assert_allclose(step_losses(result.run_dir), step_losses(single.run_dir), rtol=PARITY_RTOL)
    assert (result.run_dir / "model.safetensors").is_file()


def test_deepspeed_checkpoint_resumes_exactly(reference, data_root, tmp_path, preempt_at):
    request, _ = reference
    options = Profile(strategy="deepspeed", deepspeed_config="zero2.json").strategy_options()
    common = dict(data_dir=data_root, show_progress=False, strategy="deepspeed", strategy_options=options,
                  checkpoint_every=5)
    whole = execute(request, tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, tmp_path / "cut", sinks=[preempt_at(12)], **common)
    assert any((tmp_path / "cut" / "checkpoints").glob("step_*/deepspeed"))
    resumed = execute(load_request(tmp_path / "cut"), tmp_path / "cut", **common)
    assert resumed.metrics == whole.metrics
    np.testing.assert_array_equal(step_losses(tmp_path / "cut"), step_losses(tmp_path / "whole"))


def _rank_until_preempted(rank: int, port: int, request, run_dir: Path, data_root: Path, queue, preempt_at) -> None:
    from cluster.distributed import DistEnv

    dist = DistEnv(rank, 2, 0, "127.0.0.1", port)
    try:
        execute(request, run_dir, data_dir=data_root, show_progress=False, strategy="ddp", dist=dist,
                sinks=[preempt_at(12)] if rank == 0 else [])  # only rank 0 is signalled
        queue.put((rank, "completed"))
    except Preempted:
        queue.put((rank, "preempted"))


def test_a_signal_to_one_rank_stops_all_ranks_at_one_checkpoint(reference, data_root, tmp_path, preempt_at):
    import multiprocessing

    from cluster.distributed import free_port

    request, _ = reference
    context = multiprocessing.get_context("fork")
    queue, port = context.Queue(), free_port()
    ranks = [context.Process(target=_rank_until_preempted, args=(rank, port, request, tmp_path / "cut", data_root,
                                                                  queue, preempt_at)) for rank in (0, 1)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
    assert all(process.exitcode == 0 for process in ranks), "a rank hung or crashed"
    assert sorted(queue.get(timeout=5) for _ in ranks) == [(0, "preempted"), (1, "preempted")]
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").glob("step_*")] == ["step_000000013"]

    profile = load_profile("cpu-ddp2")
    whole_spec = LaunchSpec.from_request(request, tmp_path / "whole", data_root, profile, backend="torchrun")
    cut_spec = LaunchSpec.from_request(request, tmp_path / "cut", data_root, profile, backend="torchrun")
    whole, resumed = get_backend("torchrun")([whole_spec, cut_spec], profile, workdir=tmp_path / "launch")
    assert resumed.status == whole.status == "completed"
    assert resumed.metrics == whole.metrics
    np.testing.assert_array_equal(step_losses(tmp_path / "cut"), step_losses(tmp_path / "whole"))
