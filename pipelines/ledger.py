"""A sweep's ledger on disk: one JSON record per trial, written (atomically) as things happen, so that a
later shell can tell what runs, follow it, cancel it, collect it or resume it after the driver died.

    runs/sweeps/<name>/<time>/ledger/<index>.json
      index, name, overrides, seed       which trial
      key                                its identity (trial_key): config, seed, code+lock digest, data digests
      state                              pending | queued | running | cached | an end state of cluster.states
      origin                             new | cached (an earlier sweep completed it) | resumed | adopted (still running)
      backend, job_id                    "pid:<pid>@<host>" (local, torchrun, ray) or the SLURM job id (submitit)
      attempts                           how many times this sweep started it (a requeue adds one in run.json)
      run_dir, logs                      where it writes; the job's stdout/stderr where the backend has them
      error, metrics, updated

One file per trial (not one file for all) keeps every write O(1) and lets backend callbacks write from any
thread without a read-modify-write of a shared file. The run directory's run.json stays the truth for a
run's own state; the ledger adds what only the driver knows (job ids, log paths, which earlier run a trial
reuses) and what a reader needs when the driver is gone.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from components.core.files import atomic_write_json

LEDGER_DIR = "ledger"
PENDING, QUEUED, CACHED = "pending", "queued", "cached"


class Ledger:
    """The ledger of one sweep folder; records are found by index or by the trial's run directory."""

    def __init__(self, sweep_dir: Path):
        self.folder = Path(sweep_dir) / LEDGER_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records: dict[int, dict[str, Any]] = {}
        self.by_run_dir: dict[str, int] = {}
        self.lock = threading.Lock()
        self.driver_log: str | None = None  # a detached driver's output: where the local trials' lines go

    def __getstate__(self) -> dict[str, Any]:  # Ray Tune pickles its callbacks (the driver keeps the live one)
        return {key: value for key, value in self.__dict__.items() if key != "lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.Lock())

    @classmethod
    def open(cls, sweep_dir: Path) -> Ledger:
        """The ledger of an existing sweep folder, its records loaded (to amend them from another process)."""
        ledger = cls(sweep_dir)
        for record in read_ledger(sweep_dir):
            ledger.records[record["index"]] = record
            if record.get("run_dir"):
                ledger.by_run_dir[str(Path(record["run_dir"]).absolute())] = record["index"]
        return ledger

    def write(self, index: int, **fields: Any) -> dict[str, Any]:
        with self.lock:
            record = self.records.setdefault(index, {"index": index, "attempts": 0})
            record.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            if record.get("run_dir"):
                self.by_run_dir[str(Path(record["run_dir"]).absolute())] = index
            atomic_write_json(self.folder / f"{index:03d}.json", record)
            return dict(record)

    def index_of(self, run_dir: str | Path) -> int | None:
        return self.by_run_dir.get(str(Path(run_dir).absolute()))

    def event(self, run_dir: str | Path, state: str, **fields: Any) -> None:
        """What a backend reports for the trial that writes `run_dir`: queued (with its job id and logs),
        running (one more attempt). Unknown run directories (a spec not from a sweep) are ignored."""
        index = self.index_of(run_dir)
        if index is None:
            return
        if state == "running":
            fields["attempts"] = self.records[index].get("attempts", 0) + 1
        self.write(index, state=state, **fields)


def read_ledger(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every record of a sweep folder's ledger, by index; a record cut short cannot exist (atomic writes)."""
    folder = Path(sweep_dir) / LEDGER_DIR
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda record: record.get("index", 0))


@cache
def code_digest(slug: str) -> str:
    """A digest of what the component's train stage runs: the project files its module and the runner import,
    the other files of its folder, and requirements.lock; exactly what pipelines/lineage.py lists for DVC's
    train stage, so an unrelated commit (docs, another paper) leaves it unchanged. Cached per process."""
    from components.registry import REGISTRY
    from pipelines.lineage import LOCK_FILE, ROOT, RUNNER_MODULE, file_sha256, import_closure, package_resources

    module = REGISTRY[slug].split(":")[0]
    files = [*import_closure((module, RUNNER_MODULE), ROOT), *package_resources(module, ROOT), ROOT / LOCK_FILE]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(ROOT)}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def trial_key(slug: str, config: Mapping[str, Any], seed: int, datasets: Mapping[str, Any]) -> str:
    """A trial's identity: its resolved config, seed, the code+lock digest and its datasets' manifest digests."""
    identity = {
        "component": slug,
        "config": config,
        "seed": seed,
        "code": code_digest(slug),
        "datasets": {name: digest.get("manifest_sha256") for name, digest in sorted(datasets.items())},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


def earlier_records(sweep_root: Path, exclude: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every ledger record of the sweep's earlier folders, by trial key, newest folder first."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not Path(sweep_root).is_dir():
        return found
    for folder in sorted(Path(sweep_root).iterdir(), reverse=True):
        if not folder.is_dir() or (exclude is not None and folder.absolute() == Path(exclude).absolute()):
            continue
        for record in read_ledger(folder):
            if record.get("key") and record.get("run_dir"):
                found.setdefault(record["key"], []).append(record)
    return found


def referenced_run_dirs(run_root: Path) -> set[str]:
    """Run directories that some sweep's ledger or trials.jsonl names (what `paperzoo gc` keeps)."""
    names: set[str] = set()
    for sweep_dir in sweep_dirs(run_root):
        names.update(str(Path(r["run_dir"]).absolute()) for r in read_ledger(sweep_dir) if r.get("run_dir"))
        trials = sweep_dir / "trials.jsonl"
        if trials.is_file():
            for line in trials.read_text().splitlines():
                try:
                    run_dir = json.loads(line).get("run_dir")
                except ValueError:
                    continue
                if run_dir:
                    names.add(str(Path(run_dir).absolute()))
    return names


def sweep_dirs(run_root: Path, names: Iterable[str] = ()) -> list[Path]:
    """Every sweep folder under run_root/sweeps (of the named sweeps only, when given), oldest first."""
    root = Path(run_root) / "sweeps"
    if not root.is_dir():
        return []
    wanted = set(names)
    found = [
        folder
        for sweep in root.iterdir()
        if sweep.is_dir() and (not wanted or sweep.name in wanted)
        for folder in sweep.iterdir()
        if (folder / "sweep.json").is_file()
    ]
    return sorted(found, key=lambda folder: (folder.name, folder.parent.name))


def slurm_job_id(job_id: str) -> str | None:
    return job_id.split(":", 1)[1] if job_id.startswith("slurm:") else None


def local_pid(job_id: str) -> int | None:
    """The pid of a "pid:<pid>@<host>" job on this very host; None for another host or a SLURM job."""
    if not job_id.startswith("pid:"):
        return None
    pid, _, host = job_id[4:].partition("@")
    return int(pid) if pid.isdigit() and host == socket.gethostname() else None


def job_alive(job_id: str) -> bool | None:
    """Whether the backend still has the job (queued or running): squeue for SLURM, the pid for a local
    process; None when it cannot be told from here."""
    slurm = slurm_job_id(job_id or "")
    if slurm is not None:
        import shutil
        import subprocess

        if shutil.which("squeue") is None:
            return None
        try:
            done = subprocess.run(["squeue", "-h", "-j", slurm, "-o", "%T"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.returncode == 0 and bool(done.stdout.strip())
    pid = local_pid(job_id or "")
    if pid is None:
        return None
    from cluster.states import process_alive

    return process_alive({"pid": pid, "host": socket.gethostname()})


def run_info(run_dir: str | Path) -> dict[str, Any] | None:
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir.with_name(f".{run_dir.name}.partial")):
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            return info
    return None


def trial_state(record: Mapping[str, Any]) -> str:
    """A ledger record's state as a reader should take it now: the run directory's run.json where the run
    started (a "running" run whose process or SLURM job is gone is interrupted), else queued while its job
    lives, else what the ledger says."""
    from cluster.states import RUNNING, State, run_state

    job_id = str(record.get("job_id") or "")
    info = run_info(record.get("run_dir") or "")
    if info is None:
        if record.get("state") in (QUEUED, RUNNING):
            return QUEUED if job_alive(job_id) else State.CANCELLED
        return str(record.get("state") or PENDING)
    state = run_state(info, Path(record["run_dir"]))
    if state == RUNNING and slurm_job_id(job_id) and job_alive(job_id) is False:
        return State.INTERRUPTED
    if state in (State.PREEMPTED, RUNNING) and slurm_job_id(job_id) and job_alive(job_id):
        return RUNNING  # preempted and requeued: its job is pending again
    return state


# --- what `paperzoo status` shows -------------------------------------------------------------------------------

STATUS_COLUMNS = ("trial", "state", "step/budget", "last metric", "elapsed", "ETA", "requeues")


def last_records(path: Path, tail_bytes: int = 65536) -> list[dict[str, Any]]:
    """The last metrics.jsonl records (its tail only: a long run's file is large)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()[1 if size > tail_bytes else 0 :]
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def run_budget(run_dir: Path) -> int | None:
    """The run's step budget, where its config names one (budget, steps or max_steps)."""
    import yaml

    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
    except (OSError, ValueError):
        return None
    for key in ("budget", "max_steps", "total_steps"):
        if isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
            return config[key]
    return None


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S%z"))
    except ValueError:
        return None


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status_row(name: str, run_dir: Path, state: str, metric: str | None) -> dict[str, str]:
    """One line of `paperzoo status`: where the run is, from run.json and the tail of metrics.jsonl."""
    from cluster.states import RUNNING

    info = run_info(run_dir) or {}
    records = last_records(Path(run_dir) / "metrics.jsonl")
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    step = max(steps) if steps else None
    budget = run_budget(run_dir)
    last = ""
    for record in reversed(records):
        keys = [metric] if metric and metric in record else [k for k in record if k != "step"]
        if keys:
            last = f"{keys[0]}={record[keys[0]]:.4g}" if isinstance(record[keys[0]], float) else ""
            break
    started = parse_time(info.get("started"))
    if state == RUNNING and started is not None:
        elapsed = time.time() - started
    else:
        elapsed = info.get("wall_seconds")
    eta = None
    if state == RUNNING and step and budget and elapsed:
        eta = elapsed / step * max(budget - step, 0)
    return {
        "trial": name,
        "state": state,
        "step/budget": f"{step if step is not None else '-'}/{budget if budget else '?'}",
        "last metric": last or "-",
        "elapsed": duration(elapsed),
        "ETA": duration(eta),
        "requeues": str(info.get("resumed", 0)),
    }


def status_rows(path: Path) -> tuple[str, list[dict[str, str]]]:
    """(a heading, one row per trial) for a sweep folder, or (heading, one row) for a run directory."""
    from components.core.errors import ConfigError

    path = Path(path).absolute()
    if (path / "sweep.json").is_file():
        sweep = json.loads((path / "sweep.json").read_text())
        records = read_ledger(path)
        rows = [
            status_row(
                r.get("name", str(r.get("index"))), Path(r.get("run_dir", "")), trial_state(r), sweep.get("metric")
            )
            for r in records
        ]
        for row, record in zip(rows, records):
            if record.get("origin") in ("cached", "resumed", "adopted") and row["state"] != "running":
                row["state"] = f"{row['state']} ({record['origin']})"
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"].split()[0]] = counts.get(row["state"].split()[0], 0) + 1
        from cluster.states import process_alive

        driver = "alive" if sweep.get("status") == "running" and process_alive(sweep) else "gone"
        said = ", ".join(f"{n} {state}" for state, n in counts.items())
        heading = (
            f"sweep {sweep['name']} ({sweep.get('component')}, {sweep.get('backend')}): {sweep.get('status')}; "
            f"driver {driver}; {said}"
        )
        return heading, rows
    if (path / "run.json").is_file():
        from cluster.states import run_state

        info = run_info(path) or {}
        return f"run {path.name} ({info.get('component')})", [status_row(path.name, path, run_state(info, path), None)]
    raise ConfigError(f"{path} is neither a sweep folder (sweep.json) nor a run directory (run.json)")


def latest_sweep_dir(run_root: Path) -> Path:
    from components.core.errors import ConfigError

    found = sweep_dirs(run_root)
    if not found:
        raise ConfigError(f"no sweep under {Path(run_root) / 'sweeps'}; start one with `paperzoo sweep NAME`")
    return max(found, key=lambda folder: (folder / "sweep.json").stat().st_mtime)


def format_table(rows: list[dict[str, str]], columns: Iterable[str]) -> str:
    columns = list(columns)
    widths = [max(len(column), *(len(str(row.get(column, ""))) for row in rows)) for column in columns]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


# --- `paperzoo logs` ---------------------------------------------------------------------------------------------


def find_record(target: Path, trial: str | None) -> tuple[dict[str, Any] | None, Path]:
    """The ledger record and run directory that `paperzoo logs TARGET [--trial T]` means: a sweep folder with a
    trial (its index or name, or a unique part of the name), a trial's run directory, or any run directory."""
    from components.core.errors import ConfigError

    target = Path(target).absolute()
    if (target / "sweep.json").is_file():
        records = read_ledger(target)
        if trial is None:
            raise ConfigError(f"{target} is a sweep: name a trial with --trial INDEX_OR_NAME (see `paperzoo status`)")
        matches = [r for r in records if (trial.isdigit() and r.get("index") == int(trial)) or r.get("name") == trial]
        matches = matches or [r for r in records if trial in str(r.get("name", ""))]
        if len(matches) != 1:
            names = ", ".join(str(r.get("name")) for r in (matches or records)[:6])
            raise ConfigError(f"--trial {trial}: {len(matches)} trials of {target.name} match; e.g. {names}")
        return matches[0], Path(matches[0]["run_dir"])
    if not (target / "run.json").is_file():
        raise ConfigError(f"{target} is neither a sweep folder nor a run directory")
    for sweep_dir in [target.parent.parent] if target.parent.name == "trials" else []:
        for record in read_ledger(sweep_dir):
            if Path(record.get("run_dir", "")).absolute() == target:
                return record, target
    return None, target


def log_files(record: Mapping[str, Any] | None, run_dir: Path) -> list[Path]:
    """The trial's job output where the backend keeps it, and the run's own metrics.jsonl and traceback."""
    files = [Path(path) for path in (record or {}).get("logs", [])]
    files += [Path(run_dir) / "metrics.jsonl", Path(run_dir) / "traceback.txt"]
    return files


def follow_logs(record: Mapping[str, Any] | None, run_dir: Path, follow: bool, write: Any, poll_s: float = 1.0) -> None:
    """Print each log file; with `follow`, keep printing what is appended until the trial ends."""
    from cluster.states import RUNNING, run_state

    offsets: dict[Path, int] = {}

    def drain() -> None:
        for path in log_files(record, run_dir):
            try:
                with open(path, "rb") as handle:
                    handle.seek(offsets.get(path, 0))
                    data = handle.read()
            except OSError:
                continue
            if data:
                if path not in offsets:
                    write(f"==> {path} <==\n")
                offsets[path] = offsets.get(path, 0) + len(data)
                write(data.decode(errors="replace"))

    def live() -> bool:
        state = trial_state(record) if record else run_state(run_info(run_dir), run_dir)
        return state in (RUNNING, QUEUED)

    drain()
    while follow and live():
        time.sleep(poll_s)
        drain()
    drain()
