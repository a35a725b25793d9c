"""Every input mistake is caught before anything runs: one catalogue, one row per fault.

Each row runs the `paperzoo` entry function in-process on a params.yaml written into tmp_path (the project's own,
plus the fault) and checks the contract of docs/architecture.md, "Configuration": exit code 2, exactly one line on
stderr (`paperzoo: error: ...`) that names the key, file or value to fix, nothing on stdout, and nothing written
(tmp_path holds the same files before and after; no run directory, nothing in the run root). Rows with a
read-only root mount a read-only tmpfs (tests run as root); they skip where mounting is not permitted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from tests.reliability.mounts import remount_readonly, tmpfs

ROOT = Path(__file__).resolve().parents[2]
PARAMS_TEXT = (ROOT / "params.yaml").read_text()


def edit(change: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    """A params.yaml fault made on the parsed file (comments are lost, which no check reads)."""

    def apply(text: str) -> str:
        params = yaml.safe_load(text)
        change(params)
        return yaml.safe_dump(params, sort_keys=False)

    return apply


def sweep(name: str, **changes: Any) -> Callable[[str], str]:
    return edit(lambda params: params["sweeps"][name].update(changes))


def section(slug: str, value: Any) -> Callable[[str], str]:
    return edit(lambda params: params.__setitem__(slug, value))


def replace(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return apply


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # after the common --params/--data-dir/--run-root; {ro}, {tmp}, {run} are filled in
    expect: list[str]  # substrings of the one stderr line: the key, file or value, and the advice
    params: Callable[[str], str] | None = None  # the fault in params.yaml
    readonly: bool = False  # mount a read-only tmpfs at {ro}
    finished_run: bool = False  # a completed run directory at {run} (outside the run root), for publish


UBA_TEST = ["run", "uba", "--preset", "test"]
CASES = [
    # params.yaml: sweeps
    Case(
        "sweep_seeds_not_integers",
        ["sweep", "uba_phi"],
        ["params.yaml", "sweeps.uba_phi.seeds", "'one'"],
        sweep("uba_phi", seeds=[0, "one"]),
    ),
    Case(
        "sweep_seeds_scalar",
        ["sweep", "uba_phi"],
        ["params.yaml", "sweeps.uba_phi.seeds must be a list", "int 3"],
        sweep("uba_phi", seeds=3),
    ),
    Case("sweep_seeds_empty", ["sweep", "uba_phi"], ["sweeps.uba_phi.seeds is empty"], sweep("uba_phi", seeds=[])),
    Case("sweep_seeds_negative", ["sweep", "uba_phi"], ["sweeps.uba_phi.seeds holds -1"], sweep("uba_phi", seeds=[-1])),
    Case(
        "sweep_grid_axis_scalar",
        ["sweep", "uba_phi"],
        ["sweeps.uba_phi.grid.schedule.phi must be a list", "0.5"],
        sweep("uba_phi", grid={"schedule.phi": 0.5, "optimizer": ["sgd"]}),
    ),
    Case(
        "sweep_grid_axis_empty",
        ["sweep", "uba_phi"],
        ["sweeps.uba_phi.grid.optimizer is an empty list"],
        sweep("uba_phi", grid={"schedule.phi": [0.5], "optimizer": []}),
    ),
    Case("sweep_grid_empty", ["sweep", "uba_phi"], ["sweeps.uba_phi.grid is empty"], sweep("uba_phi", grid={})),
    Case(
        "sweep_grid_not_a_mapping",
        ["sweep", "uba_phi"],
        ["sweeps.uba_phi.grid must map keys to lists", "not list"],
        sweep("uba_phi", grid=["schedule.phi", 0.5]),
    ),
    Case(
        "sweep_unknown_key",
        ["sweep", "uba_phi"],
        ["sweeps.uba_phi.metrics", "did you mean 'metric'"],
        sweep("uba_phi", metrics="val/loss"),
    ),
    Case(
        "sweep_grid_value_not_a_choice",
        ["sweep", "uba_phi", "--preset", "test"],
        ["sweep 'uba_phi'", "optimizer=adamx", "optimizer = 'adamx'", "did you mean 'adamw'"],
        sweep("uba_phi", grid={"schedule.phi": [0.5, 2], "optimizer": ["sgd", "adamx"]}),
    ),
    Case(
        "sweep_grid_value_out_of_range",
        ["sweep", "uba_phi", "--preset", "test"],
        ["sweep 'uba_phi'", "schedule.phi=-1", "schedule.phi = -1"],
        sweep("uba_phi", grid={"schedule.phi": [0.5, -1], "optimizer": ["sgd"]}),
    ),
    Case(
        "sweep_grid_unknown_config_key",
        ["sweep", "uba_phi", "--preset", "test"],
        ["sweep 'uba_phi'", "unknown key 'schedule.phy'", "did you mean 'schedule.phi'"],
        sweep("uba_phi", grid={"schedule.phy": [0.5]}),
    ),
    Case("sweep_unknown", ["sweep", "uba_ph"], ["unknown sweep 'uba_ph'", "did you mean 'uba_phi'"]),
    Case(
        "sweep_narrowed_to_unknown_axis",
        ["sweep", "uba_phi", "--grid", "schedule.ph=1"],
        ["--grid schedule.ph", "did you mean 'schedule.phi'"],
    ),
    # params.yaml: structure and duplicate keys
    Case(
        "section_is_a_list",
        UBA_TEST,
        ["params.yaml", "section 'uba' must be a mapping", "not list"],
        section("uba", ["optimizer", "sgd"]),
    ),
    Case(
        "section_unknown_key",
        UBA_TEST,
        ["uba: unknown key 'optimiser'", "did you mean 'optimizer'"],
        section("uba", {"optimiser": "sgd"}),
    ),
    Case(
        "sweep_scheduler_unknown",
        UBA_TEST,
        ["params.yaml: sweeps.uba_phi.scheduler must be one of asha, fifo, none", "not 'hyperband'"],
        sweep("uba_phi", scheduler="hyperband"),
    ),
    Case(
        "sweep_evaluations_negative",
        UBA_TEST,
        ["params.yaml: sweeps.uba_phi.evaluations must be a whole number >= 0", "not -2"],
        sweep("uba_phi", evaluations=-2),
    ),
    Case(
        "derived_dataset_parent_unknown",
        UBA_TEST,
        [
            "params.yaml: derived_datasets.continual/permuted_digits.parent 'images/digit'",
            "did you mean 'images/digits'",
        ],
        edit(lambda params: params["derived_datasets"]["continual/permuted_digits"].update(parent="images/digit")),
    ),
    Case(
        "derived_dataset_without_parent",
        UBA_TEST,
        ["params.yaml: derived_datasets.continual/permuted_digits", "needs a 'source' and the 'parent'"],
        edit(lambda params: params["derived_datasets"]["continual/permuted_digits"].pop("parent")),
    ),
    Case(
        "params_unknown_top_level_key",
        UBA_TEST,
        ["params.yaml", "unknown key 'ubaa'", "did you mean 'uba'"],
        edit(lambda params: params.__setitem__("ubaa", {})),
    ),
    Case(
        "params_duplicate_top_level_key",
        UBA_TEST,
        ["params.yaml line", "duplicate key 'preset' (first on line"],
        lambda text: text + "preset: test\n",
    ),
    Case(
        "params_duplicate_nested_key",
        UBA_TEST,
        ["params.yaml line", "duplicate key 'optimizer'"],
        replace("  optimizer: sgd ", "  optimizer: sgd\n  optimizer: lion "),
    ),
    Case(
        "params_duplicate_key_in_flow_mapping",
        UBA_TEST,
        ["params.yaml line", "duplicate key 'phi'"],
        replace("phi: 1.0,", "phi: 1.0, phi: 2.0,"),
    ),
    Case("params_not_yaml", UBA_TEST, ["params.yaml line", "not valid YAML"], lambda text: text + "uba: [\n"),
    Case("params_missing", ["--params", "{tmp}/nowhere.yaml", *UBA_TEST], ["nowhere.yaml not found"]),
    Case(
        "profile_duplicate_key",
        [*UBA_TEST, "--profile", "{tmp}/dup.yaml"],
        ["dup.yaml line", "duplicate key 'processes'"],
    ),
    Case(
        "components_lists_unknown",
        UBA_TEST,
        ["components lists unknown component 'ubb'", "did you mean 'uba'"],
        edit(lambda params: params["components"].append("ubb")),
    ),
    # presets and choices: did you mean
    Case(
        "params_preset_misspelled",
        ["run", "uba"],
        ["params.yaml", "preset 'smok'", "did you mean 'smoke'"],
        edit(lambda params: params.__setitem__("preset", "smok")),
    ),
    Case(
        "cli_preset_misspelled",
        ["run", "uba", "--preset", "smok"],
        ["unknown preset 'smok' for uba", "did you mean 'smoke'"],
    ),
    Case(
        "optimizer_misspelled",
        [*UBA_TEST, "--set", "optimizer=adamx"],
        ["uba: optimizer = 'adamx' is not one of", "did you mean 'adamw'"],
    ),
    Case(
        "schedule_name_misspelled",
        [*UBA_TEST, "--set", "schedule.name=cosin"],
        ["uba: schedule.name = 'cosin' is not one of", "did you mean 'cosine'"],
    ),
    Case(
        "choice_misspelled_in_section",
        UBA_TEST,
        ["uba: optimizer = 'lino'", "did you mean 'lion'"],
        section("uba", {"optimizer": "lino"}),
    ),
    Case("config_verb_misspelled_choice", ["config", "uba", "--set", "optimizer=adamx"], ["did you mean 'adamw'"]),
    # cross-field constraints, at config resolution
    Case(
        "warmup_equals_budget",
        [*UBA_TEST, "--set", "schedule.warmup=30"],
        ["uba: schedule.warmup (30) must be smaller than budget (30 steps)"],
    ),
    Case(
        "warmup_above_budget_in_section",
        ["run", "uba"],
        ["uba: schedule.warmup (500)", "budget (300 steps)"],
        replace("warmup: 0}", "warmup: 500}"),
    ),
    Case(
        "theory_with_lr",
        ["run", "lion", "--preset", "test", "--set", "theory.c1=1", "--set", "lr=0.1"],
        ["lion:", "lr: the theory schedule"],
    ),
    # values, keys, names that already behaved
    Case(
        "unknown_key_suggested",
        [*UBA_TEST, "--set", "schedule.phy=1"],
        ["unknown key 'schedule.phy'", "did you mean 'schedule.phi'"],
    ),
    Case("wrong_type", [*UBA_TEST, "--set", "budget=many"], ["uba: budget = 'many'"]),
    Case("out_of_range", [*UBA_TEST, "--set", "schedule.phi=0"], ["uba: schedule.phi = 0", "greater than 0"]),
    Case("unknown_component", ["run", "ubaa"], ["unknown component 'ubaa'", "did you mean 'uba'"]),
    Case("bad_set_syntax", [*UBA_TEST, "--set", "schedule.phi"], ["override 'schedule.phi' must look like key=value"]),
    Case(
        "unknown_profile",
        [*UBA_TEST, "--profile", "cpu-ddp3"],
        ["unknown profile 'cpu-ddp3'", "did you mean 'cpu-ddp2'"],
    ),
    Case("negative_seed", [*UBA_TEST, "--seed", "-1"], ["seed -1 must be an integer"]),
    Case("resume_with_a_component", [*UBA_TEST, "--resume", "{tmp}"], ["--resume takes the run's own component"]),
    Case(
        "publish_timeout_not_positive",
        ["publish", "{run}", "--repo-id", "lab/uba", "--timeout", "0"],
        ["--timeout must be a positive number of seconds, got 0"],
        finished_run=True,
    ),
    # read-only roots: one line naming the path, before anything runs
    Case(
        "run_root_read_only",
        [*UBA_TEST, "--run-root", "{ro}/runs"],
        ["--run-root {ro}/runs is not writable"],
        readonly=True,
    ),
    Case(
        "sweep_run_root_read_only",
        ["sweep", "uba_phi", "--preset", "test", "--run-root", "{ro}"],
        ["--run-root {ro} is not writable"],
        readonly=True,
    ),
    Case(
        "publish_root_read_only",
        ["publish", "{run}", "--repo-id", "lab/uba", "--local-root", "{ro}/published"],
        ["--local-root {ro}/published is not writable"],
        readonly=True,
        finished_run=True,
    ),
    Case(
        "data_dir_read_only",
        ["prepare", "images", "digits", "--data-dir", "{ro}"],
        ["--data-dir {ro} is not writable"],
        readonly=True,
    ),
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Only images/digits prepared (the uba and lion test presets read it): the rows fail before any other check."""
    from pipelines.datasets import prepare
    from pipelines.params import load_params

    root = tmp_path_factory.mktemp("data")
    prepare("images/digits", dict(load_params(ROOT / "params.yaml")["datasets"]["images/digits"]), root)
    return root


def finished_run(directory: Path) -> Path:
    """A completed run directory as `paperzoo run` leaves it, reduced to what publish reads first."""
    run = directory / "uba" / "20260101-000000-0123abcd-s0"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"component": "uba", "status": "completed", "preset": "test", "seed": 0}))
    (run / "metrics.json").write_text(json.dumps({"val/acc": 0.5}))
    (run / "config.yaml").write_text("task: digits_mlp\ndataset: images/digits\n")
    return run


def tree(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_size for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_input_fault_is_one_line_before_anything_runs(case, digits, tmp_path, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a relative default (runs/, published/) would land here and be seen
    params = tmp_path / "params.yaml"
    params.write_text(case.params(PARAMS_TEXT) if case.params else PARAMS_TEXT)
    (tmp_path / "dup.yaml").write_text("processes: 1\nthreads: 1\nprocesses: 2\n")
    runs, ro = tmp_path / "runs", tmp_path / "ro"
    run = finished_run(tmp_path_factory.mktemp("done")) if case.finished_run else None
    values = {"tmp": str(tmp_path), "ro": str(ro), "run": str(run)}
    argv = ["--params", str(params), "--data-dir", str(digits), "--run-root", str(runs)]
    argv += [arg.format(**values) for arg in case.argv]
    expect = [text.format(**values) for text in case.expect]
    with tmpfs(ro, "1m") if case.readonly else nullcontext():
        if case.readonly:
            remount_readonly(ro)
        before = tree(tmp_path)
        code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("paperzoo: error: "), err
    for text in expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert out == ""
    assert not runs.exists(), "a run root was created"
    assert tree(tmp_path) == before, "a file was written"
