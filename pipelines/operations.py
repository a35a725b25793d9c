"""The operations every entry point shares: the CLI verbs, DVC's stages (which call the CLI) and the
Prefect flows all call these functions, so a run is the same run however it was started."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.core.config import deep_merge, overrides_to_tree
from components.core.errors import ConfigError, did_you_mean
from pipelines.params import check_sweep_trials, dataset_specs, load_params


def check_writable(path: Path, option: str) -> None:
    """That files can be created under `path` (or, while it does not exist yet, in its nearest existing parent):
    a temporary file is created there and removed at once. A read-only or missing root is a one-line ConfigError
    naming the path and the option that chooses it, before anything runs or is written."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is not a directory")
    try:
        handle, name = tempfile.mkstemp(prefix=".paperzoo-write-check-", dir=existing)
        os.close(handle)
        os.unlink(name)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{option} {path} is not writable ({reason} in {existing}); choose a writable folder with {option}"
        ) from None


def prepare_dataset(
    name: str,
    options: Iterable[str] | Mapping[str, Any] = (),
    *,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
) -> Path:
    """Prepare dataset `name` ('images/digits') as params.yaml's datasets section describes, plus options."""
    from pipelines.datasets import prepare

    known = dataset_specs(load_params(params_file))
    spec = deep_merge(known.get(name, {}), overrides_to_tree(options))
    if "source" not in spec:
        raise ConfigError(
            f"dataset '{name}' is not in {params_file} datasets{did_you_mean(name, known)}; "
            f"add it there or pass --set source=..."
        )
    check_writable(Path(data_dir), "--data-dir")
    return prepare(name, spec, Path(data_dir))


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    metrics: dict[str, float]


def run_component(
    slug: str | None,
    *,
    preset: str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    seed: int = 0,
    backend: str = "local",
    profile: str | Path | None = None,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
    run_root: Path = Path("runs"),
    out: Path | None = None,
    resume: Path | None = None,
    checkpoint_every: int = 0,
) -> RunOutcome:
    """Validate everything, then run one component on a backend; `out` is a fixed directory replaced only
    on success (DVC's stages), `resume` continues an unfinished run directory."""
    from cluster.backends import get_backend
    from cluster.launch import LaunchSpec
    from cluster.profiles import load_profile
    from cluster.runner import execute, load_request, new_run_dir, plan_run

    chosen = load_profile(profile)
    if resume is not None:
        if slug or overrides or preset or out:
            raise ConfigError("--resume takes the run's own component, preset and config; drop the other arguments")
        request, run_dir = load_request(resume), Path(resume)
    else:
        if not slug:
            raise ConfigError("name a component to run, e.g. `paperzoo run uba` (see `paperzoo list`)")
        request = plan_run(
            slug, load_params(params_file), preset=preset, overrides=overrides, seed=seed, data_dir=data_dir
        )
        run_dir = Path(out) if out else new_run_dir(run_root, request)
    if resume is not None:
        check_writable(run_dir, "--resume")
    else:
        check_writable(Path(out) if out else Path(run_root), "--out" if out else "--run-root")
    replace = out is not None
    if backend == "local" and chosen.world_size == 1:  # in this process, with a progress bar on a terminal
        result = execute(
            request,
            run_dir,
            data_dir=data_dir,
            threads=chosen.threads,
            replace=replace,
            checkpoint_every=checkpoint_every,
            strategy=chosen.strategy,
            strategy_options=chosen.strategy_options(),
            use_gpu=chosen.gpus_per_node > 0,
        )
        return RunOutcome(result.run_dir, result.metrics)
    spec = LaunchSpec.from_request(request, run_dir, data_dir, chosen, checkpoint_every, replace, backend)
    (outcome,) = get_backend(backend)([spec], chosen, workdir=Path(spec.run_dir).parent / ".launch")
    if outcome.status != "completed":  # the job failed on the cluster (a lost node, a killed job): worth a retry
        from cluster.runner import RunFailed

        raise RunFailed(outcome.error or f"see {spec.run_dir}", spec.run_dir, outcome.status, retryable=True)
    return RunOutcome(Path(spec.run_dir), outcome.metrics)


def run_named_sweep(
    name: str,
    *,
    backend: str = "local",
    profile: str | Path | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seeds: list[int] | None = None,
    preset: str | None = None,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
    run_root: Path = Path("runs"),
    checkpoint_every: int = 0,
    rerun: bool = False,
    directory: Path | None = None,
):
    from cluster.profiles import load_profile
    from pipelines.sweep import run_sweep

    params = load_params(params_file)
    chosen = load_profile(profile)
    check_sweep_trials(name, params, preset=preset, grid=grid, seeds=seeds, source=str(params_file))
    check_writable(Path(run_root), "--run-root")
    return run_sweep(
        name,
        params,
        backend=backend,
        profile=chosen,
        grid=grid,
        seeds=seeds,
        preset=preset,
        run_root=run_root,
        data_dir=data_dir,
        checkpoint_every=checkpoint_every,
        rerun=rerun,
        directory=directory,
    )


def check_sweep(
    name: str,
    *,
    profile: str | Path | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seeds: list[int] | None = None,
    preset: str | None = None,
    params_file: Path = Path("params.yaml"),
    run_root: Path = Path("runs"),
) -> int:
    """Everything `paperzoo sweep --detach` can check before it returns: the sweep, its trials, the profile and
    the run root (the detached driver validates the data again, as any sweep)."""
    from cluster.profiles import load_profile

    load_profile(profile)
    trials = check_sweep_trials(
        name, load_params(params_file), preset=preset, grid=grid, seeds=seeds, source=str(params_file)
    )
    check_writable(Path(run_root), "--run-root")
    return trials


def start_detached(name: str, cli_args: list[str], run_root: Path, backend: str) -> tuple[Path, int]:
    """Start the sweep's driver as a process of its own session (a logout or a closed terminal does not stop
    it), its output in the sweep folder's driver.log; return the folder and the driver's pid."""
    import subprocess
    import sys

    from pipelines.sweep import new_sweep_dir

    directory = new_sweep_dir(run_root, name)
    directory.mkdir(parents=True)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with open(directory / "driver.log", "ab") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *cli_args, "--into", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    from cluster.states import process_identity
    from components.core.files import atomic_write_json

    identity = {**process_identity(), "pid": driver.pid}
    identity.pop("pid_started", None)  # the driver's, not this process's (run_sweep writes its own at once)
    if not (directory / "sweep.json").is_file():  # the driver writes the real one as soon as its trials are planned
        atomic_write_json(
            directory / "sweep.json",
            {"name": name, "backend": backend, "status": "running", "metric": None, "starting": True, **identity},
        )
    return directory, driver.pid


def write_report(
    *,
    params_file: Path = Path("params.yaml"),
    run_root: Path = Path("runs"),
    out_dir: Path = Path("reports"),
) -> Path:
    """The one report (`paperzoo report`, which DVC's report stage runs too): pipeline, sweeps, one-off runs."""
    from pipelines.report import build_report

    return build_report(load_params(params_file), run_root, out_dir)


def cancel_sweep(directory: Path, wait_s: float = 60.0) -> list[str]:
    """Cancel what of a sweep is queued or running: `scancel` its SLURM jobs, SIGTERM its driver and local
    processes (a running trial checkpoints and ends preempted, the rest are not started), wait for the driver
    to go, record the untouched trials as cancelled in the ledger, and write the summary of what finished."""
    import json
    import signal
    import socket
    import subprocess
    import time

    from cluster.states import RUNNING, State, process_alive
    from components.core.files import atomic_write_json
    from pipelines.ledger import PENDING, QUEUED, Ledger, job_alive, local_pid, slurm_job_id, trial_state
    from pipelines.sweep import collect_sweep

    directory = Path(directory).absolute()
    info_path = directory / "sweep.json"
    if not info_path.is_file():
        raise ConfigError(f"{directory} is not a sweep folder (no sweep.json)")
    info = json.loads(info_path.read_text())
    ledger = Ledger.open(directory)
    live = {index: record for index, record in ledger.records.items() if trial_state(record) in (RUNNING, QUEUED)}
    said: list[str] = []
    slurm_ids = sorted({job for r in live.values() if (job := slurm_job_id(str(r.get("job_id") or "")))})
    if slurm_ids:
        subprocess.run(["scancel", *slurm_ids], capture_output=True, text=True, timeout=60)
        said.append(f"scancel {' '.join(slurm_ids)}")
    pids = {pid for r in live.values() if (pid := local_pid(str(r.get("job_id") or "")))}
    driver = info.get("pid") if info.get("status") == RUNNING and process_alive(info) else None
    if isinstance(driver, int):
        pids.add(driver)
    for pid in sorted(pids):
        try:
            os.kill(pid, signal.SIGTERM)
            said.append(f"SIGTERM to process {pid}")
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s

    def stopping() -> bool:  # scancel and SIGTERM are asynchronous: the jobs checkpoint and record on their way out
        driver_lives = isinstance(driver, int) and process_alive(info)
        return (
            driver_lives
            or any(job_alive(f"slurm:{job}") for job in slurm_ids)
            or any(process_alive({"pid": pid, "host": socket.gethostname()}) for pid in pids if pid != driver)
        )

    while time.monotonic() < deadline and stopping():
        time.sleep(0.5)
    ledger = Ledger.open(directory)  # what the driver recorded on its way out
    for index, record in ledger.records.items():
        if record.get("state") not in (PENDING, QUEUED, RUNNING):
            continue  # ended before the cancel: its record says how
        now = trial_state(record)
        if now in (PENDING, QUEUED, RUNNING, State.CANCELLED):
            ledger.write(index, state=State.CANCELLED, error="cancelled by `paperzoo cancel`")
        else:  # stopped by the cancel mid-run: its run.json says how (preempted, with a checkpoint)
            ledger.write(index, state=now, error="cancelled by `paperzoo cancel` while running")
    info = json.loads(info_path.read_text())
    info.update(cancelled=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    atomic_write_json(info_path, info)
    collect_sweep(directory)
    return said


def gc_candidates(run_root: Path = Path("runs"), reports: Path = Path("reports")) -> list[tuple[Path, str, int]]:
    """(path, why, bytes) of what `paperzoo gc` removes: the checkpoints of completed runs, and run directories
    that no sweep ledger, report or DVC output (runs/dvc, dvc.lock's outs) refers to. Live runs are kept."""
    from cluster.states import State, run_state
    from pipelines.ledger import referenced_run_dirs, run_info

    run_root = Path(run_root).absolute()
    keep = referenced_run_dirs(run_root)
    report_text = ""
    if Path(reports).is_dir():
        report_text = "\n".join(
            p.read_text(errors="replace") for p in Path(reports).rglob("*") if p.suffix in (".md", ".html", ".json")
        )
    lock = Path("dvc.lock")
    lock_text = lock.read_text(errors="replace") if lock.is_file() else ""

    def size(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())

    found: list[tuple[Path, str, int]] = []
    for info_path in sorted(run_root.rglob("run.json")):
        run_dir = info_path.parent
        relative = run_dir.relative_to(run_root)
        if relative.parts[0] == "dvc":
            continue  # DVC's outputs: removing a file from one would make DVC see it modified
        info = run_info(run_dir) or {}
        state = run_state(info, run_dir)
        if state not in (State.COMPLETED, State.FAILED, State.CANCELLED, State.STOPPED):
            continue  # running, or resumable (preempted, interrupted): its checkpoints are its future
        protected = (
            relative.parts[0] in ("sweeps", "lineage")
            or str(run_dir) in keep
            or run_dir.name in report_text
            or str(relative) in lock_text
        )
        if not protected:
            found.append((run_dir, f"{state} run no sweep, report or DVC output refers to", size(run_dir)))
        elif state in (State.COMPLETED, State.STOPPED) and (run_dir / "checkpoints").is_dir():
            found.append((run_dir / "checkpoints", f"checkpoints of a {state} run", size(run_dir / "checkpoints")))
    return found


# --- `paperzoo sweep NAME --estimate` ----------------------------------------------------------------------------

GPU_PEAK_FLOPS = 989e12  # an H100's dense bf16 peak: the reference a GPU profile's estimate divides by
GPU_UTILISATION = 0.3  # the fraction of peak a small research model reaches (stated, not measured)
PROBE_STEPS = 20  # steps timed here for a CPU profile (after the first, which pays for warm-up)
PROBE_SECONDS = 60.0


class EnoughSteps(Exception):
    """Raised from a metrics sink to end the probe run once it has timed enough steps."""


class StepClock:
    """A metrics sink that notes when each optimizer step is logged, and stops the run after `steps`."""

    def __init__(self, steps: int, seconds: float):
        import time

        self.times: dict[int, float] = {}
        self.created = time.perf_counter()
        self.steps, self.deadline = steps, self.created + seconds

    def __call__(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        if step is None or step in self.times:
            return
        self.times[step] = time.perf_counter()
        if len(self.times) > self.steps or time.perf_counter() > self.deadline:
            raise EnoughSteps

    def seconds_per_step(self) -> float | None:
        steps = sorted(self.times)[1:]  # the first logged step carries the start-up
        if len(steps) < 2:
            return None
        return (self.times[steps[-1]] - self.times[steps[0]]) / (steps[-1] - steps[0])

    def start_up_seconds(self) -> float:
        """From the run's start to its first step: imports, data checks, model set-up (paid once per trial)."""
        return min(self.times.values()) - self.created if self.times else 0.0


def step_budget(config: Any) -> int | None:
    for key in ("budget", "max_steps", "total_steps"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def probe_trial(request: Any, data_dir: Path, count_flops: bool) -> tuple[float | None, float | None, int, float]:
    """(seconds per step here, FLOPs per step, steps timed, start-up seconds) from a few steps of one trial in a
    scratch folder."""
    import shutil
    import tempfile

    from cluster.runner import RunFailed, execute

    clock = StepClock(PROBE_STEPS, PROBE_SECONDS)
    scratch = Path(tempfile.mkdtemp(prefix="paperzoo-estimate-"))
    counter = None
    try:
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            counter.__enter__()
        try:
            execute(request, scratch / "run", data_dir=data_dir, sinks=[clock], show_progress=False)
        except RunFailed as err:
            if not isinstance(err.__cause__, EnoughSteps):
                raise
        finally:
            if counter is not None:
                counter.__exit__(None, None, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    steps = max(1, len(clock.times))
    flops = counter.get_total_flops() / steps if counter is not None else None
    return clock.seconds_per_step(), flops, len(clock.times), clock.start_up_seconds()


def concurrent_trials(backend: str, profile: Any, trials: int) -> int:
    """How many trials run at once on the profile's resources."""
    if backend in ("local", "torchrun"):
        return 1
    if backend == "submitit":
        from cluster.backends.submitit_backend import local_parallelism, slurm_available, trials_per_task

        if not slurm_available():
            return local_parallelism(profile)
        return math.ceil(trials / trials_per_task(trials, profile))  # an array whose tasks all fit at once
    per_trial = max(profile.cpus_per_task, profile.threads) * profile.world_size
    return max(1, (os.cpu_count() or 1) // per_trial)


def cold_processes(backend: str, profile: Any, trials: int) -> int:
    """How many fresh interpreters a sweep's trials pay (imports, data checks): local runs every trial in one
    process, Ray in one reused worker per concurrent trial, torchrun one-process trials in one worker (more
    processes: one torchrun per trial), submitit one interpreter per array task."""
    if backend == "local":
        return 1
    if backend == "torchrun":
        from cluster.backends.torchrun import forkable

        return 1 if forkable(profile) else trials
    if backend == "submitit":
        from cluster.backends.submitit_backend import slurm_available

        if not slurm_available():
            return trials  # submitit's local executor: a process per trial
    return min(trials, concurrent_trials(backend, profile, trials))  # SLURM's array tasks, Ray's workers


def estimate_sweep(
    name: str,
    *,
    backend: str = "local",
    profile: str | Path | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seeds: list[int] | None = None,
    preset: str | None = None,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
    run_root: Path = Path("runs"),
) -> str:
    """trials x steps x seconds per step, device-hours and wall time, before anything is submitted. A CPU profile
    times a few steps of the first trial here; a GPU profile counts one step's FLOPs (PyTorch's FLOP counter, on
    this machine's CPU) and divides by GPU_PEAK_FLOPS x GPU_UTILISATION. Saved as the sweep's estimate.json, which
    the next run of the sweep shows beside what it actually cost."""
    import json
    import time

    from cluster.profiles import load_profile
    from cluster.runner import plan_run
    from components.core.files import atomic_write_json
    from pipelines.sweep import expand_sweep

    chosen = load_profile(profile)
    params = load_params(params_file)
    check_sweep_trials(name, params, preset=preset, grid=grid, seeds=seeds, source=str(params_file))
    sweep = params["sweeps"][name]
    trials = expand_sweep(sweep, grid, seeds, name)
    first = trials[0]
    request = plan_run(
        sweep["component"], params, preset=preset, overrides=first.overrides, seed=first.seed, data_dir=data_dir
    )
    budget = step_budget(request.config)
    gpu = chosen.gpus_per_node > 0
    measured, flops, timed, start_up = probe_trial(request, Path(data_dir), count_flops=gpu)
    if gpu:
        per_step = flops / (GPU_PEAK_FLOPS * GPU_UTILISATION * chosen.world_size) if flops else None
        how = (
            f"{flops / 1e9:.3g} GFLOP/step (PyTorch's FLOP counter over {timed} steps) / "
            f"({GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s peak x {GPU_UTILISATION:.0%} utilisation x {chosen.world_size} GPUs)"
            if flops
            else "no FLOPs counted"
        )
    else:
        per_step = measured
        how = f"timed {timed} steps of trial 0 here ({chosen.threads} thread(s))"
    devices = chosen.world_size
    if per_step is None or budget is None:
        lines = [f"sweep {name}: {len(trials)} trials; cannot estimate ({'no step budget' if budget is None else how})"]
        return "\n".join(lines)
    cold_starts = cold_processes(backend, chosen, len(trials))  # each pays the start-up timed here
    parallel = concurrent_trials(backend, chosen, len(trials))
    device_s = (len(trials) * budget * per_step + cold_starts * start_up) * devices
    wall_s = math.ceil(len(trials) / parallel) * budget * per_step + math.ceil(cold_starts / parallel) * start_up
    estimate = {
        "sweep": name,
        "backend": backend,
        "profile": chosen.name,
        "trials": len(trials),
        "steps": budget,
        "seconds_per_step": per_step,
        "flops_per_step": flops if gpu else None,  # what a GPU profile's seconds per step come from
        "start_up_seconds": start_up,
        "device_hours": device_s / 3600,
        "wall_hours": wall_s / 3600,
        "how": how,
        "made": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    folder = Path(run_root) / "sweeps" / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "estimate.json", estimate)
    unit = "GPU" if gpu else "CPU-process"
    return "\n".join(
        [
            f"sweep {name} on {backend}, profile {chosen.name}:",
            f"  {len(trials)} trials x {budget} steps x {per_step:.4g} s/step + {cold_starts} x {start_up:.3g} s "
            f"process start-up ({how})",
            f"  = {device_s / 3600:.3g} {unit}-hours; wall {wall_s / 3600:.3g} h with {parallel} trial(s) at once",
            f"  saved to {folder / 'estimate.json'}: the sweep's summary will show the actual cost beside it",
            json.dumps({k: estimate[k] for k in ("device_hours", "wall_hours")}),
        ]
    )
