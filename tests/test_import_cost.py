"""What a command imports, checked in a fresh interpreter: looking around (`--help`, `list`) loads nothing heavy,
and a run loads no DVCLive, DVC or pandas while still writing DVCLive's files. Speed lives in benchmarks/."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.runner import DvcLiveSink
from components.registry import REGISTRY, component_summary, get_component
from pipelines.params import dataset_specs, load_params

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "dvclive", "dvc", "matplotlib", "pandas", "scipy", "ray", "prefect", "deepspeed", "submitit")
# Runs the CLI in-process and prints the top-level packages it loaded, as the last line of stdout.
PROBE = """
import json, sys
from pipelines.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:  # --help
    code = done.code
print()
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
sys.exit(code)
"""


def loaded_by(*argv: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CI": "1", "PAPERZOO_PROGRESS_EVERY": "0"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [("--help",), ("run", "--help"), ("list",)])
def test_looking_around_imports_nothing_heavy(argv):
    assert loaded_by(*argv).isdisjoint(HEAVY)


def test_list_reads_presets_and_datasets_as_the_components_declare_them():
    for slug in REGISTRY:
        component = get_component(slug)
        assert component_summary(slug) == (tuple(component.presets), tuple(component.datasets)), slug


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    from pipelines.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    prepare("images/digits", dict(dataset_specs(load_params(ROOT / "params.yaml"))["images/digits"]), root)
    return root


def test_a_run_writes_dvclive_files_without_importing_dvclive(digits_root, tmp_path):
    runs = tmp_path / "runs"
    argv = ("run", "uba", "--preset", "test", "--data-dir", str(digits_root), "--run-root", str(runs))
    assert loaded_by(*argv).isdisjoint({"dvclive", "dvc", "pandas", "ray", "prefect", "deepspeed", "submitit"})
    (run_dir,) = (runs / "uba").iterdir()
    summary = json.loads((run_dir / "dvclive" / "metrics.json").read_text())
    assert summary["step"] == 30 and "loss" in summary["train"]
    assert (run_dir / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text().startswith("step\tloss\n")


def test_dvclive_files_are_byte_for_byte_those_of_dvclive(tmp_path):
    from dvclive import Live

    records = [
        ({"train/loss": 1.0}, None),  # before any step: DVCLive's step 0, and no "step" in the summary yet
        ({"train/loss": 0.5, "lr": 0.1}, 0),
        ({"train/loss": math.nan, "val/acc/top1": 0.25}, 3),
        ({"train/loss": math.inf, "lr": 1e-20}, 4),
        ({"val/loss": -math.inf}, None),
        ({"x": 1 / 3}, 7),
    ]
    ours = DvcLiveSink(tmp_path / "ours")
    live = Live(dir=str(tmp_path / "theirs"), save_dvc_exp=False, dvcyaml=False, report=None)
    for metrics, step in records:
        ours(metrics, step)
        if step is not None:
            live.step = step
        for name, value in metrics.items():
            live.log_metric(name, float(value))
    ours.close()
    live.end()

    def files(root: Path) -> dict[str, bytes]:
        return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}

    assert files(tmp_path / "ours") == files(tmp_path / "theirs")


def test_pipeline_stages_that_train_nothing_import_no_torch(digits_root, tmp_path):
    # `dvc repro` starts one process per stage: preparing a series and writing the report need no torch (1.5 s)
    data = tmp_path / "data"
    assert "torch" not in loaded_by("--data-dir", str(data), "prepare", "series", "co2")
    runs = tmp_path / "runs"
    loaded_by("run", "uba", "--preset", "test", "--data-dir", str(digits_root), "--out", str(runs / "dvc" / "uba"))
    assert "torch" not in loaded_by("--run-root", str(runs), "report", "--out", str(tmp_path / "reports"))
    assert "uba" in (tmp_path / "reports" / "index.md").read_text()
