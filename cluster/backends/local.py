"""The `local` backend: trials one after another in this process (profiles with processes > 1 go through
torchrun instead).

A trial that fails, whatever it raised, is recorded in its run directory and the next one starts. SIGTERM
or SIGUSR1 (what SLURM sends before preemption) stops the whole sweep: the running trial checkpoints and
ends preempted, the trials after it are recorded as cancelled, and the sweep writes its summary.

The same loop (run_one_after_another) is what the torchrun backend's one-process worker and a submitit
array task running a chunk of trials run: one interpreter, torch imported once, many trials."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cluster.distributed import DistEnv
from cluster.launch import LaunchSpec, TrialOutcome, outcome_from_run_dir, run_spec
from cluster.profiles import Profile
from cluster.runner import RunFailed, one_line, threading_is_main, user_message
from cluster.states import State, local_job_id, notify
from components.core.errors import ConfigError, Preempted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class SweepStop:
    """Catches SIGTERM/SIGUSR1 between trials (during a trial the run's own handler turns them into a
    checkpoint and Preempted); `reason` says why the sweep stops, '' while it goes on."""

    def __init__(self) -> None:
        self.reason = ""
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SweepStop:
        if threading_is_main():
            for sig in STOP_SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.reason = self.reason or f"the sweep got {signal.Signals(signum).name}"

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def redirected_output(path: Path | None) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so C code and child processes too) appended
    to `path` for the length of one trial: each trial of a shared process keeps its own log."""
    if path is None:
        yield
        return
    streams = sys.stdout, sys.stderr
    for stream in streams:
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        # Python's own streams too, even where they are not fds 1 and 2 (a captured or replaced sys.stdout)
        sys.stdout, sys.stderr = (open(fd, "w", buffering=1, closefd=False, errors="replace") for fd in (1, 2))
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            if stream not in streams:
                stream.close()  # closefd=False: fds 1 and 2 stay open
        sys.stdout, sys.stderr = streams
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def run_one_after_another(
    specs: Sequence[LaunchSpec],
    ledger: Any = None,
    *,
    trial_log: Callable[[int], Path | None] = lambda index: None,
    logs: Sequence[str] = (),
    dist: DistEnv | None = None,
    on_outcome: Callable[[int, TrialOutcome], None] = lambda index, outcome: None,
) -> list[TrialOutcome]:
    """Each spec in this process in turn; `trial_log(i)` is where trial i's output goes (None: where this
    process writes), `logs` the ledger's log paths for a trial without its own, `dist` its ranks (None: from
    the environment), `on_outcome` what to tell as each trial ends."""
    outcomes = []
    with SweepStop() as stop:
        for index, spec in enumerate(specs):
            if stop.reason:
                outcome = TrialOutcome(spec, State.CANCELLED, {}, f"not started: {stop.reason}", recorded=False)
                on_outcome(index, outcome)
                outcomes.append(outcome)
                continue
            print(f"[{index + 1}/{len(specs)}] {Path(spec.run_dir).name}", flush=True)
            log = trial_log(index)
            notify(ledger, spec.run_dir, "running", job_id=local_job_id(), logs=[str(log)] if log else list(logs))
            error = ""
            with redirected_output(log):
                try:
                    run_spec(spec, dist=dist)
                except Preempted as err:  # the run's handler got the signal: the sweep is going away too
                    stop.reason = stop.reason or "the sweep was preempted (SIGTERM/SIGUSR1)"
                    print(f"  preempted: {err}", flush=True)
                except Exception as err:  # noqa: BLE001 - any error fails this trial only, never the sweep
                    error = user_message(err) if isinstance(err, RunFailed) else one_line(err)
                    print(f"  failed: {user_message(err)}", flush=True)
            outcome = outcome_from_run_dir(spec)
            if not outcome.recorded:  # it failed before its run.json, or could not write its end
                outcome = TrialOutcome(spec, State.FAILED, outcome.metrics, error or outcome.error, recorded=False)
            if log and outcome.status != State.COMPLETED:
                print(f"  {outcome.status}: {outcome.error}", flush=True)
            notify(ledger, spec.run_dir, outcome.status, error=outcome.error, metrics=outcome.metrics)
            on_outcome(index, outcome)
            outcomes.append(outcome)
    return outcomes


def run_trials(
    specs: list[LaunchSpec],
    profile: Profile,
    *,
    workdir: Path | None = None,
    metric: str | None = None,
    mode: str = "min",
    ledger: Any = None,
) -> list[TrialOutcome]:
    if profile.world_size > 1:
        raise ConfigError(
            f"profile {profile.name} asks for {profile.world_size} processes: use --backend torchrun "
            "(one machine) or --backend submitit (SLURM)"
        )
    logs = [ledger.driver_log] if ledger is not None and ledger.driver_log else []
    return run_one_after_another(specs, ledger, logs=logs)
