"""The `ray` backend: a sweep's trials as one Ray Tune experiment, with ASHA fed by ctx.log.

- Same trials as every backend: the param space is one grid axis over trial indices, so Tune only
  schedules the list of LaunchSpecs the sweep expanded and never samples configs of its own. Each
  trial (function API) looks its spec up and calls `run_spec` in a Ray worker, so the run directory
  is written as by the local backend, and outcomes are read back from it. run_spec pins the torch
  threads (profile.threads) and seeds per trial, so metrics are bit-exact with the local backend on
  CPU; a worker runs its trials one after another (reuse_actors: imports are paid once per worker,
  as the local backend pays them once per sweep).
- ASHA is fed by `ctx.log`: `TuneSink` reports every logged dict that holds the sweep's metric (the
  eval steps and the final metrics), so `training_iteration` counts evaluations. A trial is judged at
  its 2nd, 4th, 8th, ... evaluation (grace period 2: the first one is mostly warm-up noise; reduction
  factor 2: keep the better half, for grids of tens of trials) and is never stopped for its number of
  reports (max_t is huge: the trial's own budget ends it). The sweep's `evaluations` key (RunContext.evaluations)
  sets how many times a trial reports; without it a trial reports once, nothing is stopped early, and the
  backend says so after the fit. Reports only read the model: metrics equal the local backend's either way.
- A trial ASHA stops is ended by Tune from inside its report (SystemExit), which the run records as a
  failure; the trial rewrites its run.json to "stopped" (State.STOPPED, error: why) and metrics.json to
  the last metrics Tune received, and after the fit the backend does the same for a worker that died first.
  A trial that raises (a diverged loss) is "failed" with its one-line error and the others finish
  (max_failures=0; the fit never raises for a failed trial).
- Hermetic local Ray unless an address is given (or RAY_ADDRESS is set): loopback only, no dashboard,
  no usage statistics, token authentication with a per-process token, its temporary folder on a
  short path under /tmp, stopped (every process it started waited for, the folder removed) before
  run_trials returns. A caller may start Ray itself (`local_ray()`, as the tests do to pay its
  start-up once): run_trials then uses that Ray and leaves it running.
- Tune's own files (experiment state, per-trial stdout/stderr, error.txt; not its per-trial result loggers,
  whose metrics the run directories hold) go to `workdir`/tune; on a cluster, Ray is started inside one
  SLURM allocation (cluster/ray-on-slurm.sbatch), the sweep connects with address="auto", and workdir and
  the run directories must be on a filesystem every node shares.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import ray
from ray import tune
from ray._private import ray_constants
from ray._raylet import Config as RayConfig
from ray.tune.result import AUTO_RESULT_KEYS
from ray.tune.schedulers import ASHAScheduler

from cluster.distributed import DistEnv
from cluster.launch import LaunchSpec, TrialOutcome, outcome_from_run_dir, record_outcome, run_info_path, run_spec
from cluster.profiles import Profile
from cluster.states import State, local_job_id, notify
from components.core.errors import ConfigError

INDEX = "trial_index"  # the one axis of the param space: the position of a spec in the sweep's list
ASHA_GRACE_PERIOD = 2  # evaluations before a trial can be stopped: the first one is mostly warm-up noise
ASHA_REDUCTION_FACTOR = 2  # keep the better half at each rung: sweeps here are tens of trials, not thousands
ASHA_MAX_T = 2**20  # never stop a trial for its number of reports; its own budget ends it
OBJECT_STORE_BYTES = 200 * 1024**2  # trials pass specs and metrics only; Ray's default is 30% of the RAM
SHORT_TEMP_ROOT = "/tmp"  # Ray's Unix sockets live under its temp dir, and their paths must stay under ~107 chars
SHUTDOWN_GRACE_S = 10.0
SESSION_TOKEN = secrets.token_hex(32)  # one per driver process: Ray caches the first token it reads
# What Tune adds to every reported dict; the rest of a result is what TuneSink reported.
TUNE_KEYS = {"done", "trial_id", "experiment_tag", "step", "timesteps_since_restore"}


class TuneSink:
    """A ctx.log sink that reports to Tune every logged dict holding the sweep's metric.

    When the scheduler stops the trial, Tune ends it from inside tune.report with SystemExit(0); the
    sink remembers what it reported last, so the trial can record that it was stopped, not failed.
    """

    def __init__(self, metric: str | None):
        self.metric = metric
        self.reports = 0
        self.last: dict[str, float] = {}
        self.stopped = False

    def __call__(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.metric is None or self.metric not in metrics:
            return
        self.last = {key: float(value) for key, value in metrics.items()}
        self.reports += 1
        try:
            tune.report({**self.last, "step": step} if step is not None else dict(self.last))
        except SystemExit:
            self.stopped = True
            raise


def stop_reason(scheduler: str, evaluations: int, metrics: Mapping[str, float], metric: str | None) -> str:
    value = metrics.get(metric) if metric else None
    shown = f", {metric} {value:.4g}" if isinstance(value, float) and math.isfinite(value) else ""
    return f"stopped early by {scheduler.upper()} after {evaluations} evaluations{shown}"


def run_one_trial(config: dict[str, Any], specs: list[LaunchSpec], metric: str | None, scheduler: str) -> None:
    """The Tune trainable: one spec, run in this Ray worker exactly as the local backend runs it."""
    spec = specs[config[INDEX]]
    sink = TuneSink(metric)
    try:
        result = run_spec(spec, sinks=[sink], dist=DistEnv())  # one process per trial
    except SystemExit:
        if sink.stopped:  # the run recorded SystemExit as a failure; say what happened instead
            mark_run(spec, State.STOPPED, stop_reason(scheduler, sink.reports, sink.last, metric), sink.last)
        raise
    if sink.reports == 0:  # no metric to schedule on, or it was never logged: Tune still gets the final metrics
        tune.report(dict(result.metrics))


def trial_name(trial: Any) -> str:
    return f"trial-{trial.config[INDEX]:03d}"


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _children() -> dict[int, Any]:
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            found[child.pid] = (child, child.create_time())
        except psutil.Error:
            pass
    return found


def _reap(started: dict[int, Any]) -> None:
    """Wait for the processes this Ray started, and kill (by pid) any that outlive ray.shutdown()."""
    alive = []
    for process, created in started.values():
        try:
            if process.create_time() == created:  # the same process, not a recycled pid
                alive.append(process)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=SHUTDOWN_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=SHUTDOWN_GRACE_S)


def hermetic_environment() -> dict[str, str]:
    """What a private Ray's processes must find in their environment (they inherit this process's)."""
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray 2.60 listens on every interface; with it, 127.0.0.1
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if "RAY_AUTH_MODE" not in os.environ:
        # Token auth with a token that lives only in this process's environment: Ray's default writes one to
        # ~/.ray/auth_token (world-readable) for every later Ray on the machine to share.
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=SESSION_TOKEN)
    return env


@contextmanager
def local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[str]:
    """A private Ray on this machine for the life of the block; yields its temporary folder.

    Loopback only, no dashboard, no usage statistics, token authentication, its sockets and logs in a
    short temporary folder that is removed afterwards with every process Ray started.
    """
    env = hermetic_environment()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    RayConfig.initialize("")  # Ray read RAY_AUTH_MODE when this module imported it; read it again
    cluster_flag = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # likewise read at import: this driver must also say 127.0.0.1
    temp_dir = tempfile.mkdtemp(prefix="pzray-", dir=SHORT_TEMP_ROOT)
    before = set(_children())
    started: dict[int, Any] = {}
    try:
        ray.init(
            address="local",
            num_cpus=num_cpus or local_cpus(),
            num_gpus=num_gpus,
            include_dashboard=False,
            _temp_dir=temp_dir,
            object_store_memory=OBJECT_STORE_BYTES,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )  # "local": a new Ray even where RAY_ADDRESS names another
        yield temp_dir
    finally:
        started = {pid: entry for pid, entry in _children().items() if pid not in before}
        try:
            ray.shutdown()
        finally:
            _reap(started)
            shutil.rmtree(temp_dir, ignore_errors=True)
            ray_constants.ENABLE_RAY_CLUSTER = cluster_flag
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            RayConfig.initialize("")


@contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[None]:
    """The caller's Ray if one is initialised, a cluster's if an address is given, else a private local one."""
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()  # disconnects this driver; the cluster belongs to the allocation
        return
    with local_ray(num_cpus):
        yield


def trial_resources(profile: Profile) -> dict[str, float]:
    if profile.world_size > 1:
        raise ConfigError(
            f"profile {profile.name} asks for {profile.world_size} processes per trial; the ray backend "
            "runs a trial as one process: use a one-process profile, or --backend submitit for "
            "multi-process trials"
        )
    resources = {"cpu": float(profile.cpus_per_task)}
    if profile.gpus_per_node:
        resources["gpu"] = float(profile.gpus_per_node)
    return resources


def make_scheduler(scheduler: str, metric: str | None, mode: str) -> Any:
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be min or max, not '{mode}'")
    if scheduler not in ("asha", "fifo", "none"):
        raise ConfigError(f"unknown scheduler '{scheduler}' for the ray backend; choose asha, fifo or none")
    if scheduler == "none":  # the sweep declares it: its metric is an end-of-run quantity, ASHA could stop nothing
        print(f"ray: no early stopping: the sweep ranks by {metric}, known only at the end of a run", flush=True)
        return None
    if scheduler == "fifo" or metric is None:  # ASHA needs a metric to rank by; without one every trial runs out
        return None
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        grace_period=ASHA_GRACE_PERIOD,
        reduction_factor=ASHA_REDUCTION_FACTOR,
        max_t=ASHA_MAX_T,
    )


def one_line(error: BaseException | str) -> str:
    """The last line of a (Ray-wrapped) traceback: 'RunError: loss diverged at step 3 ...'."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:500]


def reported_metrics(result_metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in result_metrics.items()
        if key not in AUTO_RESULT_KEYS
        and key not in TUNE_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


mark_run = record_outcome  # what Tune knows and the run could not write itself, recorded in its run directory


def wait_for_worker(result: Any) -> None:
    """A stopped trial's worker may still be finishing its own writes: wait for it when it ran on this host."""
    info = result.metrics or {}
    if info.get("hostname") != socket.gethostname() or not info.get("pid"):
        return
    try:
        psutil.Process(int(info["pid"])).wait(timeout=SHUTDOWN_GRACE_S)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


def settle(spec: LaunchSpec, result: Any, metric: str | None, scheduler: str) -> TrialOutcome:
    """The trial's outcome from its run directory, after recording what only Tune saw (a stop, a dead worker)."""
    outcome = outcome_from_run_dir(spec)
    if outcome.status == State.COMPLETED:
        return outcome
    if result is None:  # Tune has no result for it: never started if it left no run.json
        return outcome if run_info_path(spec) else replace(outcome, status=State.CANCELLED, error="not started by Tune")
    if result.error is not None:
        if not outcome.recorded:  # the worker died outside the run's own error handling
            return mark_run(spec, State.FAILED, one_line(result.error))
        return outcome
    metrics = reported_metrics(result.metrics or {})
    if not metrics or outcome.status == State.STOPPED:
        return outcome
    wait_for_worker(result)
    outcome = outcome_from_run_dir(spec)
    if outcome.status in (State.COMPLETED, State.STOPPED):
        return outcome
    evaluations = int((result.metrics or {}).get("training_iteration", 0))
    return mark_run(spec, State.STOPPED, stop_reason(scheduler, evaluations, metrics, metric), metrics)


def experiment_name(workdir: Path) -> str:
    name, suffix = "tune", 1
    while (workdir / name).exists():
        name, suffix = f"tune-{suffix}", suffix + 1
    return name


def run_trials(
    specs: list[LaunchSpec],
    profile: Profile,
    *,
    workdir: Path,
    metric: str | None = None,
    mode: str = "min",
    scheduler: str = "asha",
    address: str | None = None,
    max_concurrent: int | None = None,
    ledger: Any = None,
) -> list[TrialOutcome]:
    """Run the specs as one Tune experiment and return their outcomes, in the order of `specs`.

    address: a running Ray cluster ("auto" inside ray-on-slurm.sbatch); None falls back to RAY_ADDRESS,
    and without either a private local Ray is started and stopped here. max_concurrent: Tune's
    max_concurrent_trials (None: as many as the CPUs and GPUs allow).
    """
    if not specs:
        return []
    resources = trial_resources(profile)
    asha = make_scheduler(scheduler, metric, mode)
    scheduler_name = scheduler if asha is not None else "fifo"
    address = address or os.environ.get("RAY_ADDRESS") or None
    cpus = local_cpus()
    if not address and resources["cpu"] > cpus and not ray.is_initialized():
        raise ConfigError(
            f"profile {profile.name} asks for {profile.cpus_per_task} CPUs per trial; this machine has {cpus}"
        )
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    absolute = [
        replace(spec, run_dir=str(Path(spec.run_dir).absolute()), data_dir=str(Path(spec.data_dir).absolute()))
        for spec in specs
    ]  # a Tune trial runs in its own working directory

    with ray_session(address, cpus):
        trainable = tune.with_resources(
            tune.with_parameters(run_one_trial, specs=absolute, metric=metric, scheduler=scheduler_name), resources
        )
        tuner = tune.Tuner(
            trainable,
            param_space={INDEX: tune.grid_search(list(range(len(absolute))))},
            tune_config=tune.TuneConfig(
                scheduler=asha,
                max_concurrent_trials=max_concurrent,
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=experiment_name(workdir),
                storage_path=str(workdir),
                verbose=0,
                log_to_file=True,
                sync_config=tune.SyncConfig(sync_artifacts=True),
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=[Progress(absolute, ledger)],
            ),
        )
        with quiet_tune():
            grid = tuner.fit()
        results = {result.config[INDEX]: result for result in grid if result.config and INDEX in result.config}
    if asha is not None:
        say_if_asha_could_not_act(results.values(), metric)

    outcomes = []
    for index, (spec, resolved) in enumerate(zip(specs, absolute)):
        outcome = settle(resolved, results.get(index), metric, scheduler_name)
        if outcome.status != State.COMPLETED:
            print(f"  {Path(spec.run_dir).name} {outcome.status}: {outcome.error}", flush=True)
        outcomes.append(replace(outcome, spec=spec))
    return outcomes


def say_if_asha_could_not_act(results: Any, metric: str | None) -> None:
    """ASHA judges a trial at its 2nd, 4th, ... report: trials that reported the metric only at their end (or once
    more) were never compared mid-run, so say so instead of implying early stopping happened."""
    reports = [result.metrics.get("training_iteration", 0) for result in results if result.metrics]
    if reports and max(reports) <= ASHA_GRACE_PERIOD:
        print(
            f"ray: ASHA could stop nothing: no trial reported {metric} more than {max(reports)} times (its first rung "
            f"is at {ASHA_GRACE_PERIOD}); set the sweep's evaluations in params.yaml",
            flush=True,
        )


@contextmanager
def quiet_tune() -> Iterator[None]:
    """Tune logs a full traceback for every failed trial and, in its new output, a heading that points at the
    temporary folder; the Progress lines and the outcomes' one-line errors say what matters instead. Its own
    per-trial loggers (result.json, progress.csv, TensorBoard events) are off: the run directories hold the
    metrics, and writing three files per report took a third of the driver's CPU time (benchmarks/ray_sweep.py)."""
    logger = logging.getLogger("ray.tune")
    settings = {
        "RAY_AIR_NEW_OUTPUT": "0",  # the classic reporter, silent at verbose=0
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }
    level, saved = logger.level, {name: os.environ.get(name) for name in settings}
    logger.setLevel(logging.CRITICAL)
    os.environ.update(settings)
    try:
        yield
    finally:
        logger.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Progress(tune.Callback):
    """Prints '[k/n] trial' as trials end, like the local backend's progress lines."""

    def __init__(self, specs: list[LaunchSpec], ledger: Any = None) -> None:
        self.names = [Path(spec.run_dir).name for spec in specs]
        self.run_dirs = [spec.run_dir for spec in specs]
        self.ended = 0
        self.ledger = ledger  # the sweep's ledger: a Tune trial's start is recorded there, with Tune's log folder

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logs = [str(Path(trial.local_path))] if getattr(trial, "local_path", None) else []
        notify(self.ledger, self.run_dirs[trial.config[INDEX]], "running", job_id=local_job_id(), logs=logs)

    def _line(self, trial: Any, word: str) -> None:
        self.ended += 1
        print(f"[{self.ended}/{len(self.names)}] {self.names[trial.config[INDEX]]} {word}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "ended")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "failed")
