"""The `torchrun` backend: each trial as `torchrun --nproc-per-node N -m cluster.launch SPEC.json` on this
machine (gloo on CPU, NCCL on GPU); rank 0 writes the run directory, every rank trains.

torchrun is started through this module (`python -m cluster.backends.torchrun ARGS`: torchrun's own
arguments), which adds one rendezvous backend, `paperzoo-loopback`: torchrun's static rendezvous for one
machine whose agent store listens on 127.0.0.1 only. torchrun's own (static or c10d) listens on every
interface whatever --master-addr says, since TCPStore's server binds :: or 0.0.0.0. The ranks are its
clients and bind gloo/NCCL to loopback (cluster/distributed.py). The port is the one the store binds, so
no other process can take it between choosing and binding.

A profile of one process has no ranks to start or rendezvous to hold, so it skips torchrun: its trials run
one after another in one worker process (the local backend's loop, each trial's output in its own log). The
worker is forked from this process, inheriting the imports already paid here instead of paying a fresh
interpreter, torch and torchrun's agent per trial (seconds, against a smoke trial's fraction of one:
benchmarks/launch.py), when a fork is safe: this process runs no Python thread but the main one (a fork
copies only the calling thread, so a lock another thread held stays locked in the child: a worker forked
from a test process whose Prefect and Ray client threads ran hung on a futex). Otherwise the worker is
spawned (a fresh interpreter, still no agent). A worker that dies mid-trial fails that trial only; the next worker takes the rest. The
worker path needs one thread per trial (libgomp's pool hangs in a fork of a process that used it with more)
and no CUDA here yet; otherwise each trial goes through torchrun.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.distributed import LOOPBACK, is_loopback, loopback_store
from cluster.profiles import Profile

if TYPE_CHECKING:
    from torch.distributed.elastic.rendezvous import RendezvousInfo, RendezvousParameters

    from cluster.launch import LaunchSpec, TrialOutcome

LOOPBACK_RENDEZVOUS = "paperzoo-loopback"


def torchrun_command(spec_file: Path, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cluster.backends.torchrun",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "--rdzv-backend",
        LOOPBACK_RENDEZVOUS,
        "--rdzv-endpoint",
        f"{LOOPBACK}:0",  # port 0: the one the store binds
        "-m",
        "cluster.launch",
        str(spec_file),
    ]


def loopback_rendezvous(params: RendezvousParameters):
    """torchrun's static rendezvous of one node whose store listens on loopback only."""
    from torch.distributed.elastic.rendezvous.static_tcp_rendezvous import StaticTCPRendezvous
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    class LoopbackRendezvous(StaticTCPRendezvous):
        def get_backend(self) -> str:
            return LOOPBACK_RENDEZVOUS

        def next_rendezvous(self) -> RendezvousInfo:
            if self._store is None:
                self._store = loopback_store(
                    self.master_addr,
                    self.master_port,
                    self.world_size,
                    is_master=True,
                    timeout=self.timeout,
                    multi_tenant=True,
                )
                self.master_port = self._store.port  # what the ranks are told
            return super().next_rendezvous()

    if params.max_nodes != 1:
        raise ValueError(f"the {LOOPBACK_RENDEZVOUS} rendezvous is for one machine (--nnodes 1)")
    host, port = parse_rendezvous_endpoint(params.endpoint, default_port=0)
    if not is_loopback(host):
        raise ValueError(f"the {LOOPBACK_RENDEZVOUS} rendezvous listens on loopback, not on {host}")
    timeout = params.get_as_int("timeout", 600)
    return LoopbackRendezvous(host, port, 0, 1, params.run_id, timeout)


def main(argv: list[str] | None = None) -> None:
    """torchrun (torch.distributed.run), with the loopback rendezvous registered."""
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry
    from torch.distributed.run import main as torchrun

    rendezvous_handler_registry.register(LOOPBACK_RENDEZVOUS, loopback_rendezvous)
    torchrun(argv)


def run_trials(
    specs: list[LaunchSpec],
    profile: Profile,
    *,
    workdir: Path,
    metric: str | None = None,
    mode: str = "min",
    ledger: Any = None,
) -> list[TrialOutcome]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if forkable(profile):
        return run_in_forked_worker(specs, profile, workdir, ledger)
    return run_through_torchrun(specs, profile, workdir, ledger)


def forkable(profile: Profile) -> bool:
    """Whether a one-process profile's trials can run in one worker process (see the module's note)."""
    import torch

    return (
        profile.world_size == 1
        and profile.threads == 1
        and not torch.cuda.is_initialized()
        and "fork" in multiprocessing.get_all_start_methods()
    )


def fork_is_safe() -> bool:
    """Whether this process runs no Python thread but the main one, so a fork of it holds no lock (logging's,
    an import's, a client's event loop's) that no thread will release. The native thread torch starts at import
    stays: forking beside it is what benchmarks/launch.py and the tests measure."""
    import threading

    return threading.active_count() == 1


class Relay:
    """The ledger as the forked worker sees it: its reports go back through the pipe, and the driver writes
    them (one writer of the ledger's records)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def event(self, run_dir: str, state: str, **fields: Any) -> None:
        self.send("event", run_dir, state, fields)

    def send(self, *message: Any) -> None:
        try:
            self.connection.send(message)
        except OSError:  # the driver is gone (killed, detached): the run directories still say everything
            pass


def worker_main(specs: Sequence[LaunchSpec], logs: Sequence[Path], threads: int, connection: Any) -> None:
    """The worker (forked or spawned): the local backend's loop over `specs`, as a world of one."""
    from cluster.backends.local import run_one_after_another
    from cluster.distributed import DistEnv

    os.environ["OMP_NUM_THREADS"] = str(threads)  # for what the trials start; torch's own is set per run
    relay = Relay(connection)
    run_one_after_another(
        specs,
        relay,
        trial_log=lambda position: logs[position],
        dist=DistEnv(),  # the driver's own rank variables (a SLURM step, torchrun) are not this trial's
        on_outcome=lambda position, outcome: relay.send("outcome", position, outcome),
    )


def run_in_forked_worker(specs: list[LaunchSpec], profile: Profile, workdir: Path, ledger: Any) -> list[TrialOutcome]:
    from cluster.launch import TrialOutcome, outcome_from_run_dir
    from cluster.states import State, notify

    context = multiprocessing.get_context("fork" if fork_is_safe() else "spawn")
    outcomes: dict[int, TrialOutcome] = {}
    remaining = list(range(len(specs)))
    while remaining:
        receiver, sender = context.Pipe(duplex=False)
        logs = [workdir / f"spec-{index:03d}.log" for index in remaining]
        worker = context.Process(
            target=worker_main, args=([specs[i] for i in remaining], logs, profile.threads, sender), daemon=False
        )
        worker.start()
        sender.close()  # so that recv() sees EOF when the worker ends
        while True:
            try:
                kind, *message = receiver.recv()
            except EOFError:
                break
            if kind == "event":
                run_dir, state, fields = message
                notify(ledger, run_dir, state, **fields)
            else:  # "outcome": (position in this worker's list, outcome)
                index = remaining[message[0]]
                outcomes[index] = dataclasses.replace(message[1], spec=specs[index])
        worker.join()
        receiver.close()
        lost = [index for index in remaining if index not in outcomes]
        if lost:  # the worker died during trial lost[0] (a crash, SIGKILL): that trial fails, a new worker goes on
            index = lost[0]
            outcome = outcome_from_run_dir(specs[index])
            if not outcome.recorded:
                error = f"the trial's worker process {worker.pid} exited {worker.exitcode}"
                outcome = TrialOutcome(specs[index], State.FAILED, outcome.metrics, error, recorded=False)
            print(f"  {outcome.status}: {outcome.error}", flush=True)
            notify(ledger, specs[index].run_dir, outcome.status, error=outcome.error, metrics=outcome.metrics)
            outcomes[index] = outcome
        remaining = [index for index in remaining if index not in outcomes]
    return [outcomes[index] for index in range(len(specs))]


def run_through_torchrun(specs: list[LaunchSpec], profile: Profile, workdir: Path, ledger: Any) -> list[TrialOutcome]:
    from cluster.launch import TrialOutcome, outcome_from_run_dir  # here: torchrun's agent runs this module
    from cluster.states import local_job_id, notify

    outcomes = []
    for index, spec in enumerate(specs):
        spec_file = workdir / f"spec-{index:03d}.json"
        spec_file.write_text(spec.to_json())
        print(f"[{index + 1}/{len(specs)}] {Path(spec.run_dir).name} on {profile.processes} processes", flush=True)
        notify(ledger, spec.run_dir, "running", job_id=local_job_id(), logs=[str(spec_file.with_suffix(".log"))])
        done = subprocess.run(
            torchrun_command(spec_file, profile.processes),
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(profile.threads)},
        )
        spec_file.with_suffix(".log").write_text(done.stdout + done.stderr)
        outcome = outcome_from_run_dir(spec)
        if done.returncode != 0 and not outcome.recorded:  # no rank wrote its verdict: torchrun's own error says why
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            outcome = TrialOutcome(spec, "failed", {}, f"torchrun exited {done.returncode}: {tail[0]}")
        if outcome.status != "completed":
            print(f"  {outcome.status}: {outcome.error}", flush=True)
        notify(ledger, spec.run_dir, outcome.status, error=outcome.error, metrics=outcome.metrics)
        outcomes.append(outcome)
    return outcomes


if __name__ == "__main__":
    main()
