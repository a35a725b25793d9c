"""The local launcher: turns a validated run request into a RunContext, a run directory and metrics.

Every backend ends here, in the process that trains: it pins threads and seeds, plugs the metric
sinks into ctx.log, installs the preemption signal handler behind ctx.should_stop, and records the
code and package versions beside the config, so a run directory is self-describing.

run.json, schema 2 (written at the start, rewritten at the end of every attempt):
  schema        2 (run.json before it had no "schema" key, no "datasets", and a raw sys.argv as "command")
  component, preset, seed, config_hash, overrides   what was run (config.yaml beside it holds the resolved config)
  status        running while the process lives, then one of cluster.states.State: completed | failed |
                preempted | interrupted (Ctrl-C), with "error" when not completed; a reader takes a "running"
                run whose process is gone as interrupted (cluster.states.run_state)
  pid, host, pid_started   the process writing the run (pid_started: its start time, against a recycled pid)
  started, finished, wall_seconds, resumed (attempts after the first)
  code          {"git_sha", "dirty", "diff_sha256" when dirty}: cluster.provenance.code_version; dirty counts
                tracked source files only (components/, cluster/, pipelines/, pyproject.toml, requirements.lock)
  datasets      {name: {"manifest_sha256", "dvc_md5" where DVC tracks the folder}} for every dataset the config
                reads (cluster.provenance.dataset_digests); {} for a run that reads none
  backend, strategy, world_size, threads, device
  command       the command line, without this machine's absolute paths (cluster.provenance.portable_command)
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time
import traceback
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
from cluster.states import ACTIVE_RUNS, RUNNING, State, process_identity, run_state, running_here
from components.core.checkpoint import Checkpointer
from components.core.config import config_hash, config_to_yaml, load_yaml, overrides_to_tree, resolve_config, validate
from components.core.contract import RunContext
from components.core.errors import ConfigError, PaperzooError, Preempted, RunError, is_retryable
from components.core.files import atomic_write_json, atomic_write_text
from components.core.shards import check_dataset, dataset_files
from components.core.strategy import make_strategy
from components.registry import get_component

Sink = Callable[[Mapping[str, float], int | None], None]
RUN_SCHEMA = 2
# Datasets up to this size are hashed before the run starts (a changed byte is exit 2, no run directory); larger
# ones (ImageNet shards) are hashed by the readers as each file is first opened, spread over the first epoch.
START_CHECK_HASH_BYTES = 2 << 30


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


class RunFailed(RunError):
    """A run that started (its run.json exists) and failed; the message is the one line run.json records."""

    def __init__(self, message: str, run_dir: Path | str, status: str = State.FAILED, retryable: bool = False):
        super().__init__(message, retryable=retryable)
        self.run_dir, self.status = Path(run_dir), status

    def __reduce__(self) -> tuple[Any, ...]:  # Ray and submitit pickle a job's error
        return type(self), (str(self), str(self.run_dir), str(self.status), self.retryable)


class RunPreempted(Preempted):
    """A run that checkpointed and stopped on SIGTERM/SIGUSR1; `paperzoo run --resume run_dir` continues it."""

    def __init__(self, message: str, run_dir: Path | str):
        super().__init__(message)
        self.run_dir, self.status = Path(run_dir), State.PREEMPTED

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), str(self.run_dir))


def one_line(err: BaseException) -> str:
    """'ExcType: message' on one line: what run.json records as the error."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:1000] if text else type(err).__name__


def user_message(err: BaseException) -> str:
    """paperzoo's own one-line message as it is; anything else as 'ExcType: message'."""
    return " ".join(str(err).split()) if isinstance(err, PaperzooError) else one_line(err)


def write_error(path: Path | str, err: OSError) -> RunError:
    """An OSError while writing results, as one line that names the file."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on device"
    else:
        reason = err.strerror or str(err)
    return RunError(f"cannot write {path}: {reason}")


def disk_full(err: BaseException) -> bool:
    chain = [err, err.__cause__, err.__context__]
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain)


def write_json(path: Path, data: Any) -> None:
    try:
        atomic_write_json(path, data)
    except OSError as err:
        raise write_error(path, err) from err


def write_run_info(work_dir: Path, info: Mapping[str, Any]) -> None:
    """run.json, atomically; on a full disk, where no new file fits, over the old run.json's own blocks."""
    path = work_dir / "run.json"
    try:
        atomic_write_json(path, info)
    except OSError as err:
        if not (disk_full(err) and overwrite_in_place(path, json.dumps(info, indent=2, sort_keys=True) + "\n")):
            raise write_error(path, err) from err


def overwrite_in_place(path: Path, text: str) -> bool:
    """Rewrite an existing file inside the blocks it already holds (no allocation, so it works on a full
    disk); False, with the file as it was, when the text does not fit or the write fails."""
    data = text.encode()
    try:
        old = path.read_bytes()
        if len(data) > path.stat().st_blocks * 512:
            return False
        with open(path, "r+b", buffering=0) as handle:
            try:
                write_all(handle, data)
                handle.truncate(len(data))
            except OSError:
                handle.seek(0)
                write_all(handle, old)
                handle.truncate(len(old))
                return False
    except OSError:
        return False
    return True


def write_all(handle: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        view = view[written:]


def remove_empty_files(directory: Path) -> None:
    """After a full disk: files that were created but got no byte are casualties, not results."""
    for path in Path(directory).rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                path.unlink()
        except OSError:
            pass


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
    from components.core.errors import ConfigError

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed {seed!r} must be an integer from 0 to 2**32 - 1 (numpy's and torch's seed range)")
    component = get_component(slug)
    preset = preset or params.get("preset", "smoke")
    overrides = dict(overrides) if isinstance(overrides, Mapping) else list(overrides)
    cfg = resolve_config(component, preset, params.get(slug), overrides)
    if check_data:
        for name in component.datasets_for(cfg):
            manifest = check_dataset(Path(data_dir), name, verify=False)
            if sum(int(entry["bytes"]) for entry in dataset_files(manifest)) <= START_CHECK_HASH_BYTES:
                check_dataset(Path(data_dir), name)  # hashed once here; the readers reuse the per-process result
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
    """metrics.jsonl, one record a line, appended as logged; created at the first record. A write that fails
    (a full disk) is cut back to the last whole record and raised as one line naming the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.handle: Any = None

    def __call__(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        record = {"step": step, **{key: float(value) for key, value in metrics.items()}}
        data = (json.dumps(record) + "\n").encode()
        size = None
        try:
            if self.handle is None:
                self.handle = open(self.path, "ab", buffering=0)
            size = self.handle.seek(0, os.SEEK_END)
            write_all(self.handle, data)
        except OSError as err:
            if size:
                os.truncate(self.path, size)  # no half record
            elif size == 0:  # its first record: no file rather than an empty one
                self.close()
                self.path.unlink(missing_ok=True)
            raise write_error(self.path, err) from err

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class DvcLiveSink:
    """DVCLive's files under run_dir/dvclive, so `dvc plots`, `dvc metrics` and VS Code can show them: one
    plots/metrics/<name>.tsv per metric ("step" and the value, a row per log) and metrics.json (the latest value
    of each, nested at "/", and the last step), byte for byte what dvclive.Live(save_dvc_exp=False,
    dvcyaml=False) writes. Written here rather than through dvclive.Live, whose import (pandas, dvc) and git/DVC
    repository lookup cost a second per run and read nothing these files need.

    They are derived from metrics.jsonl (a resumed run rebuilds them from it), so a write that fails (a full
    disk) removes the folder rather than leave a half-written or empty file, and is raised as one line."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.summary: dict[str, Any] = {}
        self.step: int | None = None
        self.open = True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.directory / "plots" / "metrics", ignore_errors=True)  # as Live: a fresh history
            (self.directory / "metrics.json").unlink(missing_ok=True)
        except OSError as err:
            self._fail(err)

    def __call__(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.open:
            return
        if step is not None:
            self.step = step
        try:
            for name, number in metrics.items():
                value: float | str = float(number)
                if math.isnan(value) or math.isinf(value):
                    value = str(value)  # DVCLive's spelling: "nan", "inf"
                self._append(name, value)
                *parents, leaf = os.path.normpath(name).split(os.sep)
                branch = self.summary
                for key in parents:
                    branch = branch.setdefault(key, {})
                branch[leaf] = value
        except OSError as err:
            self._fail(err)

    def _append(self, name: str, value: float | str) -> None:
        path = self.directory / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator=os.linesep)
            if not existed:
                writer.writerow(["step", os.path.basename(name)])
            writer.writerow([self.step or 0, value])

    def close(self) -> None:
        """metrics.json, the summary, once at the end (as Live.end), not at every step."""
        if not self.open:
            return
        self.open = False
        if self.step is not None:
            self.summary["step"] = self.step
        path = self.directory / "metrics.json"
        try:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self.summary, handle, indent=4)
                handle.write("\n")
        except OSError as err:
            self._fail(err, path)

    def _fail(self, err: OSError, path: Path | None = None) -> None:
        self.open = False
        shutil.rmtree(self.directory, ignore_errors=True)
        raise write_error(err.filename or path or self.directory, err) from err


def progress_interval() -> float:
    """Seconds between progress lines where no bar is shown (a SLURM log, Ray, Prefect, `dvc repro`, a
    detached sweep's driver.log): PAPERZOO_PROGRESS_EVERY, 0 for none; 60 by default, none under pytest."""
    text = os.environ.get("PAPERZOO_PROGRESS_EVERY")
    if text is None:
        return 0.0 if "PYTEST_CURRENT_TEST" in os.environ else 60.0
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ConfigError(f"PAPERZOO_PROGRESS_EVERY={text!r}: give seconds between progress lines (0: none)") from None


def progress_lines(
    iterable: Iterable, total: int | None, desc: str | None, initial: int, every_s: float, latest: Mapping[str, float]
) -> Iterable:
    """A line every `every_s` seconds: step/budget, the latest loss, steps/s and the ETA."""
    started = last = time.monotonic()
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last < every_s:
            continue
        last = now
        rate = done / max(now - started, 1e-9)
        step = initial + done
        losses = [key for key in latest if "loss" in key] or list(latest)
        loss = f", {losses[0]} {latest[losses[0]]:.4g}" if losses else ""
        if total:
            eta = (total - step) / rate if rate > 0 else float("inf")
            where = f"step {step}/{total} ({100 * step / total:.0f}%)"
            tail = f", ETA {eta / 60:.1f} min" if math.isfinite(eta) else ""
        else:
            where, tail = f"step {step}", ""
        print(f"{desc or 'progress'}: {where}{loss}, {rate:.3g} steps/s{tail}", flush=True)


def progress_bar(
    enabled: bool, every_s: float = 0.0, latest: Mapping[str, float] | None = None
) -> Callable[..., Iterable]:
    def progress(iterable: Iterable, total: int | None = None, desc: str | None = None, initial: int = 0, **_: Any):
        if not enabled:
            if every_s > 0:
                return progress_lines(iterable, total, desc, initial, every_s, latest if latest is not None else {})
            return iterable
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread (it only retunes miniters): a live thread makes forks unsafe

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
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a record cut short by a kill
        if record.get("step") is None or record["step"] < before_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_run_info(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunError(f"{path} is not readable JSON ({one_line(err)})") from err
    return info if isinstance(info, dict) else None


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
    if running_here(info, work_dir):
        raise RunError(
            f"{run_dir} is being run by process {info['pid']} on this host; wait for it or stop it (kill -TERM "
            f"{info['pid']} checkpoints it)"
        )
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
    evaluations: int = 0,
) -> RunResult:
    """Run one component in this process (one rank of it, under torchrun or SLURM).

    run_dir=None makes runs/<slug>/<time>-<hash8>-s<seed>. With replace=True (DVC's stable
    runs/dvc/<slug>) the run is written in a staging sibling renamed over run_dir only on success.
    A run_dir (or staging folder) that holds an unfinished run of the same config and seed is resumed
    from its last checkpoint: that is how `--resume`, a SLURM requeue and a retried trial continue.
    """
    if checkpoint_every < 0:
        raise ConfigError(
            f"checkpoint_every = {checkpoint_every}: give 0 (checkpoint only when preempted) or a positive number "
            "of optimizer steps"
        )
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
            evaluations=evaluations,
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
    evaluations: int,
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
        "status": RUNNING,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": code_version() if is_main else {},
        "datasets": dataset_digests(Path(data_dir), component.datasets_for(request.config)) if is_main else {},
        "backend": backend,
        "strategy": strategy,
        "world_size": dist.world_size,
        "threads": threads,
        **({"evaluations": evaluations} if evaluations else {}),  # a sweep's reporting interval (ASHA)
        "device": device,
        "command": portable_command(sys.argv),
        **process_identity(),
    }
    active = str(work_dir.absolute())
    ACTIVE_RUNS.add(active)
    try:
        if is_main:
            start_run_dir(request, work_dir, resuming, info)
        barrier()
        metrics = _attempt(
            component,
            request,
            run_dir,
            work_dir,
            resuming,
            info,
            dist,
            device,
            data_dir=data_dir,
            threads=threads,
            sinks=sinks,
            checkpoint_every=checkpoint_every,
            show_progress=show_progress,
            strategy=strategy,
            strategy_options=strategy_options,
            evaluations=evaluations,
        )
    finally:
        ACTIVE_RUNS.discard(active)

    if is_main and work_dir != run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
        work_dir.rename(run_dir)
    barrier()
    return RunResult(run_dir, metrics, State.COMPLETED)


def start_run_dir(request: RunRequest, work_dir: Path, resuming: bool, info: dict[str, Any]) -> None:
    """config.yaml, environment.json and run.json ("running", with this process's pid and host). A write
    that fails leaves what was there before: a new run's folder is removed, a resumed run's files stay."""
    try:
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(work_dir, err) from err
        if resuming:
            info["resumed"] = (read_run_info(work_dir) or {}).get("resumed", 0) + 1
        else:
            try:
                atomic_write_text(work_dir / "config.yaml", config_to_yaml(request.config))
            except OSError as err:
                raise write_error(work_dir / "config.yaml", err) from err
            write_json(work_dir / "environment.json", environment())
        write_json(work_dir / "run.json", info)
    except BaseException:
        if not resuming:
            shutil.rmtree(work_dir, ignore_errors=True)
        raise


def _attempt(
    component,
    request: RunRequest,
    run_dir: Path,
    work_dir: Path,
    resuming: bool,
    info: dict[str, Any],
    dist: DistEnv,
    device: str,
    *,
    data_dir: Path,
    threads: int,
    sinks: Sequence[Sink],
    checkpoint_every: int,
    show_progress: bool | None,
    strategy: str,
    strategy_options: Mapping[str, Any] | None,
    evaluations: int,
) -> dict[str, float]:
    """Everything after run.json says "running", in one try: whatever happens, run.json ends completed,
    failed, preempted or interrupted (Ctrl-C), and the error is one line."""
    is_main = dist.rank == 0
    closers: list[Callable[[], None]] = []
    started = time.perf_counter()
    try:
        chosen = make_strategy(strategy, device, dict(strategy_options or {}))
        checkpointer = Checkpointer(
            work_dir / "checkpoints", chosen, every=checkpoint_every, rank=dist.rank, barrier=barrier
        )
        all_sinks: list[Sink] = []
        if is_main:
            if resuming:  # drop what the resumed run logs again, and rebuild DVCLive's files from the rest
                truncate_jsonl(work_dir / "metrics.jsonl", checkpointer.latest_step())
                shutil.rmtree(work_dir / "dvclive", ignore_errors=True)
            jsonl = JsonlSink(work_dir / "metrics.jsonl")
            closers.append(jsonl.close)
            dvclive = DvcLiveSink(work_dir / "dvclive")
            closers.append(dvclive.close)
            if resuming and (work_dir / "metrics.jsonl").is_file():
                for line in (work_dir / "metrics.jsonl").read_text().splitlines():
                    record = json.loads(line)
                    step = record.pop("step")
                    dvclive(record, step)
            all_sinks = [jsonl, dvclive, *sinks]
        latest: dict[str, float] = {}  # for the progress lines
        all_sinks.append(lambda metrics, step=None: latest.update(metrics))

        def log(metrics: Mapping[str, float], step: int | None = None) -> None:
            for sink in all_sinks:
                sink(metrics, step)

        pin_determinism(request.seed, threads)
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
                evaluations=evaluations,
                progress=progress_bar(
                    is_main and (interactive() if show_progress is None else show_progress),
                    progress_interval() if is_main else 0.0,
                    latest,
                ),
            )
            metrics = {key: float(value) for key, value in component.run(request.config, ctx).items()}
        while closers:  # the sinks' last writes are results too: a failure here fails the run
            closers.pop(0)()
        if is_main:
            write_json(work_dir / "metrics.json", metrics)
        info.update(status=State.COMPLETED)
        info.pop("error", None)
        return metrics
    except Preempted as err:
        info.update(status=State.PREEMPTED, error=str(err))
        raise RunPreempted(str(err), run_dir) from err
    except KeyboardInterrupt:
        info.update(status=State.INTERRUPTED, error="KeyboardInterrupt: stopped by the user (Ctrl-C)")
        raise
    except BaseException as err:
        full = disk_full(err)
        if isinstance(err, OSError) and full:
            err = write_error(err.filename or work_dir, err)
        info.update(status=State.FAILED, error=one_line(err))
        if is_main and full:
            remove_empty_files(work_dir)
        elif is_main and not isinstance(err, PaperzooError | SystemExit):
            save_traceback(work_dir, sys.exc_info())
        if isinstance(err, Exception):
            raise RunFailed(user_message(err), run_dir, retryable=is_retryable(err)) from err
        raise
    finally:
        info.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_seconds=round(time.perf_counter() - started, 3))
        for close in closers:  # left only after a failure, whose own error is the one to report
            try:
                close()
            except Exception:  # noqa: BLE001 - the run already failed
                pass
        if is_main:
            finish_run_info(work_dir, run_dir, info)


def finish_run_info(work_dir: Path, run_dir: Path, info: Mapping[str, Any]) -> None:
    """The final run.json; when even that cannot be written, the run fails naming it (and a reader takes
    the "running" left behind as interrupted once this process is gone)."""
    try:
        write_run_info(work_dir, info)
    except RunError as err:
        raise RunFailed(str(err), run_dir) from err


def save_traceback(work_dir: Path, exc_info: Any) -> None:
    """traceback.txt beside run.json for an error that is not paperzoo's own (a bug to find); best effort."""
    try:
        atomic_write_text(work_dir / "traceback.txt", "".join(traceback.format_exception(*exc_info)))
    except OSError:
        pass


def load_request(run_dir: Path) -> RunRequest:
    """The request of an existing run directory (for --resume), validated like a new one."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file() or not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir} is not a run directory (no run.json/config.yaml)")
    info = read_run_info(run_dir) or {}
    if run_state(info, run_dir) == State.COMPLETED:
        raise RunError(f"{run_dir} already completed; start a new run instead of --resume")
    if running_here(info, run_dir):
        raise RunError(
            f"{run_dir} is still running (process {info['pid']} on this host); wait for it, or stop it with "
            f"kill -TERM {info['pid']} (it checkpoints) and resume then"
        )
    missing = [key for key in ("component", "preset", "seed") if key not in info]
    if missing:
        raise RunError(f"{info_path} lacks {', '.join(missing)}: not a run.json paperzoo wrote")
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


__all__ = [
    "PaperzooError",
    "RunFailed",
    "RunPreempted",
    "RunRequest",
    "RunResult",
    "execute",
    "load_request",
    "plan_run",
    "run_component",
]
