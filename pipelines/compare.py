"""`paperzoo compare RUN_OR_SWEEP...`: the config keys that differ between runs and their final metrics, side by
side (what `dvc exp show` does, for paperzoo's run directories); a sweep folder stands for its trials' runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from components.core.errors import ConfigError


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'schedule': {'phi': 2}} -> {'schedule.phi': 2}, as --set names the keys."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def run_dirs_of(path: Path) -> list[Path]:
    """A run directory, or every trial run of a sweep folder (its ledger, or trials.jsonl for an older sweep)."""
    from pipelines.ledger import read_ledger

    path = Path(path)
    if (path / "run.json").is_file():
        return [path]
    if (path / "sweep.json").is_file():
        records = read_ledger(path)
        if not records and (path / "trials.jsonl").is_file():
            records = [json.loads(line) for line in (path / "trials.jsonl").read_text().splitlines() if line.strip()]
        return [Path(r["run_dir"]) for r in records if r.get("run_dir") and (Path(r["run_dir"]) / "run.json").is_file()]
    raise ConfigError(f"{path} is neither a run directory (run.json) nor a sweep folder (sweep.json)")


def describe_run(run_dir: Path) -> dict[str, Any]:
    from cluster.states import run_state
    from pipelines.ledger import run_info

    info = run_info(run_dir) or {}
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ValueError):
        config = {}
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    keys = {"component": info.get("component"), "preset": info.get("preset"), "seed": info.get("seed")}
    return {
        "run": run_dir.name,
        "state": run_state(info, run_dir),
        "config": {**keys, **flatten(config)},
        "metrics": metrics,
    }


def compare_rows(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(one row per run, the config keys that differ, the metric names), runs in the order given.

    A run reached twice (a widened sweep reports the trials an earlier run of it completed from their
    folders) is one row."""
    run_dirs = {run_dir.resolve(): None for path in paths for run_dir in run_dirs_of(path)}
    runs = [describe_run(run_dir) for run_dir in run_dirs]
    if not runs:
        raise ConfigError("nothing to compare: no run directory with a run.json among the paths")
    keys = sorted({key for run in runs for key in run["config"]})
    missing = object()
    differing = [key for key in keys if len({repr(run["config"].get(key, missing)) for run in runs}) > 1]
    metric_names = sorted({name for run in runs for name in run["metrics"]})
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run["run"], "state": run["state"]}
        row.update({key: run["config"].get(key, "") for key in differing})
        row.update({name: run["metrics"].get(name, "") for name in metric_names})
        rows.append(row)
    return rows, differing, metric_names


def format_value(value: Any) -> str:
    """A number as every table here shows it (4 significant digits); anything else as str()."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cell(value: Any) -> str:
    return "" if value is None else format_value(value)


def compare(paths: Sequence[Path], markdown: bool = False) -> str:
    from pipelines.ledger import format_table

    rows, differing, metric_names = compare_rows(paths)
    columns = ["run", "state", *differing, *metric_names]
    text_rows = [{column: cell(row.get(column, "")) for column in columns} for row in rows]
    note = f"{len(rows)} runs; config keys that differ: {', '.join(differing) or 'none'}"
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in text_rows]
        return note + "\n\n" + "\n".join(lines) + "\n"
    return note + "\n\n" + format_table(text_rows, columns)
