"""The mutation harness: does a component's test suite notice when the component stops being its paper?

Each component keeps a table of small named mutants in tests/mutants/<slug>.py: one textual change each
(`find` -> `replace` in one file under components/, or in the prepare code of pipelines/datasets/), one per
contribution the paper claims and one per classic bug of its kind. `make mutants` (or `python -m
tests.mutants.harness [--slug SLUG ...]`) copies the
tree once to a scratch folder, applies one mutant at a time there, runs the tests that should notice, and
prints a table: mutant, outcome, the test that killed it, seconds.

Outcomes, one per mutant:
  killed    a test failed on an assertion (assert, pytest.fail, pytest.raises that saw nothing raised);
  survived  every test passed;
  crashed   tests failed, but only by raising something else (an import error, a shape error...): that is
            not evidence that a test checks the property, so it is listed apart;
  timeout   the tests ran past --timeout;
  stale     `find` no longer occurs in the file exactly `count` times: the code moved, the mutant must too.
At the end every killing test is run once more on the unmutated tree: a test that fails there proves
nothing, and its kills are reported as `baseline-fails`.

Tests run for a mutant, in order, each a pytest run that stops at the first assertion failure: the
mutant's `killers` (a hint: the tests written for that property), then tests/components/test_<slug>.py
and, for a shared module, its own tests (components/core/x.py -> tests/components/core/test_x.py, or the
package's whole test folder when the module has no test file of its own).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
TABLES = Path(__file__).resolve().parent
PLUGIN = TABLES / "outcome_plugin.py"
KINDS = ("contribution", "bug")


@dataclass(frozen=True)
class Mutant:
    name: str  # unique within the component: what was broken, e.g. "forward-uses-full-precision-weights"
    kind: Literal["contribution", "bug"]  # a claim of the paper, or a classic bug of the kind
    guards: str  # the property in words: what a researcher loses if this mutant ships
    file: str  # repository-relative path of the one file changed
    find: str  # exact text, occurring `count` times in the file
    replace: str
    killers: tuple[str, ...] = ()  # pytest node ids written to notice it; run first
    count: int = 1  # every one of the `count` occurrences is replaced (the same text in several places)


@dataclass
class Outcome:
    slug: str
    mutant: Mutant
    status: str  # killed | survived | crashed | timeout | stale | baseline-fails
    test: str = ""  # the killing test, or the first crashing one
    detail: str = ""  # the exception's type and first line
    seconds: float = 0.0
    runs: list[str] = field(default_factory=list)


def load_table(slug: str) -> list[Mutant]:
    module = importlib.import_module(f"tests.mutants.{slug}")
    mutants = list(module.MUTANTS)
    names = [m.name for m in mutants]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SystemExit(f"tests/mutants/{slug}.py: duplicate mutant names: {', '.join(duplicated)}")
    for m in mutants:
        if m.kind not in KINDS:
            raise SystemExit(f"tests/mutants/{slug}.py: mutant '{m.name}': kind must be one of {KINDS}")
        if m.find == m.replace:
            raise SystemExit(f"tests/mutants/{slug}.py: mutant '{m.name}': replace equals find")
    return mutants


def slugs_with_tables() -> list[str]:
    helpers = {"__init__", "harness", "outcome_plugin"}
    return sorted(p.stem for p in TABLES.glob("*.py") if p.stem not in helpers and not p.stem.startswith("test_"))


def staleness(mutant: Mutant, root: Path) -> str:
    """Why the mutant no longer applies to the tree at root; empty when it applies."""
    path = root / mutant.file
    if not path.is_file():
        return f"{mutant.file} does not exist"
    found = path.read_text().count(mutant.find)
    if found != mutant.count:
        return f"`find` occurs {found} times in {mutant.file}, expected {mutant.count}"
    return ""


def project_files(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    return [name for name in listed if name and (root / name).is_file()]


def scratch_copy(root: Path, dest: Path) -> Path:
    """The tree as git sees it (tracked and untracked-not-ignored files): no caches, no runs, no venv."""
    for name in project_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return dest


def test_targets(slug: str, mutant: Mutant, root: Path) -> list[str]:
    """The component's tests, and the changed shared module's own tests where it has some."""
    targets = [f"tests/components/test_{slug}.py"]
    parts = Path(mutant.file).parts
    if len(parts) == 3 and parts[0] == "components" and parts[1] != slug:
        shared = Path("tests", "components", parts[1], f"test_{Path(parts[2]).stem}.py")
        if not (root / shared).is_file():  # a package tested as a whole (components/snn -> test_core.py)
            shared = shared.parent
        if (root / shared).exists():
            targets.append(str(shared))
    if parts[:2] == ("pipelines", "datasets"):  # a prepare source: its own tests
        targets.append(str(Path("tests", "pipelines", f"test_prepare_{Path(parts[-1]).stem}.py")))
    return [t for t in targets if (root / t.split("::")[0]).exists()]


def run_pytest(targets: list[str], root: Path, timeout: float) -> tuple[str, str, str]:
    """One pytest run in the scratch tree. Returns (status, test, detail); status is killed, passed, crashed
    or timeout. The plugin stops the run at the first assertion failure and writes what it saw."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        report = Path(handle.name)
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{PLUGIN.parent}",  # the scratch tree's packages, not the editable install
        "PYTHONDONTWRITEBYTECODE": "1",  # a same-size edit within a second must not run a stale .pyc
        "PAPERZOO_MUTATION_REPORT": str(report),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", PLUGIN.stem, *targets]
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        report.unlink(missing_ok=True)
        return "timeout", "", f"no result after {timeout:.0f} s"
    except BaseException:  # Ctrl-C or SIGTERM: the tests run in their own session, so stop them too
        os.killpg(process.pid, signal.SIGKILL)
        report.unlink(missing_ok=True)
        raise
    seen = json.loads(report.read_text()) if report.stat().st_size else {}
    report.unlink(missing_ok=True)
    if seen.get("killed"):
        return "killed", seen["killed"]["test"], seen["killed"]["detail"]
    if process.returncode == 0:
        return "passed", "", ""
    if seen.get("crashed"):
        first = seen["crashed"][0]
        return "crashed", first["test"], first["detail"]
    tail = "\n".join(output.strip().splitlines()[-3:])
    return "crashed", "", f"pytest exited {process.returncode}: {tail}"


def try_mutant(slug: str, mutant: Mutant, scratch: Path, timeout: float) -> Outcome:
    start = time.perf_counter()
    stale = staleness(mutant, scratch)
    if stale:
        return Outcome(slug, mutant, "stale", detail=stale)
    path = scratch / mutant.file
    original = path.read_text()
    path.write_text(original.replace(mutant.find, mutant.replace))
    outcome = Outcome(slug, mutant, "survived")
    try:
        phases = [list(mutant.killers), test_targets(slug, mutant, scratch)]
        for targets in filter(None, phases):
            outcome.runs.append(" ".join(targets))
            status, test, detail = run_pytest(targets, scratch, timeout - (time.perf_counter() - start))
            if status in ("killed", "timeout"):
                outcome.status, outcome.test, outcome.detail = status, test, detail
                break
            if status == "crashed" and outcome.status == "survived":
                outcome.status, outcome.test, outcome.detail = status, test, detail
    finally:
        path.write_text(original)
    outcome.seconds = time.perf_counter() - start
    return outcome


def confirm_baseline(outcomes: list[Outcome], scratch: Path, timeout: float) -> None:
    """Run every killing test on the unmutated tree; a test failing there cannot count as a kill."""
    killers = sorted({o.test for o in outcomes if o.status == "killed"})
    failing: set[str] = set()
    while killers:
        status, test, _ = run_pytest(killers, scratch, timeout)
        if status == "passed":
            break
        if status == "timeout" or not test:
            failing.update(killers)
            break
        failing.add(test)
        killers = [k for k in killers if k != test]
    for o in outcomes:
        if o.status == "killed" and o.test in failing:
            o.status, o.detail = "baseline-fails", f"{o.test} fails on the unmutated tree too"


def print_table(outcomes: list[Outcome]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="mutants", show_lines=False)
    for column in ("component", "mutant", "kind", "outcome", "killed by / detail", "s"):
        table.add_column(column, justify="right" if column == "s" else "left", overflow="fold")
    colours = {"killed": "green", "survived": "red", "stale": "yellow"}
    for o in outcomes:
        shown = o.test.split("::", 1)[-1] if o.status == "killed" else (o.test + " " + o.detail).strip()
        colour = colours.get(o.status, "magenta")
        # test ids may hold brackets (parametrised ids) that rich would read as markup
        table.add_row(
            o.slug, o.mutant.name, o.mutant.kind, f"[{colour}]{o.status}[/]", escape(shown), f"{o.seconds:.0f}"
        )
    console = Console(width=max(160, shutil.get_terminal_size().columns))
    console.print(table)
    counts = {s: sum(o.status == s for o in outcomes) for s in dict.fromkeys(o.status for o in outcomes)}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(outcomes)} mutants", end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slug", action="append", help="only this component (repeatable); default: all")
    parser.add_argument("--mutant", action="append", help="only the mutant(s) of this name")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant (default 900)")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    parser.add_argument("--check", action="store_true", help="only report stale mutants, run no tests")
    args = parser.parse_args(argv)

    known = slugs_with_tables()
    for slug in args.slug or []:
        if slug not in known:
            print(f"--slug {slug}: no table tests/mutants/{slug}.py; tables: {', '.join(known)}", file=sys.stderr)
            return 2
    tables = {slug: load_table(slug) for slug in args.slug or known}
    if args.mutant:
        tables = {s: [m for m in ms if m.name in args.mutant] for s, ms in tables.items()}
        if not any(tables.values()):
            print(f"--mutant: none of {', '.join(args.mutant)} in the chosen tables", file=sys.stderr)
            return 2
    if args.check:
        stale = [(s, m.name, why) for s, ms in tables.items() for m in ms if (why := staleness(m, ROOT))]
        for slug, name, why in stale:
            print(f"stale: {slug}/{name}: {why}")
        print(f"{sum(map(len, tables.values()))} mutants, {len(stale)} stale")
        return 1 if stale else 0

    def stop(signum, frame):  # SIGTERM as Ctrl-C: the scratch copy is removed and the running tests stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    outcomes: list[Outcome] = []
    total = sum(map(len, tables.values()))
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="paperzoo-mutants-") as scratch_dir:
            scratch = scratch_copy(ROOT, Path(scratch_dir))
            for slug, mutants in tables.items():
                for m in mutants:
                    print(f"[{len(outcomes) + 1}/{total}] {slug}/{m.name} ...", end=" ", flush=True)
                    outcomes.append(try_mutant(slug, m, scratch, args.timeout))
                    last = outcomes[-1]
                    print(f"{last.status} {last.test} ({last.seconds:.0f} s)", flush=True)
            confirm_baseline(outcomes, scratch, args.timeout)
    except KeyboardInterrupt:
        print(f"\nstopped after {len(outcomes)} of {total} mutants; the tree itself was never changed", file=sys.stderr)
        return 130
    print_table(outcomes)
    print(f" in {time.perf_counter() - started:.0f} s")
    if args.json:
        rows = [
            {"component": o.slug, "mutant": o.mutant.name, "kind": o.mutant.kind, "guards": o.mutant.guards}
            | {"outcome": o.status, "test": o.test, "detail": o.detail, "seconds": round(o.seconds, 1)}
            for o in outcomes
        ]
        partial = args.json.with_name(f".{args.json.name}.partial")
        partial.write_text(json.dumps(rows, indent=1) + "\n")
        partial.replace(args.json)
    return 0 if all(o.status == "killed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
