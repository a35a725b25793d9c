"""One optimizer step's bookkeeping, shared by every training loop: the logged loss, the divergence check,
then backward and step. A diverged run stops with a one-line RunError before its gradients touch the model."""

from __future__ import annotations

import math

import torch

from components.core.contract import RunContext
from components.core.errors import RunError


def raise_if_diverged(
    value: float,
    *,
    step: int,
    limit: float,
    lr: float | None = None,  # None where the loop has no single learning rate to name
    hint: str = "lower lr",  # the usual fix; components name theirs
    what: str = "loss",  # what diverged, e.g. "teacher loss"
    context: str = "",  # where, after the step, e.g. "of width 64"
) -> None:
    """RunError naming the step when `value` is not finite or above `limit` (the config's divergence_limit)."""
    if math.isfinite(value) and value <= limit:
        return
    where = f"step {step} {context}" if context else f"step {step}"
    numbers = f"loss {value:.4g}" if lr is None else f"loss {value:.4g}, lr {lr:.4g}"
    raise RunError(f"{what} diverged at {where} ({numbers}): {hint}")


def checked_backward(ctx: RunContext, loss: torch.Tensor, **check) -> float:
    """The global batch's loss (the mean across ranks, the same float on every rank), checked before backward.

    For loops that read or clip the gradients before the step; `check` is raise_if_diverged's keywords."""
    value = ctx.strategy.mean_across_ranks(loss.detach()).item()
    raise_if_diverged(value, **check)
    ctx.strategy.backward(loss)
    return value


def checked_step(ctx: RunContext, loss: torch.Tensor, **check) -> float:
    """checked_backward, then the strategy's step (optimizer step, zeroed gradients, schedule)."""
    value = checked_backward(ctx, loss, **check)
    ctx.strategy.step()
    return value


def evaluation_due(done: int, budget: int, every: int, evaluations: int) -> bool:
    """After optimizer step `done` (1-based) of `budget`: is the validation metric due? Every `every` steps (the
    config's own eval_every, 0: never) or at the points k * budget // evaluations, k = 1 .. evaluations - 1, that
    a sweep asked for through ctx.evaluations (the final metrics are the last of its `evaluations` reports), so a
    scheduler can rank trials mid-run. Never at the budget's end itself, where the final metrics are logged."""
    if done >= budget:
        return False
    if every and done % every == 0:
        return True
    point = -(-done * evaluations // budget)  # the k whose point this step would be
    return 0 < point < evaluations and point * budget // evaluations == done
