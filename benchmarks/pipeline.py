"""Wall times of the smoke pipeline, of a no-op `dvc repro`, and the orchestration tax of `paperzoo run`.

The tax compares, in this one process's lifetime, `paperzoo run uba` (config resolution, run directory,
JSONL + DVCLive sinks, code and package versions) against the same component's run() called from a
fresh `python -c` with a bare RunContext. Aim: paperzoo <= 1.05 x direct + 0.5 s; no-op repro < 2 s.

    python benchmarks/pipeline.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def copy_project(target: Path) -> None:
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    for name in filter(None, names):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(git + args if args[0] != "init" else ["git", *args], cwd=target, check=True, env=ENV)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        copy_project(repo)
        rows.append(("dvc repro (smoke pipeline, fresh)", timed(["dvc", "repro"], repo), ""))
        noop = min(timed(["dvc", "repro"], repo) for _ in range(3))
        rows.append(("dvc repro (nothing changed, best of 3)", noop, "aim < 2 s"))
        paperzoo = [
            timed(["paperzoo", "run", "uba", "--run-root", str(Path(tmp) / f"runs{i}")], repo) for i in range(3)
        ]
        direct = [timed([sys.executable, "-c", DIRECT, str(Path(tmp) / f"direct{i}")], repo) for i in range(3)]
        best_paperzoo, best_direct = min(paperzoo), min(direct)
        rows.append(("python -c component.run (uba smoke, best of 3)", best_direct, "reference"))
        rows.append(
            (
                "paperzoo run uba (smoke, best of 3)",
                best_paperzoo,
                f"{best_paperzoo / best_direct:.3f}x, +{best_paperzoo - best_direct:.2f} s; "
                f"aim <= {1.05 * best_direct + 0.5:.2f} s",
            )
        )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement':{width}}  {'wall s':>8}  note")
    for name, seconds, note in rows:
        print(f"{name:{width}}  {seconds:8.2f}  {note}")


if __name__ == "__main__":
    main()
