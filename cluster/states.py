"""The states a run, a sweep trial and a sweep end in, and how a reader tells a live run from a dead one.

One vocabulary for every record: run.json's "status", TrialOutcome.status, trials.jsonl, sweep.json and
the summary, and the report that reads them.

  completed    ran to the end; its metrics.json is written
  failed       raised (the error is one line: "ExcType: message", or paperzoo's own message)
  preempted    stopped by SIGTERM/SIGUSR1 after checkpointing; `--resume` (or a requeue) continues it
  cancelled    never started: the sweep was stopped (a signal, Ctrl-C) before this trial's turn
  interrupted  its process died without recording an outcome (SIGKILL, a lost node, Ctrl-C mid-step);
               resumable from its last checkpoint
  stopped      cut early by a scheduler (Ray Tune's ASHA): finished as asked, but not comparable

A run is "running" only while its process lives: run.json records the pid, its start time and the host,
and `run_state` reads a "running" run whose process is gone (on this host) as interrupted. A run on
another host cannot be checked from here and stays "running".
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any


class State(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"


RUNNING = "running"  # not an end state: what run.json says while its process lives
OK_STATES = frozenset({State.COMPLETED, State.STOPPED})  # a sweep with only these exits 0

# Run directories executing in this process right now (absolute paths): a "running" run.json written by
# this very process is live only while its run is in here.
ACTIVE_RUNS: set[str] = set()


class DriverDetached(BaseException):
    """A sweep driver stopped by SIGTERM while its trials run as SLURM jobs: the jobs go on, the ledger says
    where, and `paperzoo status` / `paperzoo sweep` (again, to collect and resume) pick them up."""


def local_job_id() -> str:
    """A sweep ledger's job id for a trial run by a process here (local, torchrun, Ray's driver)."""
    return f"pid:{os.getpid()}@{socket.gethostname()}"


def notify(ledger: Any, run_dir: str | Path, state: str, **fields: Any) -> None:
    """A backend's report to the sweep's ledger (pipelines.ledger.Ledger.event), when it runs under one."""
    if ledger is not None:
        ledger.event(run_dir, state, **fields)


def process_identity() -> dict[str, Any]:
    """What run.json records so that a reader can tell whether the run's process still lives."""
    identity: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    started = _start_time(os.getpid())
    if started is not None:
        identity["pid_started"] = started
    return identity


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # noqa: BLE001 - no psutil, no such process, no permission: unknown
        return None


def process_alive(info: Mapping[str, Any], run_dir: Path | None = None) -> bool:
    """False only when run.json's process is known to be gone: same host, and the pid is dead, a zombie,
    another process (recycled pid), or this process with the run no longer executing in it."""
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True  # an older run.json or another machine: cannot tell from here
    if pid == os.getpid():
        return run_dir is None or str(Path(run_dir).absolute()) in ACTIVE_RUNS
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is installed with ray
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        recorded = info.get("pid_started")
        return not isinstance(recorded, (int, float)) or abs(round(process.create_time(), 2) - recorded) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def run_state(info: Mapping[str, Any] | None, run_dir: Path | None = None) -> str:
    """run.json's status as a reader should take it: a "running" run whose process is gone is interrupted."""
    if info is None:
        return State.FAILED
    status = str(info.get("status", RUNNING))
    if status == RUNNING and not process_alive(info, run_dir):
        return State.INTERRUPTED
    return status


def running_here(info: Mapping[str, Any] | None, run_dir: Path | None = None) -> bool:
    """True when run.json says running and its process is alive on this very host (not merely unknown)."""
    return (
        info is not None
        and info.get("status") == RUNNING
        and info.get("host") == socket.gethostname()
        and isinstance(info.get("pid"), int)
        and process_alive(info, run_dir)
    )


def interruption_note(info: Mapping[str, Any]) -> str:
    return (
        f"process {info.get('pid')} on {info.get('host')} ended without recording an outcome (killed?); "
        "`paperzoo run --resume` continues from its last checkpoint"
    )


def sweep_state(states: list[str]) -> State:
    """A sweep's end state from its trials': stopped by a signal (preempted, or cancelled before its
    turn came), else failed if any trial did not finish, else completed."""
    if RUNNING in states:
        return RUNNING  # type: ignore[return-value] - still going: `paperzoo collect` again later
    if State.PREEMPTED in states:
        return State.PREEMPTED
    if State.CANCELLED in states:
        return State.CANCELLED
    if any(state not in OK_STATES for state in states):
        return State.FAILED
    return State.COMPLETED
