"""Gradient clipping is the strategy's job: a component passes its Config's grad_clip to `prepare`, and every
strategy clips the global norm where it keeps the gradients (DeepSpeed inside the engine, across ZeRO's
partitions) and returns the norm it measured before clipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.profiles import Profile
from cluster.runner import execute, plan_run
from components.core.strategy import plain_strategy


def one_step(grad_clip: float | None) -> tuple[float | None, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    strategy = plain_strategy()
    model, optimizer, _ = strategy.prepare(model, torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=grad_clip)
    strategy.backward(model(torch.randn(5, 4)).square().sum())
    grad = torch.cat([p.grad.flatten().clone() for p in model.parameters()])
    norm = strategy.step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return norm, grad, after - before


def test_plain_strategy_clips_the_global_norm_and_returns_it():
    norm, grad, update = one_step(grad_clip=0.5)
    assert grad.norm().item() > 1.0  # the clip binds
    assert norm == pytest.approx(grad.norm().item(), rel=1e-6)  # the norm before clipping, over every tensor
    torch.testing.assert_close(update, -grad * (0.5 / grad.norm()), rtol=1e-5, atol=1e-7)
    unclipped_norm, same_grad, raw_update = one_step(grad_clip=None)  # control: no clip, the raw gradient
    assert unclipped_norm is None
    torch.testing.assert_close(raw_update, -same_grad, rtol=1e-6, atol=1e-7)


def logged(run_dir: Path, key: str) -> np.ndarray:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return np.array([r[key] for r in records if key in r])


@pytest.mark.integration
def test_deepspeed_zero2_clips_and_probes_as_the_plain_strategy_does(params, data_root, tmp_path):
    """adamw_l1's grad_clip reaches the DeepSpeed engine and its gradient probe reads ZeRO-2's partitioned
    gradients through full_grad: at world size 1 (gloo), with SGD (where a clip changes the steps), the ZeRO-2 run
    logs the plain run's losses and raw gradient norms step for step; a run without the clip differs."""
    overrides = {"widths": [8, 16], "budget": 12, "grad_clip": 0.05, "true_grad_every": 0, "optimizer": "sgd"}
    request = plan_run("adamw_l1", params, preset="test", overrides=overrides, seed=3, data_dir=data_root)
    plain = execute(request, tmp_path / "plain", data_dir=data_root, show_progress=False)
    options = Profile(strategy="deepspeed", deepspeed_config="zero2.json").strategy_options()
    zero2 = execute(
        request,
        tmp_path / "zero2",
        data_dir=data_root,
        show_progress=False,
        strategy="deepspeed",
        strategy_options=options,
    )
    for key in ("train/loss", "grad/l1", "grad/l2"):
        np.testing.assert_allclose(logged(zero2.run_dir, key), logged(plain.run_dir, key), rtol=1e-5, err_msg=key)
    assert len(logged(plain.run_dir, "grad/l1")) == 24  # the probe ran at every step of both widths
    unclipped = plan_run(
        "adamw_l1", params, preset="test", overrides=overrides | {"grad_clip": None}, seed=3, data_dir=data_root
    )
    free = execute(unclipped, tmp_path / "free", data_dir=data_root, show_progress=False)
    assert np.abs(logged(free.run_dir, "train/loss") - logged(plain.run_dir, "train/loss")).max() > 1e-3
