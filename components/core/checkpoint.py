"""Checkpoints for resume after preemption: model, optimizer and schedule (through the strategy, so
sharded ZeRO state works too), plus the data position, the step and every RNG state.

Each checkpoint is written to a temporary folder and renamed, so a kill mid-save never leaves a
checkpoint that looks complete; `restore` takes the newest complete one.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.core.strategy import Strategy

PREFIX = "step_"


def rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointer:
    """Every rank calls save/restore (a sharded strategy writes one file per rank); rank 0 renames."""

    def __init__(
        self,
        directory: Path,
        strategy: Strategy,
        every: int = 0,
        keep: int = 2,
        rank: int = 0,
        barrier: Callable[[], None] = lambda: None,
    ):
        self.directory = Path(directory)
        self.strategy = strategy
        self.every = every  # 0: only when the run asks (e.g. on preemption)
        self.keep = keep  # the newest two: one can be mid-write when the job is killed
        self.rank = rank
        self.barrier = barrier

    def due(self, step: int) -> bool:
        return self.every > 0 and step > 0 and step % self.every == 0

    def latest(self) -> Path | None:
        if not self.directory.is_dir():
            return None
        done = sorted(p for p in self.directory.glob(f"{PREFIX}*") if (p / "progress.pt").is_file())
        return done[-1] if done else None

    def latest_step(self) -> int:
        latest = self.latest()
        return torch.load(latest / "progress.pt", weights_only=False)["step"] if latest else 0

    def save(self, step: int, state: dict[str, Any] | None = None) -> Path:
        """Save after `step` optimizer steps; `state` holds the data position and anything else to resume."""
        final = self.directory / f"{PREFIX}{step:09d}"
        tmp = self.directory / f".tmp-{PREFIX}{step:09d}"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.barrier()
        self.strategy.save(tmp)
        torch.save(rng_states(), tmp / f"rng-rank{self.rank}.pt")
        self.barrier()
        if self.rank == 0:
            torch.save({"step": step, "state": state or {}}, tmp / "progress.pt")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in sorted(self.directory.glob(f"{PREFIX}*"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.barrier()
        return final

    def restore(self) -> dict[str, Any] | None:
        """Load the newest checkpoint into the prepared strategy; returns {"step": n, **state} or None."""
        latest = self.latest()
        if latest is None:
            return None
        self.strategy.load(latest)
        rng = latest / f"rng-rank{self.rank}.pt"
        if rng.is_file():  # absent when the world size changed: the data order still resumes exactly
            set_rng_states(torch.load(rng, weights_only=False))
        progress = torch.load(latest / "progress.pt", weights_only=False)
        return {"step": progress["step"], **progress["state"]}
