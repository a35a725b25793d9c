"""The `submitit` backend: trials as SLURM jobs (one job, or one job array for a sweep) from a profile.

Each trial is one SLURM job of `profile.nodes` x `profile.processes` tasks; every task calls
run_spec(spec), which takes its rank and world size from SLURM's variables (cluster/distributed.py).
Without `sbatch` on this machine the same trials run through submitit's local executor (processes on
this machine, at most as many at a time as the CPUs allow).

Arrays of one-process CPU trials are chunked: an array task runs several trials one after another in one
interpreter, so a trial does not pay a fresh Python, torch and the runner's imports (seconds, against a
smoke trial's fraction of one). The chunk is the smallest that needs no more tasks than the partition has
CPUs for (chunking never takes parallelism away, and a cluster larger than the sweep gets one trial per
task), within the partition's time limit. Every trial keeps its own ledger record, its array task's job
id and its own log file (`<task job id>_trial<k>_log.out` beside the task's logs).

Preemption: the submitted callable is a submitit Checkpointable, so a SLURM time-out or preemption
signal (USR2) requeues the job with the same trial. An external `scontrol requeue` reruns the original
pickle anyway, so the state that matters lives in the run directory: the component checkpoints through
ctx.checkpoint and run_spec resumes an unfinished run of the same config from its last checkpoint. A
task that stops on SIGTERM (requeue, cancel) leaves no submitit result, so the submitter keeps waiting
for the requeued attempt instead of reporting the interrupted one.

Job states: submitit reads them only through sacct. Where sacct is missing or fails (no slurmdbd, as
with cluster/slurm-local), submitit's calls see cluster/slurm/sacct first on PATH, a shim answering
from scontrol and the jobcomp log; a cluster with working accounting keeps its real sacct.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import submitit

from cluster.backends.local import redirected_output
from cluster.environ import temporary_environment
from cluster.launch import LaunchSpec, TrialOutcome, outcome_from_run_dir, record_outcome, run_spec
from cluster.profiles import Profile
from cluster.runner import threading_is_main
from cluster.states import DriverDetached, State, notify
from components.core.errors import Preempted, RunError

ROOT = Path(__file__).resolve().parent.parent.parent
SACCT_SHIM_DIR = ROOT / "cluster" / "slurm"
# submitit counts every preemption as a time-out when the limit is 10 minutes or less (its guaranteed
# walltime is min(0.8 x limit, limit - 10 min)), and a job out of time-outs is not requeued
MIN_TIMEOUT_MIN = 15
FORCED_STATE_CHECK_S = 10  # how often to ask SLURM (sacct) rather than only look for result files
LISTED_SUBMISSIONS = 8  # a larger array is one line on submission: `paperzoo status` lists each trial's job
POLL_S = 0.25  # how often to look for result files: a stat per job, while a second here is a second per sweep


class TrialTask(submitit.helpers.Checkpointable):
    """What every SLURM task of a chunk of trials runs: each trial in turn, in this one interpreter. A failed
    trial does not stop the chunk; the task then ends with the first trial's error (its SLURM state FAILED)."""

    def __call__(self, specs: list[LaunchSpec] | LaunchSpec) -> list[dict[str, float]]:
        specs = [specs] if isinstance(specs, LaunchSpec) else specs  # a job pickled before chunks, requeued
        export_local_ranks()
        requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0
        results: list[dict[str, float]] = []
        errors: list[Exception] = []
        for position, spec in enumerate(specs):
            if requeued and ran_to_the_end(spec):
                results.append({})  # an earlier attempt of this chunk ran it: its run directory says how
                continue
            try:
                with redirected_output(own_log(spec, position, len(specs))):
                    print(f"paperzoo: trial {position + 1} of {len(specs)} in this task: {spec.run_dir}", flush=True)
                    results.append(run_spec(spec).metrics)
            except Preempted as err:
                # SIGTERM from `scontrol requeue`/scancel/preemption: the checkpoint is saved and run.json says
                # "preempted". SystemExit is not an Exception, so submitit writes no result file and the
                # submitter waits for the requeued attempt (or sees the job CANCELLED through sacct).
                print(f"paperzoo: {err}; exiting for the requeue", flush=True)
                raise SystemExit(143) from None
            except Exception as err:  # noqa: BLE001 - recorded in its run directory; the chunk goes on
                print(f"paperzoo: {Path(spec.run_dir).name} failed: {err}", flush=True)
                errors.append(err)
                results.append({})
        if errors:
            raise errors[0]
        return results

    def checkpoint(self, specs: list[LaunchSpec] | LaunchSpec) -> submitit.helpers.DelayedSubmission:
        # the same trials again: their progress is in their run directories, not in this object
        return submitit.helpers.DelayedSubmission(self, specs)


def ran_to_the_end(spec: LaunchSpec) -> bool:
    """Its run.json says completed or failed (not preempted, interrupted, or absent: never started)."""
    outcome = outcome_from_run_dir(spec)
    return outcome.recorded and outcome.status in (State.COMPLETED, State.FAILED)


def trial_log(job_folder: Path, job_id: str, position: int) -> Path:
    """The own log of the trial at `position` in a chunk of several (a chunk of one writes the task's log)."""
    return Path(job_folder) / f"{job_id}_trial{position}_log.out"


def own_log(spec: LaunchSpec, position: int, chunk: int) -> Path | None:
    if chunk == 1:
        return None
    env = submitit.JobEnvironment()
    return trial_log(env.paths.folder, env.job_id, position)


def export_local_ranks() -> None:
    """submitit's local executor sets no SLURM variables: give its tasks torchrun's (RANK, WORLD_SIZE...)."""
    if "SLURM_PROCID" in os.environ or "RANK" in os.environ:
        return
    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@functools.cache
def slurm_available() -> bool:
    return shutil.which("sbatch") is not None


@functools.cache
def sacct_works() -> bool:
    """The real sacct answers (accounting runs); without slurmdbd it exits 1 ("accounting storage is disabled")."""
    exe = shutil.which("sacct")
    if exe is None or Path(exe).resolve().parent == SACCT_SHIM_DIR.resolve():
        return False
    try:
        probe = subprocess.run([exe, "--noheader", "-X", "-o", "JobID", "-j", "1"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def submission_environment(profile: Profile):
    """What submitit's subprocesses (sbatch, sacct, local workers) and the jobs they start should see."""
    updates = {
        "OMP_NUM_THREADS": str(profile.threads),
        # the job imports cluster/ and components/ wherever it starts, installed or not
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if slurm_available() and not sacct_works():
        updates["PATH"] = f"{SACCT_SHIM_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    return temporary_environment(updates)


def slurm_time_minutes(text: str) -> int | None:
    """sinfo's time limit ('infinite', 'D-HH[:MM[:SS]]', 'HH:MM:SS', 'MM:SS', 'MM') in minutes; None: no limit."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if days or len(parts) == 3:  # hours first
        return int(days or 0) * 1440 + parts[0] * 60 + (parts[1] if len(parts) > 1 else 0)
    return parts[0]  # minutes first


def partition_capacity(profile: Profile) -> tuple[int, int | None]:
    """(CPUs in the profile's partition, or the default one; its time limit in minutes or None), from sinfo;
    (0, None) when sinfo does not answer."""
    try:
        listing = subprocess.run(
            ["sinfo", "-h", "-o", "%P|%C|%l"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0, None
    for line in listing.splitlines():
        name, cpus, limit = (line.split("|") + ["", ""])[:3]
        default = name.endswith("*")
        if (profile.partition and name.rstrip("*") == profile.partition) or (not profile.partition and default):
            total = cpus.split("/")[-1]
            try:
                minutes = slurm_time_minutes(limit)
            except ValueError:  # a format this does not know: no chunk is sized by it
                minutes = None
            return (int(total) if total.isdigit() else 0), minutes
    return 0, None


def trials_per_task(count: int, profile: Profile) -> int:
    """How many of `count` trials one array task runs (see the module's note): 1 for trials of several
    processes or GPUs (their tasks are long, and a process group per trial is their own), else the fewest
    per task that fit every task at once in the partition's CPUs, and the time limit (profile.timeout_min
    a trial)."""
    if count <= 1 or profile.world_size > 1 or profile.gpus_per_node:
        return 1
    cpus, limit_min = partition_capacity(profile)
    slots = cpus // max(profile.cpus_per_task, profile.threads)
    if slots <= 0 or slots >= count:
        return 1
    chunk = math.ceil(count / slots)
    if limit_min is not None:
        chunk = min(chunk, max(1, limit_min // max(profile.timeout_min, MIN_TIMEOUT_MIN)))
    return chunk


def make_executor(folder: Path, profile: Profile, name: str, trials: int = 1) -> submitit.AutoExecutor:
    """The executor for tasks of `trials` trials each (the time limit is the profile's, per trial)."""
    cluster = "slurm" if slurm_available() else "local"
    per_trial = max(profile.timeout_min, MIN_TIMEOUT_MIN)
    if per_trial != profile.timeout_min:
        print(
            f"submitit: time limit {per_trial} min instead of {profile.timeout_min} (preemption needs >= "
            f"{MIN_TIMEOUT_MIN} to be requeued rather than counted as a time-out)",
            flush=True,
        )
    timeout = per_trial * trials
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters: dict[str, Any] = {
        "name": name,
        "timeout_min": timeout,
        "nodes": profile.nodes,
        "tasks_per_node": profile.processes,
        "cpus_per_task": max(profile.cpus_per_task, profile.threads),
        "mem_gb": profile.mem_gb,
    }
    if profile.gpus_per_node:
        parameters["gpus_per_node"] = profile.gpus_per_node
    if cluster == "slurm":
        if profile.partition:
            parameters["slurm_partition"] = profile.partition
        if profile.slurm_extra:
            parameters["slurm_additional_parameters"] = dict(profile.slurm_extra)
    executor.update_parameters(**parameters)
    return executor


@contextlib.contextmanager
def explained_submission_errors(profile: Profile) -> Iterator[None]:
    """sbatch's refusal (no controller, an unknown partition, more CPUs than a node has) as one line."""
    try:
        yield
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as err:
        lines = [line.strip() for line in str(err).splitlines() if "error" in line.lower()] or [str(err).strip()]
        raise RunError(
            f"sbatch refused the job: {lines[-1]} (check profile {profile.name}'s partition and "
            "resources; `cluster/slurm-local up` starts a test cluster on this machine)"
        ) from None


def local_parallelism(profile: Profile) -> int:
    """Trials at once on this machine under the local executor (SLURM does its own scheduling)."""
    per_trial = profile.world_size * max(profile.cpus_per_task, profile.threads)
    return max(1, (os.cpu_count() or 1) // per_trial)


def notify_queued(
    ledger: Any, executor: submitit.AutoExecutor, spec: LaunchSpec, job: submitit.Job, position: int = 0, chunk: int = 1
) -> None:
    logs = [str(job.paths.stdout).replace("%t", "0"), str(job.paths.stderr).replace("%t", "0")]
    if chunk > 1:  # the trial's own output first, then its task's (the chunk's) logs
        logs.insert(0, str(trial_log(job.paths.folder, str(job.job_id), position)))
    notify(ledger, spec.run_dir, "queued", job_id=ledger_job_id(executor, job), logs=logs)


def job_error(job: submitit.Job) -> str:
    try:
        error = job.exception()
    except Exception as err:  # noqa: BLE001 - submitit raises what the job raised, or its own errors
        error = err
    if error is None:
        return ""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if not line.startswith(("File ", "^", "~"))), "")
    return f"job {job.job_id} ({job.state}): {last or type(error).__name__}"


def collect(spec: LaunchSpec, job: submitit.Job) -> TrialOutcome:
    """The outcome from the run directory (as every backend), with the job's error where the run left none."""
    outcome = outcome_from_run_dir(spec)
    if outcome.status == State.COMPLETED:
        return outcome
    error = job_error(job)
    if not outcome.recorded:  # the job died without recording an outcome: run.json says what the job did
        return record_outcome(spec, State.FAILED, error or outcome.error)
    if outcome.status == State.PREEMPTED:  # stopped for a requeue that never came: the job was cancelled
        return TrialOutcome(spec, State.FAILED, outcome.metrics, error or outcome.error)
    return TrialOutcome(spec, outcome.status, outcome.metrics, outcome.error or error)


def describe(outcome: TrialOutcome, metric: str | None) -> str:
    if outcome.status != State.COMPLETED:
        return f"{outcome.status}: {outcome.error}"
    value = outcome.metrics.get(metric) if metric else None
    return f"completed ({metric}={value:.6g})" if isinstance(value, float) and math.isfinite(value) else "completed"


def ledger_job_id(executor: submitit.AutoExecutor, job: submitit.Job) -> str:
    return f"slurm:{job.job_id}" if executor.cluster == "slurm" else f"pid:{job.job_id}@{socket.gethostname()}"


class DetachOnTerm:
    """On SLURM, SIGTERM to the driver (a logout, a killed login shell) leaves the jobs running: they are in
    SLURM's hands and the sweep's ledger names them. Ctrl-C still cancels them."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading_is_main()
        self.previous: Any = None

    def __enter__(self) -> DetachOnTerm:
        if self.enabled:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        raise DriverDetached("the driver got SIGTERM")

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            signal.signal(signal.SIGTERM, self.previous)


def run_trials(
    specs: list[LaunchSpec],
    profile: Profile,
    *,
    workdir: Path,
    metric: str | None = None,
    mode: str = "min",
    ledger: Any = None,
) -> list[TrialOutcome]:
    """Submit every spec (a job array when there are several), wait for all, and read their outcomes."""
    if not specs:
        return []
    workdir = Path(workdir).absolute()
    # one folder per submission: a cold-restarted SLURM may hand out a job id again
    folder = workdir / "submitit" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    task = TrialTask()
    outcomes: dict[int, TrialOutcome] = {}
    with submission_environment(profile):
        chunk = trials_per_task(len(specs), profile) if slurm_available() else 1
        executor = make_executor(folder / "%j", profile, name=f"paperzoo-{specs[0].slug}", trials=chunk)
        queue = list(enumerate(specs))
        pending: dict[int, submitit.Job] = {}  # trial index -> its job (a chunk's trials share one)
        if executor.cluster == "slurm":
            chunks = [specs[start : start + chunk] for start in range(0, len(specs), chunk)]
            with explained_submission_errors(profile):
                jobs = [executor.submit(task, chunks[0])] if len(chunks) == 1 else executor.map_array(task, chunks)
            for index, spec in queue:
                job, position = jobs[index // chunk], index % chunk
                pending[index] = job
                notify_queued(ledger, executor, spec, job, position, len(chunks[index // chunk]))
                if len(specs) <= LISTED_SUBMISSIONS:
                    print(f"submitted {Path(spec.run_dir).name} as SLURM job {job.job_id}", flush=True)
            per_task = f", {chunk} trials each" if chunk > 1 else ""
            if len(specs) > LISTED_SUBMISSIONS:
                print(
                    f"submitted {len(specs)} trials as SLURM job array {str(jobs[0].job_id).split('_')[0]} "
                    f"({len(chunks)} tasks{per_task}); `paperzoo status {workdir}` lists each trial's job",
                    flush=True,
                )
            elif chunk > 1:
                print(f"submitit: {len(chunks)} array tasks{per_task}", flush=True)
            queue = []
        limit = local_parallelism(profile)
        last_forced = time.monotonic()
        with DetachOnTerm(executor.cluster == "slurm"):
            try:
                while queue or pending:
                    while queue and len(pending) < limit and executor.cluster != "slurm":
                        index, spec = queue.pop(0)
                        pending[index] = executor.submit(task, [spec])
                        notify_queued(ledger, executor, spec, pending[index])
                        print(f"started {Path(spec.run_dir).name} as local job {pending[index].job_id}", flush=True)
                    force = time.monotonic() - last_forced > FORCED_STATE_CHECK_S
                    if force:
                        last_forced = time.monotonic()
                    for position, (index, job) in enumerate(list(pending.items())):
                        # one forced sacct call refreshes every job: submitit's watcher is shared
                        if job.done(force_check=force and position == 0):
                            del pending[index]
                            outcomes[index] = outcome = collect(specs[index], job)
                            notify(
                                ledger,
                                outcome.spec.run_dir,
                                outcome.status,
                                error=outcome.error,
                                metrics=outcome.metrics,
                            )
                            print(f"job {job.job_id} {describe(outcomes[index], metric)}", flush=True)
                    if pending:
                        time.sleep(POLL_S)
            except DriverDetached:
                print(
                    f"paperzoo: the driver got SIGTERM; {len(pending)} SLURM jobs go on "
                    f"({', '.join(str(job.job_id) for job in pending.values())}); follow them with "
                    f"`paperzoo status {workdir}`, collect with `paperzoo collect {workdir}`",
                    flush=True,
                )
                raise
            except KeyboardInterrupt:
                for job in pending.values():
                    job.cancel(check=False)
                print(f"cancelled {len(pending)} unfinished jobs", flush=True)
                raise
    return [outcomes[index] for index in range(len(specs))]
