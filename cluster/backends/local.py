"""The `local` backend: trials one after another in this process (profiles with processes > 1 go through
torchrun instead).

A trial that fails, whatever it raised, is recorded in its run directory and the next one starts. SIGTERM
or SIGUSR1 (what SLURM sends before preemption) stops the whole sweep: the running trial checkpoints and
ends preempted, the trials after it are recorded as cancelled, and the sweep writes its summary."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

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
    outcomes = []
    with SweepStop() as stop:
        for index, spec in enumerate(specs):
            if stop.reason:
                outcomes.append(TrialOutcome(spec, State.CANCELLED, {}, f"not started: {stop.reason}", recorded=False))
                continue
            print(f"[{index + 1}/{len(specs)}] {Path(spec.run_dir).name}", flush=True)
            logs = [ledger.driver_log] if ledger is not None and ledger.driver_log else []
            notify(ledger, spec.run_dir, "running", job_id=local_job_id(), logs=logs)
            error = ""
            try:
                run_spec(spec)
            except Preempted as err:  # the run's handler got the signal: the sweep is going away too
                stop.reason = stop.reason or "the sweep was preempted (SIGTERM/SIGUSR1)"
                print(f"  preempted: {err}", flush=True)
            except Exception as err:  # noqa: BLE001 - any error fails this trial only, never the sweep
                error = user_message(err) if isinstance(err, RunFailed) else one_line(err)
                print(f"  failed: {user_message(err)}", flush=True)
            outcome = outcome_from_run_dir(spec)
            if not outcome.recorded:  # it failed before its run.json, or could not write its end
                outcome = TrialOutcome(spec, State.FAILED, outcome.metrics, error or outcome.error, recorded=False)
            notify(ledger, spec.run_dir, outcome.status, error=outcome.error, metrics=outcome.metrics)
            outcomes.append(outcome)
    return outcomes
