"""A sweep on the ray backend against the same sweep on the local backend, measured in the same run.

    python benchmarks/ray_sweep.py [--trials 32] [--preset test] [--repeats 2]

The trials are the first --trials of params.yaml's uba_phi sweep (32: its whole grid) at --preset, the same list
for both backends. Ray runs them with FIFO (every trial to its end, as the local backend does; ASHA would stop
some and do less work), and their metrics are checked equal to the local backend's. Rows, interleaved over
--repeats rounds (best of): the local backend in this process (imports already paid by a warm-up run: the
reference); Ray as `paperzoo sweep --backend ray` runs it (its own Ray, started and stopped); and Ray inside a
Ray the caller started (local_ray(): Ray's start-up left out, as for several sweeps from one notebook).

Where Ray's time goes, from timestamps through the launch path (the worker side read from each trial's process):
  ray start   ray.init of a private Ray (GCS, raylet, dashboard and runtime-env agents, log monitor, workers)
  workers     Tuner.fit starting -> the first trial entering its function: Tune's set-up, the actor in a worker,
              Tune's trainable and the trial's code unpickled there (ray.tune with pandas/pyarrow, torch)
  1st trial   the first trial in each worker: the component's imports and first-call costs, then the trial
  trials      the later trials, summed over workers / workers (reuse_actors: the same process, nothing imported)
  tail        the last trial's end -> fit returning (Tune's bookkeeping, results)
  stop        ray.shutdown and waiting for every process it started
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from summary import add_row  # noqa: E402 - benchmarks/summary.py, beside this script

import cluster.backends.ray_backend as ray_backend  # noqa: E402
from cluster.backends import get_backend  # noqa: E402
from cluster.launch import LaunchSpec, run_spec  # noqa: E402
from cluster.profiles import Profile  # noqa: E402
from cluster.runner import plan_run  # noqa: E402
from pipelines.datasets import prepare  # noqa: E402
from pipelines.params import load_params  # noqa: E402
from pipelines.sweep import expand_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STAMPS = Path("trials.jsonl")  # one line per trial, written by its worker; main() puts it in its temporary folder


def stamped_trial(config, specs, metric, scheduler, _run=ray_backend.run_one_trial):
    """run_one_trial, recording when the trial entered and left its worker (pickled by value into the worker,
    with the value STAMPS has then)."""
    import os
    import time

    entered = time.time()
    _run(config, specs, metric, scheduler)
    with open(STAMPS, "a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "entered": entered, "left": time.time()}) + "\n")


class Stamps:
    """Times of ray.init, Tuner.fit and ray.shutdown in this process, by wrapping them for the block."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def watching(self):
        targets = [(ray_backend.ray, "init"), (ray_backend.ray, "shutdown"), (ray_backend.tune.Tuner, "fit")]
        originals = [getattr(owner, name) for owner, name in targets]
        for (owner, name), original in zip(targets, originals):
            setattr(owner, name, self._wrap(name, original))
        ray_backend.run_one_trial, real_trial = stamped_trial, ray_backend.run_one_trial
        STAMPS.write_text("")
        try:
            yield self
        finally:
            for (owner, name), original in zip(targets, originals):
                setattr(owner, name, original)
            ray_backend.run_one_trial = real_trial

    def _wrap(self, name, original):
        def timed(*args, **kwargs):
            self.times[f"{name} start"] = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                self.times[f"{name} end"] = time.time()

        return timed

    def phases(self) -> dict[str, float]:
        trials = [json.loads(line) for line in STAMPS.read_text().splitlines()]
        by_worker = defaultdict(list)
        for trial in sorted(trials, key=lambda t: t["entered"]):
            by_worker[trial["pid"]].append(trial)
        firsts = [runs[0] for runs in by_worker.values()]
        later = [t["left"] - t["entered"] for runs in by_worker.values() for t in runs[1:]]
        times = self.times
        return {
            "ray start": times["init end"] - times["init start"] if "init start" in times else 0.0,
            "workers": max(t["entered"] for t in firsts) - times["fit start"],
            "1st trial": max(t["left"] - t["entered"] for t in firsts),
            "trials": sum(later) / len(by_worker),
            "tail": times["fit end"] - max(t["left"] for t in trials),
            "stop": times["shutdown end"] - times["shutdown start"] if "shutdown start" in times else 0.0,
            "workers used": float(len(by_worker)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32, help="the first N trials of uba_phi (32: all of it)")
    parser.add_argument("--preset", default="test")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three rows, interleaved; best of")
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    args = parser.parse_args()

    params = load_params(ROOT / "params.yaml")
    trials = expand_sweep(params["sweeps"]["uba_phi"], None, None)[: args.trials]
    profile = Profile(name="bench")
    global STAMPS
    with tempfile.TemporaryDirectory(prefix="pzraysweep-") as tmp:
        root, data = Path(tmp), Path(tmp) / "data"
        STAMPS = root / "trials.jsonl"
        prepare("images/digits", dict(params["datasets"]["images/digits"]), data)
        counter = iter(range(10**6))

        def specs(backend: str) -> list[LaunchSpec]:
            folder = root / "runs" / f"{backend}-{next(counter):03d}"
            return [
                LaunchSpec.from_request(
                    plan_run("uba", params, preset=args.preset, overrides=t.overrides, seed=t.seed, data_dir=data),
                    folder / f"{index:03d}",
                    data,
                    profile,
                    backend=backend,
                )
                for index, t in enumerate(trials)
            ]

        def sweep(backend: str) -> tuple[float, float, list]:
            options = {"scheduler": "fifo"} if backend == "ray" else {}
            started, cpu = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):  # the per-trial progress lines
                outcomes = get_backend(backend)(
                    specs(backend), profile, metric="val/loss", workdir=root / f"work-{next(counter)}", **options
                )
            bad = [o for o in outcomes if o.status != "completed"]
            if bad:
                sys.exit(f"{backend}: {len(bad)} trials not completed: {bad[0].error}")
            return time.perf_counter() - started, time.process_time() - cpu, [o.metrics for o in outcomes]

        run_spec(specs("warm-up")[0])  # this process's imports, so the local row is the trials only
        rows: dict[str, list[tuple[float, float, dict[str, float]]]] = defaultdict(list)
        reference_metrics = None
        for round_ in range(args.repeats):
            for label in ("local backend (reference)", "ray, own Ray (paperzoo sweep)", "ray, caller's Ray"):
                print(f"round {round_ + 1}: {label}", flush=True)
                stamps = Stamps()
                if label.startswith("local"):
                    wall, cpu, metrics = sweep("local")
                    phases: dict[str, float] = {}
                else:
                    caller = ray_backend.local_ray() if "caller" in label else contextlib.nullcontext()
                    with caller, stamps.watching():
                        wall, cpu, metrics = sweep("ray")
                    phases = stamps.phases()
                reference_metrics = reference_metrics or metrics
                if metrics != reference_metrics:
                    sys.exit(f"{label}: metrics differ from the local backend's")
                rows[label].append((wall, cpu, phases))

    reference = min(wall for wall, _, _ in rows["local backend (reference)"])
    phase_names = ["ray start", "workers", "1st trial", "trials", "tail", "stop", "workers used"]
    print(f"\n{args.trials} trials of uba_phi at --preset {args.preset}; best of {args.repeats}; metrics equal: yes")
    print("| row | wall s | x local | driver CPU s | " + " | ".join(phase_names) + " |")
    print("|---|---|---|---|" + "---|" * len(phase_names))
    for label, measured in rows.items():
        wall, cpu, phases = min(measured, key=lambda row: row[0])
        shown = " | ".join(f"{phases[name]:.2f}" if name in phases else "" for name in phase_names)
        print(f"| {label} | {wall:.2f} | {wall / reference:.2f}x | {cpu:.2f} | {shown} |")
    ray_wall = min(wall for wall, _, _ in rows["ray, own Ray (paperzoo sweep)"])
    add_row(
        args.summary,
        f"Ray Tune sweep of {args.trials} trials ({args.preset} preset) vs the local backend",
        f"{ray_wall / reference:.2f}x ({ray_wall:.1f} s vs {reference:.1f} s)",
        "<= 1.2x",
        ray_wall <= 1.2 * reference,
    )


if __name__ == "__main__":
    main()
