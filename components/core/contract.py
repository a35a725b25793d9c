"""The component contract (docs/architecture.md): what every paper's package exposes, and what a launcher hands it.

A component is a function of (config, data, seed). It never reads the environment, starts a process
group or knows which backend runs it: the launcher translates all of that into a `RunContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from components.core.checkpoint import Checkpointer
    from components.core.strategy import Strategy

PRESETS = ("test", "smoke", "paper")  # test: seconds; smoke: 2 CPU cores, < 60 s; paper: the paper's scale

T = TypeVar("T")


class Component(Protocol):
    name: str
    Config: type[BaseModel]  # pydantic, extra="forbid", frozen; defaults = the paper's values
    presets: Mapping[str, Mapping[str, Any]]  # "test", "smoke", "paper": overrides of the defaults
    datasets: Sequence[str]  # the prepared datasets it can read, e.g. ("images/digits",)

    # Optional: own_defaults = {"lr": fn(cfg), ...}: the component's own number for a field whose None means "the
    # optimizer table's default", so the resolved config (config.yaml, its hash) holds the value the run uses.

    def run(self, cfg: BaseModel, ctx: RunContext) -> dict[str, float]: ...

    def datasets_for(self, cfg: BaseModel) -> Sequence[str]:
        """The datasets this config reads; the launcher checks them before any compute."""
        ...

    def random_step(self, cfg: BaseModel) -> float | None:
        """One optimizer step of cfg's model on random tensors of the right shape (None: nothing trains)."""
        ...


def _no_log(metrics: Mapping[str, float], step: int | None = None) -> None:
    return None


def _plain_iteration(iterable: Iterable[T], **_: Any) -> Iterable[T]:
    return iterable


def _never() -> bool:
    return False


@dataclass
class RunContext:
    """Built by a launcher, never by a component."""

    run_dir: Path  # where the run's artefacts go
    data_dir: Path  # the prepared-data root (data/)
    seed: int = 0
    device: str = "cpu"
    rank: int = 0
    world_size: int = 1
    strategy: Strategy | None = None  # plain, DDP or DeepSpeed: prepare/backward/step/save/load
    checkpoint: Checkpointer | None = None  # save/restore of model, optimizer, schedule, data position, RNG
    log: Callable[..., None] = _no_log  # log(metrics, step): the launcher plugs in JSONL, DVCLive, Tune, ...
    progress: Callable[..., Iterable] = _plain_iteration  # progress(iterable, total=, desc=): a bar on a terminal
    evaluations: int = 0  # a sweep's ask: log the ranked validation metric at this many evenly spaced points of the
    # budget, so a scheduler (ASHA) can compare trials mid-run; reading the model only, so results do not change.
    # 0: the component's own schedule (core.training.evaluation_due)
    should_stop: Callable[[], bool] = _never  # True once the job is being preempted: checkpoint and return. Call it
    # once per step and act on that one answer: across ranks every call is a collective, and a second call may
    # already say True where the first said False (then the step would stop without its checkpoint)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0
