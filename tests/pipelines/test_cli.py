"""The `paperzoo` command: verbs work, and bad input is one line on stderr with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, data_root: Path | None = None, run_root: Path | None = None) -> list[str]:
    base = ["--params", str(ROOT / "params.yaml")]
    if data_root:
        base += ["--data-dir", str(data_root)]
    if run_root:
        base += ["--run-root", str(run_root)]
    return base + list(args)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "ubaa"], "unknown component 'ubaa' (did you mean 'uba'?)"),
        (["run", "uba", "--set", "schedule.phy=1"], "unknown key 'schedule.phy' (did you mean 'schedule.phi'?)"),
        (["run", "uba", "--set", "budget=many"], "budget = 'many'"),
        (["run", "uba", "--set", "schedule.phi=0"], "schedule.phi = 0"),
        (["run", "uba", "--set", "optimizer=adam"], "optimizer = 'adam'"),
        (["run", "uba", "--set", "schedule.name=onecycle"], "schedule.name = 'onecycle'"),
        (["run", "uba", "--preset", "huge"], "unknown preset 'huge'"),
        (["run", "uba", "--preset", "smok"], "unknown preset 'smok' for uba (did you mean 'smoke'?)"),
        (["run", "uba", "--set", "optimizer=adamx"], "optimizer = 'adamx' is not one of sgd, "),
        (["run", "uba", "--set", "optimizer=adamx"], "(did you mean 'adamw'?)"),
        (["run", "uba", "--set", "schedule.name=cosin"], "(did you mean 'cosine'?)"),
        (["run", "uba", "--set", "schedule.warmup=300"], "uba: schedule.warmup (300) must be smaller than budget"),
        (["run", "uba", "--seed", "-1"], "seed -1 must be an integer"),
        (["sweep", "uba_ph"], "unknown sweep 'uba_ph' (did you mean 'uba_phi'?)"),
        (["prepare", "images", "digitz"], "dataset 'images/digitz' is not in"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys, tmp_path):
    assert main(cli(*args, data_root=tmp_path, run_root=tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("paperzoo: error:")


def test_missing_dataset_names_the_command(capsys, tmp_path):
    assert main(cli("run", "uba", data_root=tmp_path / "empty", run_root=tmp_path)) == 2
    assert "paperzoo prepare images digits" in capsys.readouterr().err
    assert not (tmp_path / "uba").exists()


def test_run_then_report_and_config(capsys, data_root, tmp_path):
    assert (
        main(
            cli(
                "run",
                "uba",
                "--preset",
                "test",
                "--set",
                "schedule.phi=0.5",
                "--set",
                "optimizer=lion",
                data_root=data_root,
                run_root=tmp_path / "runs",
            )
        )
        == 0
    )
    out = capsys.readouterr().out
    metrics = json.loads(out[: out.index("run directory:")])
    assert 0 <= metrics["val/acc"] <= 1
    (run_dir,) = (tmp_path / "runs" / "uba").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert main(cli("report", "--out", str(tmp_path / "reports"), run_root=tmp_path / "runs")) == 0
    assert f"report: {tmp_path / 'reports' / 'index.html'}" in capsys.readouterr().out
    report = (tmp_path / "reports" / "index.md").read_text()
    assert "### uba" in report and "val/acc" in report
    assert main(cli("config", "uba", "--set", "schedule.name=cosine")) == 0
    assert "name: cosine" in capsys.readouterr().out


def test_list_shows_components_and_sweeps(capsys, data_root):
    assert main(cli("list", data_root=data_root)) == 0
    out = capsys.readouterr().out
    assert "uba" in out and "uba_phi" in out and "images/digits" in out and "(prepared)" in out


def test_config_prints_the_numbers_the_run_uses(capsys):
    """No `lr: null`: the optimizer table's defaults are filled in, so the printed config is the run's."""
    assert main(cli("config", "uba", "--set", "optimizer=adamw")) == 0
    out = capsys.readouterr().out
    assert "\nlr: 0.001\n" in out and "\nweight_decay: 0.01\n" in out and "null" not in out
