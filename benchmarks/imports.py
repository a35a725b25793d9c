"""Where the seconds of a CLI call and of one smoke run go: process start, imports by package, the rest.

    python benchmarks/imports.py [--repeats 3] [--root DIR] [--data-dir DIR]

Each command runs in a fresh subprocess of this interpreter, from --root (the project checkout to measure:
this one by default; another, e.g. `mkdir /tmp/before && git archive HEAD | tar -x -C /tmp/before`, gives
the before column):
  python -c pass          the interpreter and site start-up alone (the floor of any command)
  paperzoo --help, list   what a researcher types to look around
  direct uba smoke        components.registry + resolve_config + component.run() with a bare RunContext
  paperzoo run uba        the same run through the CLI and the local launcher (run dir, sinks, provenance)
  dvc train stage         the command dvc.yaml's train stage runs: paperzoo run uba --out DIR
Wall times are the best of --repeats (the machine may be shared: compare the ratios, which are taken against
the direct call and `python -c pass` measured in this same run). The import table comes from one extra run of
each with `python -X importtime`, whose own bookkeeping inflates it (about 1.3x): read it as shares. Each
module's own time is charged to the outermost heavy package on its import chain (sympy, loaded by torch._dynamo,
counts as torch._dynamo; pandas, loaded by dvclive, as dvclive), else to its top-level package. "cpu s" is the
child's user + system time, which another worker's load on the machine disturbs far less than the wall time.
torch._dynamo is loaded by the first optimizer a component builds (torch.optim.Optimizer.add_param_group is
wrapped in torch._disable_dynamo, which imports it on first call), so it is a cost of the component, direct
call included, not of the launcher.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from summary import add_row  # benchmarks/summary.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "torch._dynamo",
    "torch",
    "dvclive",
    "dvc",
    "matplotlib",
    "pandas",
    "scipy",
    "ray",
    "prefect",
    "deepspeed",
    "submitit",
    "numpy",
    "pydantic",
    "yaml",
)
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
component.run(cfg, RunContext(run_dir=out, data_dir=Path(sys.argv[2]), seed=0, strategy=plain_strategy()))
"""


def commands(data_dir: Path, scratch: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "pipelines.cli"]  # cwd first on sys.path: the checkout under --root is measured
    where = ["--data-dir", str(data_dir)]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "paperzoo --help": [*cli, "--help"],
        "paperzoo list": [*cli, "list"],
        "direct uba smoke": [sys.executable, "-c", DIRECT, str(scratch / "direct{n}"), str(data_dir)],
        "paperzoo run uba": [*cli, "run", "uba", *where, "--run-root", str(scratch / "runs{n}")],
        "dvc train stage": [*cli, "run", "uba", *where, "--out", str(scratch / "dvc{n}" / "uba")],
    }


def run(args: list[str], cwd: Path, n: int, importtime: bool = False) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the child) and the child's stderr."""
    args = [word.replace("{n}", str(n)) for word in args]
    if importtime:
        args = [args[0], "-X", "importtime", *args[1:]]
    env = {**os.environ, "CI": "1", "PAPERZOO_PROGRESS_EVERY": "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:6])} ... failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    return elapsed, cpu, done.stderr


def group_of(name: str) -> str | None:
    for heavy in HEAVY:
        if name == heavy or name.startswith(heavy + "."):
            return heavy
    return None


def import_seconds(stderr: str) -> Counter:
    """Seconds of each module's own import time, by the nearest heavy package on its import chain."""
    pending: dict[int, list[tuple[str, int, list]]] = defaultdict(list)  # depth -> finished, parent not yet seen
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            depth = (len(found[3]) - 1) // 2
            pending[depth].append((found[4], int(found[1]), pending.pop(depth + 1, [])))
    totals: Counter = Counter()

    def charge(node: tuple[str, int, list], inherited: str | None) -> None:
        name, own_us, children = node
        group = inherited or group_of(name)  # the outermost heavy package brought it in
        totals[group or name.split(".")[0]] += own_us / 1e6
        for child in children:
            charge(child, group)

    for node in pending[0]:
        charge(node, None)
    return totals


def prepared_data(data_dir: Path | None, scratch: Path) -> Path:
    if data_dir is not None:
        return data_dir
    data_dir = scratch / "data"
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "prepare", "images", "digits", "--data-dir", str(data_dir)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--data-dir", type=Path, help="a data root holding images/digits (default: prepare one)")
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data_dir = prepared_data(options.data_dir, scratch)
        todo = commands(data_dir.absolute(), scratch)
        walls: dict[str, float] = {}
        cpus: dict[str, float] = {}
        for repeat in range(options.repeats):  # interleaved, so a burst of load hits every row alike
            for name, args in todo.items():
                seconds, cpu, _ = run(args, options.root, repeat)
                walls[name] = min(walls.get(name, seconds), seconds)
                cpus[name] = min(cpus.get(name, cpu), cpu)
        imports = {
            name: import_seconds(run(args, options.root, options.repeats, True)[2]) for name, args in todo.items()
        }

    start, direct = walls["python -c pass"], walls["direct uba smoke"]
    print(f"root: {options.root}; best of {options.repeats}; ratios within this run\n")
    print(
        f"{'command':18s} {'wall s':>7s} {'- start':>8s} {'x direct':>9s} {'cpu s':>6s} {'x direct':>9s} "
        f"{'imports s':>10s}  heaviest imports (s)"
    )
    for name, seconds in walls.items():
        heaviest = ", ".join(f"{group} {value:.2f}" for group, value in imports[name].most_common(5) if value >= 0.01)
        print(
            f"{name:18s} {seconds:7.2f} {seconds - start:8.2f} {seconds / direct:9.2f} {cpus[name]:6.2f} "
            f"{cpus[name] / cpus['direct uba smoke']:9.2f} {sum(imports[name].values()):10.2f}  {heaviest}"
        )
    columns = [
        group for group in (*HEAVY, "components", "cluster", "pipelines") if any(imports[n][group] for n in todo)
    ]
    print(
        f"\nimports by package, seconds under -X importtime\n{'command':18s} " + " ".join(f"{c:>13s}" for c in columns)
    )
    for name in todo:
        print(f"{name:18s} " + " ".join(f"{imports[name][c]:13.2f}" for c in columns))
    over = walls["paperzoo run uba"] - direct
    print(
        f"\npaperzoo run uba over direct: {walls['paperzoo run uba'] / direct:.3f}x, {over:+.2f} s wall, "
        f"{cpus['paperzoo run uba'] / cpus['direct uba smoke']:.3f}x cpu "
        f"(aim <= 1.05x + 0.3 s = {1.05 * direct + 0.3:.2f} s); --help {walls['paperzoo --help']:.2f} s, "
        f"list {walls['paperzoo list']:.2f} s (aim < 1 s)"
    )
    run_wall = walls["paperzoo run uba"]
    add_row(
        options.summary,
        "`paperzoo run uba` vs the component called directly, smoke",
        f"{run_wall / direct:.2f}x ({over:+.2f} s)",
        "<= 1.05x + 0.3 s",
        run_wall <= 1.05 * direct + 0.3,
    )
    looking = max(walls["paperzoo list"], walls["paperzoo --help"])
    add_row(
        options.summary,
        "`paperzoo list` / `--help`",
        f"{walls['paperzoo list']:.2f} s / {walls['paperzoo --help']:.2f} s",
        "< 1 s",
        looking < 1.0,
    )


if __name__ == "__main__":
    main()
