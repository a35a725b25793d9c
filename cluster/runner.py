"""The local launcher: turns a validated run request into a RunContext, a run directory and metrics.

Every backend ends here, in the process that trains: it pins threads and seeds, plugs the metric
sinks into ctx.log, installs the preemption signal handler behind ctx.should_stop, and records the
code and package versions beside the config, so a run directory is self-describing.

run.json, schema 2 (written at the start, rewritten at the end of every attempt):
  schema        2 (run.json before it had no "schema" key, no "datasets", and a raw sys.argv as "command")
  component, preset, seed, config_hash, overrides   what was run (config.yaml beside it holds the resolved config)
  status        running | completed | failed | preempted (with "error" when not completed)
  started, finished, wall_seconds, resumed (attempts after the first)
  code          {"git_sha", "dirty", "diff_sha256" when dirty}: cluster.provenance.code_version; dirty counts
                tracked source files only (components/, cluster/, pipelines/, pyproject.toml, requirements.lock)
  datasets      {name: {"manifest_sha256", "dvc_md5" where DVC tracks the folder}} for every dataset the config
                reads (cluster.provenance.dataset_digests); {} for a run that reads none
  backend, strategy, world_size, threads, device
  command       the command line, without this machine's absolute paths (cluster.provenance.portable_command)
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from cluster.distributed import DistEnv, barrier, device_for, init_process_group, rendezvous_environment
from cluster.provenance import code_version, dataset_digests, portable_command
from components.core.checkpoint import Checkpointer
from components.core.config import config_hash, config_to_yaml, load_yaml, overrides_to_tree, resolve_config, validate
from components.core.contract import RunContext
from components.core.errors import PaperzooError, Preempted, RunError
from components.core.files import atomic_write_json, atomic_write_text
from components.core.shards import check_dataset
from components.core.strategy import make_strategy
from components.registry import get_component

Sink = Callable[[Mapping[str, float], int | None], None]
RUN_SCHEMA = 2


@dataclass(frozen=True)
class RunRequest:
    slug: str
    preset: str
    config: BaseModel
    seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        return config_hash(self.slug, self.config)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, float]
    status: str


def plan_run(
    slug: str,
    params: Mapping[str, Any],
    *,
    preset: str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    seed: int = 0,
    data_dir: Path = Path("data"),
    check_data: bool = True,
) -> RunRequest:
    """Resolve and validate everything a run needs, before anything is launched or written."""
    component = get_component(slug)
    preset = preset or params.get("preset", "smoke")
    overrides = dict(overrides) if isinstance(overrides, Mapping) else list(overrides)
    cfg = resolve_config(component, preset, params.get(slug), overrides)
    if check_data:
        for name in component.datasets_for(cfg):
            check_dataset(Path(data_dir), name)
    return RunRequest(slug, preset, cfg, seed, overrides_to_tree(overrides))


def environment() -> dict[str, Any]:
    """Versions of paperzoo's direct dependencies (requirements.lock, at the recorded git sha, pins the rest);
    walking every installed distribution instead costs half a second per run."""
    try:
        requirements = metadata.requires("paperzoo") or []
    except metadata.PackageNotFoundError:
        requirements = []
    names = [re.split(r"[ ;<>=!\[~]", line, maxsplit=1)[0] for line in requirements if "extra ==" not in line]
    packages = {}
    for name in names:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "torch_threads": torch.get_num_threads(),
        "packages": packages,
    }


def new_run_dir(run_root: Path, request: RunRequest) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(run_root) / request.slug / f"{stamp}-{request.config_hash}-s{request.seed}"
    candidate, suffix = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}.{suffix}")
        suffix += 1
    return candidate


class JsonlSink:
    def __init__(self, path: Path):
        self.handle = open(path, "a")

    def __call__(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        record = {"step": step, **{key: float(value) for key, value in metrics.items()}}
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class DvcLiveSink:
    """DVCLive's files (metrics, plots) under run_dir/dvclive, so `dvc plots` and VS Code can show them."""

    def __init__(self, directory: Path):
        from dvclive import Live

        self.live = Live(dir=str(directory), save_dvc_exp=False, dvcyaml=False, report=None)

    def __call__(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is not None:
            self.live.step = step
        for key, value in metrics.items():
            self.live.log_metric(key, float(value))  # appends to the plot files; the summary is written at close

    def close(self) -> None:
        self.live.end()  # writes metrics.json (the summary) once, not at every step


def progress_bar(enabled: bool) -> Callable[..., Iterable]:
    def progress(iterable: Iterable, total: int | None = None, desc: str | None = None, initial: int = 0, **_: Any):
        if not enabled:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, mininterval=0.5, dynamic_ncols=True)

    return progress


def interactive() -> bool:
    """A bar on a terminal; quiet in CI, under DVC's captured output, or on a cluster worker."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def pin_determinism(seed: int, threads: int) -> None:
    torch.set_num_threads(threads)  # bit-exact CPU metrics need the same reduction order every run
    if torch.cuda.is_available():  # CPU kernels are deterministic already; the switch costs 1.3 s of imports
        torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StopFlag:
    """SIGTERM/SIGUSR1 (what SLURM sends before preemption) set the flag behind ctx.should_stop."""

    def __init__(self, synchronised: bool = False, device: str = "cpu") -> None:
        self.signalled = False  # written only by the handler: a reduction result must never clear it
        self.agreed = False  # synchronised: some rank was signalled, so every rank stops at the same step
        self.device = device
        self.synchronised = synchronised  # several ranks: stop together, or one waits in a collective forever
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading_is_main():
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def __call__(self) -> bool:
        """Every rank calls this at the same points (components are SPMD), so the reduction lines up."""
        if not self.synchronised:
            return self.signalled
        if not self.agreed:
            flag = torch.tensor([1.0 if self.signalled else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.agreed = bool(flag.item())
        return self.agreed


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def truncate_jsonl(path: Path, before_step: int) -> None:
    """On resume, drop records the resumed run will log again (steps at or after its checkpoint)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line and (json.loads(line).get("step") is None or json.loads(line)["step"] < before_step)
    ]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_run_info(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def is_unfinished_run_of(info: dict[str, Any] | None, request: RunRequest) -> bool:
    """An earlier attempt at this very run (same config and seed) that did not complete: resume it."""
    return (
        info is not None
        and info.get("status") != "completed"
        and info.get("config_hash") == request.config_hash
        and info.get("seed") == request.seed
        and info.get("component") == request.slug
    )


def prepare_work_dir(request: RunRequest, run_dir: Path, replace: bool) -> tuple[Path, bool]:
    """The folder the run writes (a staging sibling when `replace`), and whether it resumes an earlier attempt."""
    work_dir = run_dir.with_name(f".{run_dir.name}.partial") if replace else run_dir
    info = read_run_info(work_dir)
    if is_unfinished_run_of(info, request):
        return work_dir, True
    if replace:
        shutil.rmtree(work_dir, ignore_errors=True)
    elif info is not None and info.get("status") == "completed":
        raise RunError(f"{run_dir} already holds a completed run; start a new run instead of resuming it")
    elif work_dir.exists() and any(work_dir.iterdir()):
        raise RunError(
            f"{run_dir} already holds another run (config {info and info.get('config_hash')}); "
            "choose another run directory"
        )
    return work_dir, False


def execute(
    request: RunRequest,
    run_dir: Path | None = None,
    *,
    run_root: Path = Path("runs"),
    data_dir: Path = Path("data"),
    threads: int = 1,
    sinks: Sequence[Sink] = (),
    checkpoint_every: int = 0,
    show_progress: bool | None = None,
    replace: bool = False,
    strategy: str = "plain",
    strategy_options: Mapping[str, Any] | None = None,
    dist: DistEnv | None = None,
    use_gpu: bool = False,
    backend: str = "local",
) -> RunResult:
    """Run one component in this process (one rank of it, under torchrun or SLURM).

    run_dir=None makes runs/<slug>/<time>-<hash8>-s<seed>. With replace=True (DVC's stable
    runs/dvc/<slug>) the run is written in a staging sibling renamed over run_dir only on success.
    A run_dir (or staging folder) that holds an unfinished run of the same config and seed is resumed
    from its last checkpoint: that is how `--resume`, a SLURM requeue and a retried trial continue.
    """
    component = get_component(request.slug)
    dist = dist or DistEnv()
    if run_dir is None:
        if dist.distributed:
            raise RunError("a distributed run needs an explicit run directory that every rank shares")
        run_dir = new_run_dir(run_root, request)
    run_dir = Path(run_dir)
    device = device_for(dist, use_gpu)
    with rendezvous_environment(dist):
        if dist.distributed or strategy == "deepspeed":
            # Kept for the life of the process: DeepSpeed caches its groups, so a later run here reuses this one.
            init_process_group(dist, device)
        return _execute(
            component,
            request,
            run_dir,
            dist,
            device,
            data_dir=data_dir,
            threads=threads,
            sinks=sinks,
            checkpoint_every=checkpoint_every,
            show_progress=show_progress,
            replace=replace,
            strategy=strategy,
            strategy_options=strategy_options,
            backend=backend,
        )


def _execute(
    component,
    request: RunRequest,
    run_dir: Path,
    dist: DistEnv,
    device: str,
    *,
    data_dir: Path,
    threads: int,
    sinks: Sequence[Sink],
    checkpoint_every: int,
    show_progress: bool | None,
    replace: bool,
    strategy: str,
    strategy_options: Mapping[str, Any] | None,
    backend: str,
) -> RunResult:
    is_main = dist.rank == 0
    work_dir, resuming = (
        prepare_work_dir(request, run_dir, replace)
        if is_main
        else (run_dir.with_name(f".{run_dir.name}.partial") if replace else run_dir, True)
    )

    info: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "component": request.slug,
        "preset": request.preset,
        "seed": request.seed,
        "config_hash": request.config_hash,
        "overrides": dict(request.overrides),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": code_version() if is_main else {},
        "datasets": dataset_digests(Path(data_dir), component.datasets_for(request.config)) if is_main else {},
        "backend": backend,
        "strategy": strategy,
        "world_size": dist.world_size,
        "threads": threads,
        "device": device,
        "command": portable_command(sys.argv),
    }
    if is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        if resuming:
            info["resumed"] = (read_run_info(work_dir) or {}).get("resumed", 0) + 1
        else:
            atomic_write_text(work_dir / "config.yaml", config_to_yaml(request.config))
            atomic_write_json(work_dir / "environment.json", environment())
        atomic_write_json(work_dir / "run.json", info)
    barrier()

    chosen = make_strategy(strategy, device, dict(strategy_options or {}))
    checkpointer = Checkpointer(
        work_dir / "checkpoints", chosen, every=checkpoint_every, rank=dist.rank, barrier=barrier
    )
    all_sinks: list[Sink] = []
    closers: list[Callable[[], None]] = []
    if is_main:
        if resuming:  # drop what the resumed run logs again, and rebuild DVCLive's files from the rest
            truncate_jsonl(work_dir / "metrics.jsonl", checkpointer.latest_step())
            shutil.rmtree(work_dir / "dvclive", ignore_errors=True)
        jsonl = JsonlSink(work_dir / "metrics.jsonl")
        dvclive = DvcLiveSink(work_dir / "dvclive")
        if resuming and (work_dir / "metrics.jsonl").is_file():
            for line in (work_dir / "metrics.jsonl").read_text().splitlines():
                record = json.loads(line)
                step = record.pop("step")
                dvclive(record, step)
        all_sinks = [jsonl, dvclive, *sinks]
        closers = [jsonl.close, dvclive.close]

    def log(metrics: Mapping[str, float], step: int | None = None) -> None:
        for sink in all_sinks:
            sink(metrics, step)

    pin_determinism(request.seed, threads)
    started = time.perf_counter()
    with StopFlag(synchronised=dist.distributed, device=device) as stop:
        ctx = RunContext(
            run_dir=work_dir,
            data_dir=Path(data_dir),
            seed=request.seed,
            device=device,
            rank=dist.rank,
            world_size=dist.world_size,
            strategy=chosen,
            checkpoint=checkpointer,
            log=log,
            should_stop=stop,
            progress=progress_bar(is_main and (interactive() if show_progress is None else show_progress)),
        )
        try:
            metrics = {key: float(value) for key, value in component.run(request.config, ctx).items()}
        except Preempted as err:
            info.update(status="preempted", error=str(err))
            raise
        except BaseException as err:
            info.update(status="failed", error=f"{type(err).__name__}: {err}")
            raise
        else:
            info.update(status="completed")
        finally:
            info.update(
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_seconds=round(time.perf_counter() - started, 3)
            )
            for close in closers:
                close()
            if is_main:
                atomic_write_json(work_dir / "run.json", info)

    if is_main:
        atomic_write_json(work_dir / "metrics.json", metrics)
        if work_dir != run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
            work_dir.rename(run_dir)
    barrier()
    return RunResult(run_dir, metrics, "completed")


def load_request(run_dir: Path) -> RunRequest:
    """The request of an existing run directory (for --resume), validated like a new one."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file() or not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir} is not a run directory (no run.json/config.yaml)")
    info = json.loads(info_path.read_text())
    if info.get("status") == "completed":
        raise RunError(f"{run_dir} already completed; start a new run instead of --resume")
    component = get_component(info["component"])
    cfg = validate(component.Config, load_yaml(run_dir / "config.yaml"), scope=f"{run_dir}/config.yaml")
    return RunRequest(info["component"], info["preset"], cfg, int(info["seed"]), info.get("overrides", {}))


def run_component(
    slug: str,
    params: Mapping[str, Any],
    *,
    preset: str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    seed: int = 0,
    **execute_options: Any,
) -> RunResult:
    request = plan_run(
        slug,
        params,
        preset=preset,
        overrides=overrides,
        seed=seed,
        data_dir=execute_options.get("data_dir", Path("data")),
    )
    return execute(request, **execute_options)


__all__ = ["PaperzooError", "RunRequest", "RunResult", "execute", "load_request", "plan_run", "run_component"]
