"""checked_step: the logged loss is the rank mean, a diverged loss stops before any update, a normal step is
exactly backward then the optimizer's step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from components.core.contract import RunContext
from components.core.errors import RunError
from components.core.strategy import make_strategy
from components.core.training import checked_step

X = torch.linspace(-1, 1, 12).reshape(4, 3)
Y = torch.tensor([0.5, -1.0, 2.0, 0.0])


def model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def prepared(tmp_path: Path) -> tuple[RunContext, torch.nn.Module]:
    strategy = make_strategy("plain", "cpu", {})
    model, _, _ = strategy.prepare(*model_and_optimizer())
    return RunContext(run_dir=tmp_path, data_dir=tmp_path, strategy=strategy), model


def loss_of(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(X).squeeze(-1), Y)


def test_returns_the_rank_mean_which_is_the_loss_on_one_rank(tmp_path):
    ctx, model = prepared(tmp_path)
    loss = loss_of(model)
    assert checked_step(ctx, loss, step=0, limit=1e3) == loss.item()


@pytest.mark.parametrize("scale", [math.nan, math.inf, 1e6])
def test_a_diverged_loss_names_the_step_and_leaves_the_model_alone(tmp_path, scale):
    ctx, model = prepared(tmp_path)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RunError, match=r"^loss diverged at step 7 of width 64 \(loss \S+, lr 0\.1\): lower lr$"):
        checked_step(ctx, loss_of(model) * scale, step=7, limit=1e3, lr=0.1, context="of width 64")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # no backward either


def test_a_step_is_backward_then_the_optimizer_step(tmp_path):
    ctx, model = prepared(tmp_path)
    reference, optimizer = model_and_optimizer()
    for step in range(3):  # momentum: later steps also see that the gradients were zeroed in between
        checked_step(ctx, loss_of(model), step=step, limit=1e3)
        optimizer.zero_grad(set_to_none=True)
        loss_of(reference).backward()
        optimizer.step()
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
