"""The per-trial overhead of the sweep ledger: the same sweep with and without it, side by side in one process.

    python benchmarks/ledger.py [--trials 8] [--repeat 3] [--preset test]

Runs uba_phi (narrowed to `trials` trials, uba at its test preset: about a second of training a trial, so
what the ledger adds is as visible as it can be) on the local backend, alternating with the ledger
(trial keys: code+lock digest, data digests; one record per trial written at queue/start/end; the scan of
earlier sweep folders; --rerun so every trial really runs) and without it (use_ledger=False), `repeat`
times each, and prints seconds per trial, the ratio with/without, and the ledger's own work per trial
timed alone (key + four record writes + the scan), which is the overhead without the run-to-run noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preset", default="test")
    args = parser.parse_args()

    import os

    os.environ.setdefault("PAPERZOO_PROGRESS_EVERY", "0")
    from rich.console import Console
    from rich.table import Table

    from pipelines.datasets import prepare
    from pipelines.ledger import Ledger, code_digest, earlier_records
    from pipelines.params import dataset_specs, load_params
    from pipelines.sweep import run_sweep, trial_keys

    params = load_params(ROOT / "params.yaml")
    phis, optimizers = [0.5, 1, 2, 5], ["sgd", "msgdw", "adamw", "lion"]
    points = [(phi, opt) for opt in optimizers for phi in phis][: args.trials]
    grid = {"schedule.phi": sorted({p for p, _ in points}), "optimizer": sorted({o for _, o in points})}
    count = len(grid["schedule.phi"]) * len(grid["optimizer"])
    scratch = Path(tempfile.mkdtemp(prefix="paperzoo-ledger-bench-"))
    data = scratch / "data"
    prepare("images/digits", dict(dataset_specs(params)["images/digits"]), data)
    run_root = scratch / "runs"

    def once(use_ledger: bool) -> float:
        started = time.perf_counter()
        outcome = run_sweep(
            "uba_phi",
            params,
            grid=grid,
            seeds=[0],
            preset=args.preset,
            run_root=run_root / ("with" if use_ledger else "without"),
            data_dir=data,
            rerun=True,
            use_ledger=use_ledger,
        )
        assert all(r.status == "completed" for r in outcome.results), outcome.markdown
        return (time.perf_counter() - started) / len(outcome.results)

    once(True)  # warm-up: imports, the first code digest, page cache
    timings: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(args.repeat):
        for use_ledger in (False, True) if rep % 2 == 0 else (True, False):  # neither always goes first
            timings[use_ledger].append(once(use_ledger))

    # the ledger's own work per trial, alone: trial keys (digest cached after the first, as in a sweep),
    # the scan of earlier folders, and a record written four times (planned, queued/running, ended)
    from cluster.runner import plan_run

    requests = [
        plan_run("uba", params, preset=args.preset, overrides={"schedule.phi": p, "optimizer": o}, data_dir=data)
        for p, o in points
    ][:count]
    code_digest("uba")
    reps = 20
    started = time.perf_counter()
    for rep in range(reps):
        folder = scratch / "ledger-only" / f"{rep:03d}"
        trial_keys(requests, data)
        earlier_records(folder.parent, exclude=folder)
        ledger = Ledger(folder)
        for index in range(len(requests)):
            for state in ("pending", "queued", "running", "completed"):
                ledger.write(index, state=state, run_dir=str(folder / f"{index}"), metrics={"val/loss": 1.0})
    alone = (time.perf_counter() - started) / (reps * len(requests))

    without, with_ = statistics.median(timings[False]), statistics.median(timings[True])
    table = Table(title=f"uba_phi, {count} trials at the {args.preset} preset, local backend (median of {args.repeat})")
    for column in ("sweep", "s / trial", "ratio to no ledger"):
        table.add_column(column, justify="right")
    table.add_row("without the ledger", f"{without:.3f}", "1.000")
    table.add_row("with the ledger", f"{with_:.3f}", f"{with_ / without:.3f}")
    table.add_row("ledger work alone", f"{alone * 1000:.2f} ms", f"{(without + alone) / without:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
