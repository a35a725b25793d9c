"""Faults while a run or a sweep runs: one catalogue, one row per fault.

Each row drives the `paperzoo` entry function in-process (a subprocess only where a process must die: kill -9)
on a copy of the project's params.yaml with a three-trial sweep of uba at the test preset, and checks what
cluster/states.py promises: the exit code (0 done, 1 ran and something failed, 2 a user error), one
`paperzoo: error:` line on stderr naming the key, file or value, and the records on disk: every run directory
ends completed, failed or preempted (or is recognisably interrupted), a sweep always writes summary.md,
summary.csv and trials.jsonl with every trial's state and error, and no file is left empty or half-written.
Rows with a full disk mount a small tmpfs as the run root (tests run as root); they skip where mounting is
not permitted.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from cluster.states import State, run_state
from components.uba.component import UBA
from pipelines.cli import main
from tests.reliability.mounts import tmpfs

ROOT = Path(__file__).resolve().parents[2]
SWEEP = "faults"
PHIS = [0.5, 1, 2]  # three trials, seed 0; the middle one is the one a row breaks


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """A data root with images/digits only: all this file's runs read."""
    from pipelines.datasets import prepare

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    root = tmp_path_factory.mktemp("data")
    prepare("images/digits", dict(params["datasets"]["images/digits"]), root)
    return root


@dataclass
class Scene:
    tmp: Path
    params: Path
    data: Path
    runs: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture
    preempt_at: Callable[[int], Callable[..., None]]  # tests/conftest.py's PreemptAt: SIGTERM at a step

    def cli(self, *args: str, runs: Path | None = None) -> tuple[int, str, str]:
        """`paperzoo --params P --data-dir D --run-root R ARGS`, in this process: (exit code, stdout, stderr)."""
        self.capsys.readouterr()
        argv = ["--params", str(self.params), "--data-dir", str(self.data), "--run-root", str(runs or self.runs)]
        try:
            code = main([*argv, *args])
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
        out, err = self.capsys.readouterr()
        return code, out, err

    def sweep(self, *args: str) -> tuple[int, str, str]:
        return self.cli("sweep", SWEEP, "--preset", "test", *args)

    def break_trial(self, raised: Callable[[], BaseException], phi: float | None = 1) -> None:
        """The component raises `raised()` in the trial with schedule.phi == phi (every trial if phi is None)."""
        original = UBA.run

        def run(component, cfg, ctx):
            if phi is None or cfg.schedule.phi == phi:
                raise raised()
            return original(component, cfg, ctx)

        self.monkeypatch.setattr(UBA, "run", run)


def one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("paperzoo: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def nothing_half_written(root: Path) -> None:
    """No empty file, no temporary sibling left, every JSON and JSON-lines file parses."""
    for path in Path(root).rglob("*"):
        if not path.is_file():
            continue
        assert path.stat().st_size > 0, f"empty file {path}"
        assert not (path.name.startswith(".") and path.name.endswith(".tmp")), f"temporary file left: {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)


def the_sweep(scene: Scene) -> Path:
    (directory,) = (scene.runs / "sweeps" / SWEEP).iterdir()
    for name in ("summary.md", "summary.csv", "trials.jsonl", "sweep.json"):
        assert (directory / name).is_file(), name
    return directory


def trial_states(directory: Path) -> list[tuple[str, str]]:
    return [(t["status"], t["error"]) for t in map(json.loads, (directory / "trials.jsonl").read_text().splitlines())]


def run_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "run.json").read_text())


def the_run(runs: Path) -> Path:
    (run_dir,) = (runs / "uba").iterdir()
    return run_dir


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def fill(mountpoint: Path) -> None:
    """Take every free byte of the tmpfs."""
    with open(mountpoint / "filler", "ab", buffering=0) as handle:
        chunk = b"\0" * 4096
        try:
            while True:
                handle.write(chunk)
        except OSError:
            pass


# Rows: sweeps.


def trial_raises(error: type[BaseException], message: str) -> Callable[[Scene], None]:
    """An error of another kind than paperzoo's in one trial: the others complete, the summary says which and
    why, the sweep exits 1."""

    def case(scene: Scene) -> None:
        scene.break_trial(lambda: error(message))
        code, out, err = scene.sweep()
        assert code == 1
        directory = the_sweep(scene)
        one_error_line(err, f"sweep {SWEEP} failed", "1 of 3", "1 failed", str(directory / "summary.md"))
        expected = f"{error.__name__}: {message}"
        assert trial_states(directory) == [("completed", ""), ("failed", expected), ("completed", "")]
        summary = (directory / "summary.md").read_text()
        assert "failed" in summary.splitlines()[0] and expected in summary and "1 of 3 trials" in summary
        assert json.loads((directory / "sweep.json").read_text())["status"] == "failed"
        failed = directory / "trials" / sorted(os.listdir(directory / "trials"))[1]
        assert run_info(failed)["status"] == "failed" and run_info(failed)["error"] == expected
        assert error.__name__ in (failed / "traceback.txt").read_text()  # a bug's traceback is kept
        assert expected in out  # the summary printed
        nothing_half_written(scene.runs)

    return case


def all_trials_fail(scene: Scene) -> None:
    scene.break_trial(lambda: ValueError("bad shape"), phi=None)
    code, _, err = scene.sweep()
    assert code == 1
    directory = the_sweep(scene)
    one_error_line(err, "3 of 3", "3 failed")
    assert trial_states(directory) == [("failed", "ValueError: bad shape")] * 3
    assert json.loads((directory / "sweep.json").read_text())["counts"] == {"failed": 3}
    assert "3 of 3 trials did not complete" in (directory / "summary.md").read_text()
    nothing_half_written(scene.runs)


def sigterm_mid_sweep(scene: Scene) -> None:
    """SIGTERM (what SLURM sends before preemption) at step 10 of the second trial stops the whole sweep."""
    from cluster.backends import local

    original = local.run_spec
    started = []

    def run_spec(spec, sinks=(), dist=None):
        started.append(spec.run_dir)
        return original(spec, sinks=[scene.preempt_at(10)] if len(started) == 2 else sinks, dist=dist)

    scene.monkeypatch.setattr(local, "run_spec", run_spec)
    handler = signal.getsignal(signal.SIGTERM)
    code, _, err = scene.sweep()
    assert code == 1 and len(started) == 2  # the third trial never started
    assert signal.getsignal(signal.SIGTERM) == handler
    directory = the_sweep(scene)
    one_error_line(err, f"sweep {SWEEP} preempted", "1 preempted", "1 cancelled")
    (first, _), (second, why), (third, never) = trial_states(directory)
    assert (first, second, third) == ("completed", "preempted", "cancelled")
    assert "stopped at step 11 of 30" in why and "not started" in never
    assert json.loads((directory / "sweep.json").read_text())["status"] == "preempted"
    assert (Path(started[1]) / "checkpoints" / "step_000000011").is_dir()  # checkpointed: resumable
    assert run_info(started[1])["status"] == "preempted"
    nothing_half_written(scene.runs)


def sigterm_between_trials(scene: Scene) -> None:
    """A signal that lands between two trials stops the sweep before the next one starts."""
    from cluster.backends import local

    original = local.run_spec

    def run_spec(spec, sinks=(), dist=None):
        result = original(spec, sinks=sinks, dist=dist)
        os.kill(os.getpid(), signal.SIGTERM)  # after the trial's own handler is gone
        return result

    scene.monkeypatch.setattr(local, "run_spec", run_spec)
    code, _, err = scene.sweep()
    assert code == 1
    directory = the_sweep(scene)
    one_error_line(err, f"sweep {SWEEP} cancelled", "2 cancelled")
    assert [s for s, _ in trial_states(directory)] == ["completed", "cancelled", "cancelled"]
    assert "SIGTERM" in trial_states(directory)[1][1]
    nothing_half_written(scene.runs)


def ctrl_c_mid_sweep(scene: Scene) -> None:
    """Ctrl-C in the second trial: exit 130, and the summary is still written (interrupted, cancelled)."""
    scene.break_trial(KeyboardInterrupt)
    code, _, err = scene.sweep()
    assert code == 130 and "interrupted" in err
    directory = the_sweep(scene)
    assert [s for s, _ in trial_states(directory)] == ["completed", "interrupted", "cancelled"]
    assert json.loads((directory / "sweep.json").read_text())["status"] == "cancelled"
    nothing_half_written(scene.runs)


def seeds_not_integers(scene: Scene) -> None:
    code, out, err = scene.sweep("--seeds", "a,b")
    assert code == 2 and not out
    one_error_line(err, "--seeds a,b", "'a'")
    assert not scene.runs.exists()


def sweep_checkpoint_every_negative(scene: Scene) -> None:
    code, _, err = scene.sweep("--checkpoint-every", "-5")
    assert code == 2
    one_error_line(err, "--checkpoint-every -5")
    assert not scene.runs.exists()


# Rows: one run.


def run_checkpoint_every_negative(scene: Scene) -> None:
    code, out, err = scene.cli("run", "uba", "--preset", "test", "--checkpoint-every", "-5")
    assert code == 2 and not out
    one_error_line(err, "--checkpoint-every -5")
    assert not scene.runs.exists()


def bad_seed(seed: str) -> Callable[[Scene], None]:
    """A seed numpy refuses: rejected before anything is written, or a run that records its failure."""

    def case(scene: Scene) -> None:
        code, _, err = scene.cli("run", "uba", "--preset", "test", "--seed", seed)
        line = one_error_line(err, seed)
        if code == 2:
            assert not (scene.runs / "uba").exists(), line
        else:
            assert code == 1
            info = run_info(the_run(scene.runs))
            assert info["status"] == "failed" and "ValueError" in info["error"]
        nothing_half_written(scene.runs)

    return case


def failure_before_the_component(scene: Scene) -> None:
    """An error while the run is set up (strategy, sinks, seeds), after run.json says running, fails the run."""
    import cluster.runner

    def broken(*args, **kwargs):
        raise RuntimeError("no such device")

    scene.monkeypatch.setattr(cluster.runner, "make_strategy", broken)
    code, _, err = scene.cli("run", "uba", "--preset", "test")
    assert code == 1
    run_dir = the_run(scene.runs)
    one_error_line(err, "run failed", "RuntimeError: no such device", str(run_dir))
    info = run_info(run_dir)
    assert info["status"] == "failed" and info["error"] == "RuntimeError: no such device"
    assert not (run_dir / "metrics.json").exists()
    nothing_half_written(scene.runs)


def interrupted_run(scene: Scene) -> None:
    """A run.json left "running" by a process that is gone reads as interrupted (report, ledger), and
    `--resume` continues it."""
    from cluster.launch import LaunchSpec, outcome_from_run_dir

    assert scene.cli("run", "uba", "--preset", "test")[0] == 0
    run_dir = the_run(scene.runs)
    info = run_info(run_dir)
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "running", "pid": dead_pid()}))
    assert run_state(run_info(run_dir), run_dir) == State.INTERRUPTED
    spec = LaunchSpec("uba", "test", {}, 0, {}, str(run_dir), str(scene.data))
    outcome = outcome_from_run_dir(spec)
    assert outcome.status == State.INTERRUPTED and "ended without recording an outcome" in outcome.error
    code, out, _ = scene.cli("report", "--out", str(scene.tmp / "reports"))
    assert code == 0
    rows = [line for line in (scene.tmp / "reports" / "index.md").read_text().splitlines() if "| `uba` |" in line]
    assert any("| `uba` | interrupted |" in row for row in rows), rows
    code, _, err = scene.cli("run", "--resume", str(run_dir))
    assert code == 0, err
    assert run_info(run_dir)["status"] == "completed" and run_info(run_dir)["resumed"] == 1
    nothing_half_written(scene.runs)


def resume_of_a_live_run(scene: Scene) -> None:
    """A run whose process still lives on this host is not resumed under it."""
    assert scene.cli("run", "uba", "--preset", "test")[0] == 0
    run_dir = the_run(scene.runs)
    info = run_info(run_dir)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {
            **info,
            "status": "running",
            "pid": alive.pid,
            "pid_started": round(psutil.Process(alive.pid).create_time(), 2),
        }
        (run_dir / "run.json").write_text(json.dumps(live))
        code, _, err = scene.cli("run", "--resume", str(run_dir))
    finally:
        alive.kill()
        alive.wait()
    assert code == 2
    one_error_line(err, str(run_dir), f"still running (process {alive.pid}")


def resume_of_a_completed_run(scene: Scene) -> None:
    assert scene.cli("run", "uba", "--preset", "test")[0] == 0
    run_dir = the_run(scene.runs)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = scene.cli("run", "--resume", str(run_dir))
    assert code == 2
    one_error_line(err, str(run_dir), "already completed")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def resume_of_a_non_run_dir(scene: Scene) -> None:
    folder = scene.tmp / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    code, _, err = scene.cli("run", "--resume", str(folder))
    assert code == 2
    one_error_line(err, str(folder), "is not a run directory")
    assert sorted(os.listdir(folder)) == ["notes.txt"]


def kill_9_then_resume(scene: Scene) -> None:
    """kill -9 after the first checkpoint: run.json reads interrupted, and --resume gives the metrics of an
    uninterrupted run, bit for bit."""
    args = ["run", "uba", "--preset", "smoke", "--checkpoint-every", "20"]
    whole_root = scene.tmp / "whole"
    assert scene.cli(*args, runs=whole_root)[0] == 0
    whole = the_run(whole_root)
    argv = ["--params", str(scene.params), "--data-dir", str(scene.data), "--run-root", str(scene.runs), *args]
    victim = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    try:
        while not list(scene.runs.glob("uba/*/checkpoints/step_*")):
            assert victim.poll() is None, f"the run ended before its first checkpoint: {victim.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.005)
        victim.kill()
    finally:
        victim.kill()
        victim.wait()
        victim.stderr.close()
    run_dir = the_run(scene.runs)
    info = run_info(run_dir)
    assert info["status"] == "running" and info["pid"] == victim.pid and not (run_dir / "metrics.json").exists()
    assert run_state(info, run_dir) == State.INTERRUPTED
    code, _, err = scene.cli("run", "--resume", str(run_dir))
    assert code == 0, err
    assert run_info(run_dir)["status"] == "completed" and run_info(run_dir)["resumed"] == 1
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())
    losses = [
        [r.get("train/loss") for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
        for d in (whole, run_dir)
    ]
    assert losses[0] == losses[1]
    nothing_half_written(scene.runs)


# Rows: a full disk under the run root.


def full_disk_at_the_final_writes(scene: Scene) -> None:
    """The disk fills while the component trains: its last writes (DVCLive's summary, metrics.json) fail as
    one line naming the file, and run.json still ends failed, with nothing empty or half-written."""
    with tmpfs(scene.tmp / "full", "1m") as disk:
        original = UBA.run

        def run(component, cfg, ctx):
            metrics = original(component, cfg, ctx)
            fill(disk)
            return metrics

        scene.monkeypatch.setattr(UBA, "run", run)
        code, _, err = scene.cli("run", "uba", "--preset", "test", runs=disk)
        assert code == 1
        run_dir = the_run(disk)
        one_error_line(err, "run failed", f"cannot write {run_dir}/", "no space left on device")
        info = run_info(run_dir)
        assert info["status"] == "failed" and "no space left on device" in info["error"]
        assert not (run_dir / "metrics.json").exists()
        nothing_half_written(disk)


def full_disk_mid_training(scene: Scene) -> None:
    """The disk fills at step 60 of 200: the next write that needs a new block (a record of metrics.jsonl
    across a page, a DVCLive file) fails as one line naming it; metrics.jsonl keeps whole records only."""
    import cluster.runner

    with tmpfs(scene.tmp / "full", "1m") as disk:
        original = cluster.runner.JsonlSink.__call__

        def log(sink, metrics, step=None):
            if step == 60:
                fill(disk)
            return original(sink, metrics, step)

        scene.monkeypatch.setattr(cluster.runner.JsonlSink, "__call__", log)
        code, _, err = scene.cli("run", "uba", "--preset", "test", "--set", "budget=200", runs=disk)
        assert code == 1
        run_dir = the_run(disk)
        one_error_line(err, "run failed", f"cannot write {run_dir}/", "no space left on device")
        assert run_info(run_dir)["status"] == "failed"
        steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(len(steps))) and len(steps) > 60
        nothing_half_written(disk)


def full_disk_at_the_last_run_json(scene: Scene) -> None:
    """No new file fits when the run ends: run.json is rewritten inside its own blocks and says completed."""
    import cluster.runner

    with tmpfs(scene.tmp / "full", "1m") as disk:
        original = cluster.runner.finish_run_info

        def finish(work_dir, run_dir, info):
            fill(disk)
            return original(work_dir, run_dir, info)

        scene.monkeypatch.setattr(cluster.runner, "finish_run_info", finish)
        code, _, err = scene.cli("run", "uba", "--preset", "test", runs=disk)
        assert code == 0, err
        info = run_info(the_run(disk))
        assert info["status"] == "completed" and "error" not in info
        nothing_half_written(disk)


def full_disk_from_the_start(scene: Scene) -> None:
    """No room for run.json: one line naming it, and no run directory left behind."""
    with tmpfs(scene.tmp / "full", "1m") as disk:
        fill(disk)
        code, _, err = scene.cli("run", "uba", "--preset", "test", runs=disk)
        assert code == 2
        one_error_line(err, f"cannot write {disk}/uba/", "no space left on device")
        assert not (disk / "uba").exists() or not any((disk / "uba").iterdir())  # no run directory left
        (disk / "filler").unlink()
        nothing_half_written(disk)


CASES: list[tuple[str, Callable[[Scene], None]]] = [
    ("trial_raises_runtime_error", trial_raises(RuntimeError, "boom in trial 2")),
    ("trial_raises_assertion_error", trial_raises(AssertionError, "shapes differ")),
    ("all_trials_fail", all_trials_fail),
    ("sigterm_mid_sweep", sigterm_mid_sweep),
    ("sigterm_between_trials", sigterm_between_trials),
    ("ctrl_c_mid_sweep", ctrl_c_mid_sweep),
    ("sweep_seeds_not_integers", seeds_not_integers),
    ("sweep_checkpoint_every_negative", sweep_checkpoint_every_negative),
    ("run_checkpoint_every_negative", run_checkpoint_every_negative),
    ("bad_seed_negative", bad_seed("-1")),
    ("bad_seed_too_large", bad_seed(str(2**40))),
    ("failure_before_the_component", failure_before_the_component),
    ("interrupted_run_read_and_resumed", interrupted_run),
    ("resume_of_a_live_run", resume_of_a_live_run),
    ("resume_of_a_completed_run", resume_of_a_completed_run),
    ("resume_of_a_non_run_dir", resume_of_a_non_run_dir),
    ("kill_9_then_resume_bit_exact", kill_9_then_resume),
    ("full_disk_at_the_final_writes", full_disk_at_the_final_writes),
    ("full_disk_mid_training", full_disk_mid_training),
    ("full_disk_at_the_last_run_json", full_disk_at_the_last_run_json),
    ("full_disk_from_the_start", full_disk_from_the_start),
]


@pytest.mark.parametrize("case", [case for _, case in CASES], ids=[name for name, _ in CASES])
def test_run_fault(case, digits, tmp_path, monkeypatch, capsys, preempt_at):
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["sweeps"][SWEEP] = {
        "component": "uba",
        "grid": {"schedule.phi": PHIS},
        "seeds": [0],
        "metric": "val/loss",
        "mode": "min",
    }
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    case(Scene(tmp_path, params_file, digits, tmp_path / "runs", monkeypatch, capsys, preempt_at))
