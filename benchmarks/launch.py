"""The overhead of each launch backend over calling the same trial in-process, measured in the same run.

    python benchmarks/launch.py [--trials 4] [--repeats 3] [--skip-slurm]

The trial is uba at its `test` preset (seed 0, params.yaml's section). The reference is `run_spec(spec)`
in this process, after a warm-up run so imports are not counted (best of --repeats). Each backend then
runs the same trial through `get_backend(name)(specs, profile, workdir=...)`, twice: one trial (the
latency a `paperzoo run` sees: process start-up, Ray start and stop, job submission) and --trials
trials (a sweep: fixed costs shared, and concurrency where the backend has it: submitit's local
executor and Ray run as many trials at once as there are CPUs), each after one untimed warm-up call
of the same backend. Columns: wall seconds, seconds per trial, that over the reference, and the peak
resident memory of the processes the backend started (summed over processes, so shared pages count
more than once; the in-process backends start none). SLURM (submitit on `sbatch`) is included
when `sinfo` answers; `--skip-slurm` leaves it out on a cluster other work is using.
"""

from __future__ import annotations

import argparse
import contextlib
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
def measured() -> Iterator[dict[str, float]]:
    sample = PeakMemory()
    result: dict[str, float] = {}
    sample.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials in the sweep-sized measurement")
    parser.add_argument("--repeats", type=int, default=3, help="in-process reference: best of this many")
    parser.add_argument("--skip-slurm", action="store_true", help="leave SLURM out even when sinfo answers")
    args = parser.parse_args()

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

        backends: list[tuple[str, str, Callable[[], contextlib.AbstractContextManager]]] = [
            ("local", "local", contextlib.nullcontext),
            ("torchrun (1 process)", "torchrun", contextlib.nullcontext),
            ("submitit (local executor)", "submitit", submitit_local),
            ("ray (Ray Tune, own local Ray)", "ray", contextlib.nullcontext),
        ]
        slurm = not args.skip_slurm and slurm_up()
        if slurm:
            backends.append(("submitit (SLURM)", "submitit", contextlib.nullcontext))

        def launch(name: str, count: int) -> list:
            return get_backend(name)(
                specs(count, name),
                profile,
                metric="val/loss",
                mode="min",
                workdir=root / "work" / f"{name}-{next(counter):04d}",
            )

        for label, name, context in backends:
            print(f"{label}: warm-up", flush=True)
            with context():
                launch(name, 1)  # imports and the page cache, so the order of the rows does not matter
            for count in (1, args.trials):
                print(f"{label}: {count} trial(s)", flush=True)
                with context(), measured() as m:
                    outcomes = launch(name, count)
                bad = [o for o in outcomes if o.status != "completed"]
                note = f"{len(bad)} not completed: {bad[0].error}" if bad else ""
                if label == "submitit (SLURM)":
                    m["peak_mb"], note = None, note or "memory: the jobs run under slurmd, not here"
                rows.append((label, count, m["seconds"], m["peak_mb"], note))
        if not slurm:
            rows.append(
                ("submitit (SLURM)", 0, None, None, "skipped: --skip-slurm" if args.skip_slurm else "skipped: no SLURM")
            )

    print()
    print(f"{'backend':32} {'trials':>6} {'wall s':>8} {'s/trial':>8} {'x direct':>9} {'peak MB':>8}  note")
    for label, count, seconds, peak, note in rows:
        if seconds is None:
            print(f"{label:32} {'':>6} {'':>8} {'':>8} {'':>9} {'':>8}  {note}")
            continue
        per_trial = seconds / count
        shown = "-" if peak is None else f"{peak:.0f}"
        print(f"{label:32} {count:6d} {seconds:8.2f} {per_trial:8.2f} {per_trial / reference:9.1f} {shown:>8}  {note}")


if __name__ == "__main__":
    main()
