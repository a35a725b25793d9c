"""`make bench`: every orchestration-tax measurement in one table, each as measured against its own reference
(the direct call, the local backend, the CLI, in-process reading) in the same run.

    python benchmarks/bench.py [--only imports launch ...] [--keep DIR]

Runs the benchmark scripts one after another (never in parallel: they time the same cores), each printing its
own detailed table as it goes, and each appending its headline rows to one summary file (`--summary`, see
benchmarks/summary.py). Then prints the table: the path measured, the figure now, the aim, and whether it is
met. On a shared machine run it twice: a row that flips between runs is load, not a result. Takes 15-25
minutes on 2 cores, most of it the smoke pipeline's fresh `dvc repro` and ICT at n = 10.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
# (name, script, arguments): the order is cheapest first, so a failure shows early
SCRIPTS = (
    ("imports", "imports.py", ["--repeats", "3"]),
    ("data", "data.py", []),
    ("launch", "launch.py", ["--rows", "torchrun,slurm", "--array-trials", "32"]),
    ("ray", "ray_sweep.py", ["--trials", "32", "--preset", "smoke", "--repeats", "1"]),
    ("prefect", "prefect_latency.py", ["--attempts", "2", "--default-poll-attempts", "0"]),
    ("pipeline", "pipeline.py", []),
    ("ict", "ict.py", ["--ranks", "10", "--kinds", "orthogonality", "--threads", "1"]),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in SCRIPTS], help="run these scripts only")
    parser.add_argument("--keep", type=Path, help="also copy the summary rows (JSON lines) here")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 150)  # a log keeps the table's rows on one line
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="paperzoo-bench-") as scratch:
        summary = Path(scratch) / "summary.jsonl"
        summary.touch()
        for name, script, script_args in SCRIPTS:
            if args.only and name not in args.only:
                continue
            console.rule(f"benchmarks/{script} {' '.join(script_args)}")
            started = time.perf_counter()
            done = subprocess.run([sys.executable, str(HERE / script), *script_args, "--summary", str(summary)])
            console.print(f"[dim]{script}: {time.perf_counter() - started:.0f} s, exit {done.returncode}[/dim]")
            if done.returncode != 0:
                failed.append(script)
        rows = [json.loads(line) for line in summary.read_text().splitlines() if line.strip()]
        if args.keep:
            args.keep.write_text(summary.read_text())

    table = Table(title="the orchestration tax: each figure against its reference, measured in this run")
    for column in ("path", "now", "aim", "met"):
        table.add_column(column)
    for row in rows:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[row["meets"]]
        table.add_row(row["row"], row["now"], row["aim"], met)
    console.print(table)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red] (their rows are missing above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
