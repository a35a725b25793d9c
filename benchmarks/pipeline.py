"""Wall times of the smoke pipeline, the share of it that is process start-up, a no-op `dvc repro`, and the
orchestration tax of `paperzoo run`.

    python benchmarks/pipeline.py [--targets train@uba train@lion]   # default: the whole pipeline

Start-up: every stage command (`paperzoo ...`) runs through a shim on PATH that records its wall time; a train
stage's start-up is that minus the run's own wall_seconds (run.json: building the strategy, the component's
run() with its lazy imports, the sinks), i.e. the interpreter, imports, config, provenance and the run folder.
The share is the train stages' start-up over the whole `dvc repro` (DVC's own start and the other stages
included). Aim: < 15%; no-op repro < 2 s.
The tax compares, in this one process's lifetime, `paperzoo run uba` (config resolution, run directory,
JSONL + DVCLive sinks, code and package versions) against the same component's run() called from a
fresh `python -c` with a bare RunContext. Aim: paperzoo <= 1.05 x direct + 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from summary import add_row  # benchmarks/summary.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "CI": "1"}

DIRECT = """
import sys, torch, yaml
from pathlib import Path
from components.core.config import resolve_config
from components.core.contract import RunContext
from components.registry import get_component
from components.core.strategy import plain_strategy
torch.set_num_threads(1); torch.manual_seed(0)
component = get_component("uba")
cfg = resolve_config(component, "smoke", yaml.safe_load(open("params.yaml"))["uba"])
out = Path(sys.argv[1]); out.mkdir(parents=True)
print(component.run(cfg, RunContext(run_dir=out, data_dir=Path("data"), seed=0, strategy=plain_strategy())))
"""


def timed(args: list[str], cwd: Path, env: dict[str, str] = ENV) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def copy_project(source: Path, target: Path) -> None:
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=source, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    for name in filter(None, names):
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(git + args if args[0] != "init" else ["git", *args], cwd=target, check=True, env=ENV)


SHIM = """#!/bin/sh
start=$(date +%s.%N)
"{python}" -m pipelines.cli "$@"  # the copied project's code, as DVC runs it from the copy's root
code=$?
echo "$start $(date +%s.%N) $*" >> "{log}"
exit $code
"""


def timing_shim(folder: Path) -> tuple[dict[str, str], Path]:
    """An environment whose `paperzoo` logs "start end argv" of every call to the returned file."""
    folder.mkdir()
    log = folder / "calls.log"
    shim = folder / "paperzoo"
    shim.write_text(SHIM.format(python=sys.executable, log=log))
    shim.chmod(0o755)
    return {**ENV, "PATH": f"{folder}:{ENV['PATH']}"}, log


def start_up_rows(repo: Path, log: Path, repro_seconds: float) -> list[tuple[str, float, str]]:
    """Per train stage: its process's wall time less the run's own wall_seconds; the sum as a share of the repro.
    The other stages (prepare, lineage, report) have no run.json: their whole wall time is shown beside it."""
    start_up = work = other = 0.0
    stages = others = 0
    for line in log.read_text().splitlines():
        start, end, verb, *args = line.split()
        seconds = float(end) - float(start)
        if verb != "run" or "--out" not in args:
            other, others = other + seconds, others + 1
            continue
        info = json.loads((repo / args[args.index("--out") + 1] / "run.json").read_text())
        stages += 1
        work += info["wall_seconds"]
        start_up += seconds - info["wall_seconds"]
    rows = [(f"other stages (prepare, lineage, report), sum of {others}", other, "start-up and their work")]
    if stages:
        rows += [
            (f"train stages: start-up, sum of {stages}", start_up, f"{start_up / stages:.2f} s per stage"),
            (f"train stages: the runs' own work, sum of {stages}", work, ""),
            ("train start-up share of the fresh repro", 100 * start_up / repro_seconds, "% (aim < 15%)"),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="*", default=[], help="dvc repro targets, e.g. train@uba (default: all)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the git checkout to copy and measure (this one)")
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    options = parser.parse_args()
    targets = options.targets
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        copy_project(options.root, repo)
        shimmed, log = timing_shim(Path(tmp) / "shim")
        fresh = timed(["dvc", "repro", *targets], repo, shimmed)
        rows.append((f"dvc repro {' '.join(targets) or '(smoke pipeline)'}, fresh", fresh, ""))
        rows += start_up_rows(repo, log, fresh)
        noop = min(timed(["dvc", "repro", *targets], repo) for _ in range(3))
        rows.append(("dvc repro (nothing changed, best of 3)", noop, "aim < 2 s"))
        paperzoo, direct = [], []
        for i in range(3):  # interleaved, so a burst of load from elsewhere hits both alike
            cli = [sys.executable, "-m", "pipelines.cli", "run", "uba", "--run-root", str(Path(tmp) / f"runs{i}")]
            paperzoo.append(timed(cli, repo))
            direct.append(timed([sys.executable, "-c", DIRECT, str(Path(tmp) / f"direct{i}")], repo))
        best_paperzoo, best_direct = min(paperzoo), min(direct)
        rows.append(("python -c component.run (uba smoke, best of 3)", best_direct, "reference"))
        rows.append(
            (
                "paperzoo run uba (smoke, best of 3)",
                best_paperzoo,
                f"{best_paperzoo / best_direct:.3f}x, {best_paperzoo - best_direct:+.2f} s; "
                f"aim <= {1.05 * best_direct + 0.3:.2f} s",
            )
        )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement':{width}}  {'s or %':>8}  note")
    for name, seconds, note in rows:
        print(f"{name:{width}}  {seconds:8.2f}  {note}")
    share = [value for name, value, _ in rows if name == "train start-up share of the fresh repro"]
    if share:
        add_row(
            options.summary,
            f"`dvc repro` {' '.join(targets) or 'of the smoke pipeline'}: train stages' start-up share",
            f"{share[0]:.0f}% ({fresh:.0f} s repro)",
            "< 15%",
            share[0] < 15,
        )
    add_row(options.summary, "`dvc repro` with nothing changed", f"{noop:.2f} s", "< 2 s", noop < 2)


if __name__ == "__main__":
    main()
