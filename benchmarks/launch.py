"""The overhead of each launch backend over calling the same trial in-process, measured in the same run.

    python benchmarks/launch.py [--trials 4] [--array-trials 32] [--repeats 3] [--skip-slurm]
                                [--rows local,torchrun,...] [--breakdown]

The trial is uba at its `test` preset (seed 0, params.yaml's section). The reference is `run_spec(spec)`
in this process, after a warm-up run so imports are not counted (best of --repeats). Each backend then
runs the same trial through `get_backend(name)(specs, profile, workdir=...)`, twice: one trial (the
latency a `paperzoo run` sees: process start-up, Ray start and stop, job submission) and --trials
trials (a sweep: fixed costs shared, and concurrency where the backend has it: submitit's local
executor and Ray run as many trials at once as there are CPUs), each after one untimed warm-up call
of the same backend. SLURM (submitit on `sbatch`, when `sinfo` answers) runs one job array of
--array-trials trials instead: chunked as the backend chooses (several trials per array task), and once
more with one trial per task (a fresh interpreter per trial, as before chunking). `torchrun (agent)` is
torchrun's own launcher for a one-process trial, the path the backend now keeps for several processes.
Columns: wall seconds, seconds per trial, that over the reference, the seconds over it, and the peak
resident memory of the processes the backend started (summed over processes, so shared pages count more
than once; the in-process backends start none). `--breakdown` adds where a fresh process's seconds go:
an empty interpreter, `import torch`, the launcher's imports, and one trial in a fresh interpreter.
`--skip-slurm` leaves SLURM out on a cluster other work is using; `--rows` picks rows by key.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

# run as a script from a checkout: make the repository's packages importable without installing them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summary import add_row  # noqa: E402 - benchmarks/summary.py, beside this script

from cluster.backends import get_backend  # noqa: E402
from cluster.launch import LaunchSpec, run_spec  # noqa: E402
from cluster.profiles import Profile  # noqa: E402
from cluster.runner import plan_run  # noqa: E402
from pipelines.datasets import prepare  # noqa: E402
from pipelines.params import load_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class PeakMemory(threading.Thread):
    """Samples every 0.2 s the summed RSS of the descendants of this process started after it began."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.done = threading.Event()
        self.before = {(p.pid, p.create_time()) for p in psutil.Process().children(recursive=True)}

    def run(self) -> None:
        me = psutil.Process()
        own = me.cmdline()
        while not self.done.is_set():
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    # a fork not yet exec'd (subprocess.run of git) shows this process's pages, not its own
                    if (child.pid, child.create_time()) not in self.before and child.cmdline() != own:
                        total += child.memory_info().rss
            self.peak = max(self.peak, total)
            self.done.wait(0.2)


@contextlib.contextmanager
def measured(memory: bool = True) -> Iterator[dict[str, float | None]]:
    """Wall time, and the peak memory of the processes started meanwhile unless `memory` is off (the sampler
    is a thread: with it running, the torchrun backend spawns its worker instead of forking this process)."""
    sample = PeakMemory() if memory else None
    result: dict[str, float | None] = {"peak_mb": None}
    if sample:
        sample.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start
        if sample:
            sample.done.set()
            sample.join()
            result["peak_mb"] = sample.peak / 2**20


def slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@contextlib.contextmanager
def submitit_local() -> Iterator[None]:
    """submitit's local executor even where sbatch is installed."""
    from cluster.backends import submitit_backend

    original = submitit_backend.slurm_available
    submitit_backend.slurm_available = lambda: False
    try:
        yield
    finally:
        submitit_backend.slurm_available = original


ROWS = ("local", "torchrun", "torchrun-agent", "submitit-local", "ray", "slurm", "slurm-unchunked")


@contextlib.contextmanager
def one_trial_per_task() -> Iterator[None]:
    """submitit on SLURM without chunks: every array task a fresh interpreter for one trial."""
    from cluster.backends import submitit_backend

    original = submitit_backend.trials_per_task
    submitit_backend.trials_per_task = lambda count, profile: 1
    try:
        yield
    finally:
        submitit_backend.trials_per_task = original


def torchrun_agent(specs: list[LaunchSpec], profile: Profile, *, workdir: Path, **_: object) -> list:
    """A one-process trial through torchrun's agent (what the backend did before it forked a worker)."""
    from cluster.backends.torchrun import run_through_torchrun

    Path(workdir).mkdir(parents=True, exist_ok=True)
    return run_through_torchrun(specs, profile, Path(workdir), None)


def fresh_process_rows(spec_file: Path, repeats: int) -> list[tuple[str, float]]:
    """Best-of-`repeats` seconds of what a fresh worker process pays, one step at a time."""
    import json
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    spec = json.loads(spec_file.read_text())
    steps = {
        "fresh python: empty": [sys.executable, "-c", "pass"],
        "fresh python: import torch": [sys.executable, "-c", "import torch"],
        "fresh python: import cluster.launch": [sys.executable, "-c", "import cluster.launch"],
        "fresh python: one trial": [sys.executable, "-m", "cluster.launch", "SPEC"],
    }
    best: dict[str, float] = {}
    for repeat in range(repeats):
        for label, command in steps.items():
            if "SPEC" in command:
                spec["run_dir"] = str(spec_file.parent / f"fresh-{repeat}")
                spec_file.write_text(json.dumps(spec))
                command = [*command[:-1], str(spec_file)]
            start = time.perf_counter()
            subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
            best[label] = min(best.get(label, math.inf), time.perf_counter() - start)
    return list(best.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials in the sweep-sized measurement")
    parser.add_argument("--array-trials", type=int, default=32, help="trials in the SLURM job array")
    parser.add_argument("--repeats", type=int, default=3, help="in-process reference: best of this many")
    parser.add_argument("--skip-slurm", action="store_true", help="leave SLURM out even when sinfo answers")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"which rows, of {', '.join(ROWS)}")
    parser.add_argument("--breakdown", action="store_true", help="add a fresh process's start-up, step by step")
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    if wanted - set(ROWS):
        parser.error(f"--rows: unknown {', '.join(sorted(wanted - set(ROWS)))}; choose from {', '.join(ROWS)}")

    params = load_params(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory(prefix="pzlaunch-") as tmp:
        root = Path(tmp)
        data = root / "data"
        prepare("images/digits", dict(params["datasets"]["images/digits"]), data)
        request = plan_run("uba", params, preset="test", seed=0, data_dir=data)
        counter = iter(range(10**6))
        profile = Profile(name="bench")

        def specs(count: int, backend: str) -> list[LaunchSpec]:
            return [
                LaunchSpec.from_request(
                    request, root / "runs" / f"{backend}-{next(counter):04d}", data, profile, backend=backend
                )
                for _ in range(count)
            ]

        run_spec(specs(1, "direct")[0])  # warm-up: imports and first-call costs are not the reference's
        direct = []
        for _ in range(args.repeats):
            with measured() as m:
                run_spec(specs(1, "direct")[0])
            direct.append(m["seconds"])
        reference = min(direct)
        rows: list[tuple[str, int, float | None, float | None, str]] = [
            ("direct run_spec (in-process)", 1, reference, 0.0, f"reference, best of {args.repeats}")
        ]

        slurm = not args.skip_slurm and slurm_up()
        # (key, label, backend, context, trial counts)
        candidates: list[tuple[str, str, Callable, Callable[[], contextlib.AbstractContextManager], tuple]] = [
            ("local", "local", get_backend("local"), contextlib.nullcontext, (1, args.trials)),
            ("torchrun", "torchrun (1 process)", get_backend("torchrun"), contextlib.nullcontext, (1, args.trials)),
            ("torchrun-agent", "torchrun (agent, 1 process)", torchrun_agent, contextlib.nullcontext, (1,)),
            ("submitit-local", "submitit (local executor)", get_backend("submitit"), submitit_local, (1, args.trials)),
            ("ray", "ray (Ray Tune, own local Ray)", get_backend("ray"), contextlib.nullcontext, (1, args.trials)),
        ]
        if slurm:
            candidates += [
                (
                    "slurm",
                    "submitit (SLURM array)",
                    get_backend("submitit"),
                    contextlib.nullcontext,
                    (args.array_trials,),
                ),
                (
                    "slurm-unchunked",
                    "submitit (SLURM, 1 trial/task)",
                    get_backend("submitit"),
                    one_trial_per_task,
                    (args.array_trials,),
                ),
            ]

        def launch(run: Callable, count: int) -> list:
            return run(
                specs(count, "bench"),
                profile,
                metric="val/loss",
                mode="min",
                workdir=root / "work" / f"{next(counter):04d}",
            )

        for key, label, run, context, counts in candidates:
            if key not in wanted:
                continue
            print(f"{label}: warm-up", flush=True)
            with context():
                launch(run, 1)  # imports and the page cache, so the order of the rows does not matter
            for count in counts:
                print(f"{label}: {count} trial(s)", flush=True)
                with context(), measured(memory=key != "torchrun") as m:
                    outcomes = launch(run, count)
                bad = [o for o in outcomes if o.status != "completed"]
                note = f"{len(bad)} not completed: {bad[0].error}" if bad else ""
                if key.startswith("slurm"):
                    m["peak_mb"], note = None, note or "memory: the jobs run under slurmd, not here"
                if key == "torchrun":  # a fork shares this process's pages until it writes them
                    note = note or "memory: a fork of this process, not counted"
                rows.append((label, count, m["seconds"], m["peak_mb"], note))
        if not slurm and {"slurm", "slurm-unchunked"} & wanted:
            rows.append(
                ("submitit (SLURM)", 0, None, None, "skipped: --skip-slurm" if args.skip_slurm else "skipped: no SLURM")
            )
        if args.breakdown:
            spec_file = root / "fresh.json"
            spec_file.write_text(specs(1, "fresh")[0].to_json())
            for label, seconds in fresh_process_rows(spec_file, args.repeats):
                rows.append((label, 1, seconds, None, "wall of the whole process, best of --repeats"))

    print()
    print(
        f"{'backend':36} {'trials':>6} {'wall s':>8} {'s/trial':>8} {'x direct':>9} {'+s/trial':>9} {'peak MB':>8}  note"
    )
    for label, count, seconds, peak, note in rows:
        if seconds is None:
            print(f"{label:36} {'':>6} {'':>8} {'':>8} {'':>9} {'':>9} {'':>8}  {note}")
            continue
        per_trial = seconds / count
        shown = "-" if peak is None else f"{peak:.0f}"
        print(
            f"{label:36} {count:6d} {seconds:8.2f} {per_trial:8.2f} {per_trial / reference:9.1f} "
            f"{per_trial - reference:9.2f} {shown:>8}  {note}"
        )
    summarise(args.summary, rows, reference)


def summarise(path: Path | None, rows: list, reference: float) -> None:
    """make bench's rows: torchrun's one trial and SLURM's array, as seconds per trial over the direct call."""
    one = [seconds for label, count, seconds, _, _ in rows if label == "torchrun (1 process)" and count == 1]
    if one:
        over = one[0] - reference
        add_row(
            path, "torchrun backend, one process, one trial", f"{over:+.2f} s over direct", "<= +1.5 s", over <= 1.5
        )
    array = [(count, seconds) for label, count, seconds, _, _ in rows if label == "submitit (SLURM array)"]
    if array:
        count, seconds = array[0]
        add_row(
            path,
            f"submitit on SLURM, job array of {count}",
            f"{seconds / count:.2f} s per trial ({seconds / count / reference:.1f}x direct)",
            "<= 1 s per trial",
            seconds / count <= 1.0,
        )
    elif any(label == "submitit (SLURM)" for label, *_ in rows):
        add_row(path, "submitit on SLURM, job array", "skipped: no SLURM here", "<= 1 s per trial", None)


if __name__ == "__main__":
    main()
