"""Named sweeps from params.yaml: expansion into trials, a backend that runs them, and the summary table.

Every backend runs the same list of trials (a trial = config overrides + a seed), so results are
comparable across local, Ray Tune and SLURM. All trials are validated before the first one starts.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cluster.backends import get_backend
from cluster.launch import LaunchSpec, TrialOutcome, outcome_from_run_dir, run_info_path
from cluster.profiles import Profile
from cluster.runner import one_line, plan_run
from cluster.states import OK_STATES, RUNNING, State, process_identity, sweep_state
from components.core.config import parse_override
from components.core.errors import ConfigError, did_you_mean
from components.core.files import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class Trial:
    overrides: Mapping[str, Any]
    seed: int

    @property
    def point(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.overrides.items()) or "default"

    @property
    def name(self) -> str:
        return f"{self.point}-s{self.seed}".replace("/", "_")


@dataclass
class TrialResult:
    trial: Trial
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: str = ""
    error: str = ""


def parse_grid(texts: Sequence[str]) -> dict[str, list[Any]]:
    """['schedule.phi=0.5,2', 'optimizer=sgd'] -> {'schedule.phi': [0.5, 2], 'optimizer': ['sgd']}."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        key, raw = parse_override(text)
        values = raw if isinstance(raw, list) else [yaml.safe_load(part) for part in str(raw).split(",")]
        grid[key] = values
    return grid


def expand_sweep(
    sweep: Mapping[str, Any],
    grid: Mapping[str, list[Any]] | None = None,
    seeds: Sequence[int] | None = None,
    name: str = "sweep",
) -> list[Trial]:
    full_grid: dict[str, list[Any]] = {key: list(values) for key, values in (sweep.get("grid") or {}).items()}
    for key, values in (grid or {}).items():
        if key not in full_grid:
            raise ConfigError(
                f"--grid {key}: sweep '{name}' has no axis '{key}'{did_you_mean(key, full_grid)}; "
                f"axes: {', '.join(full_grid)}"
            )
        full_grid[key] = list(values)
    seeds = list(seeds if seeds is not None else sweep.get("seeds", [0]))
    keys = list(full_grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(full_grid[key] for key in keys))]
    return [Trial(point, seed) for point in points for seed in seeds]


def summarise(results: Sequence[TrialResult], metric: str, mode: str) -> list[dict[str, Any]]:
    """One row per grid point: mean and spread over seeds of every final metric, best first."""
    by_point: dict[str, list[TrialResult]] = {}
    for result in results:
        by_point.setdefault(result.trial.point, []).append(result)
    rows = []
    for point, group in by_point.items():
        done = [r for r in group if r.status == State.COMPLETED]
        stopped = sum(r.status == State.STOPPED for r in group)  # cut early by a scheduler (ASHA): not comparable
        row: dict[str, Any] = {
            "point": point,
            **group[0].trial.overrides,
            "seeds": len(group),
            "stopped": stopped,
            "failed": len(group) - len(done) - stopped,
        }
        names = sorted({key for r in done for key in r.metrics})
        for key in names:
            values = [r.metrics[key] for r in done if key in r.metrics]
            row[f"{key} mean"] = statistics.fmean(values)
            row[f"{key} std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    sign = 1 if mode == "min" else -1

    def rank(row: dict[str, Any]) -> float:
        value = row.get(f"{metric} mean")
        return sign * value if value is not None and math.isfinite(value) else math.inf

    return sorted(rows, key=rank)


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_columns(sweep: Mapping[str, Any], rows: Sequence[dict[str, Any]], metric: str) -> list[str]:
    axes = list((sweep.get("grid") or {}).keys())
    metric_columns = sorted({key for row in rows for key in row if key.endswith((" mean", " std"))})
    first = [f"{metric} mean", f"{metric} std"]
    return (
        axes
        + [c for c in first if c in metric_columns]
        + ["seeds", "stopped", "failed"]
        + [c for c in metric_columns if c not in first]
    )


def failures_markdown(results: Sequence[TrialResult]) -> str:
    """Which trials did not complete, and why: one row each (state and the one-line error)."""
    missed = [r for r in results if r.status not in OK_STATES]
    if not missed:
        return ""
    lines = [
        "",
        f"{len(missed)} of {len(results)} trials did not complete:",
        "",
        "| trial | state | error |",
        "|---|---|---|",
    ]
    for r in missed:
        error = (r.error or "").replace("|", "\\|")
        lines.append(f"| {Path(r.run_dir).name or r.trial.name} | {r.status} | {error} |")
    return "\n".join(lines) + "\n"


@dataclass
class SweepOutcome:
    directory: Path
    results: list[TrialResult]
    rows: list[dict[str, Any]]
    markdown: str
    status: str = State.COMPLETED  # cluster.states.sweep_state of the trials' states

    @property
    def failed(self) -> list[TrialResult]:
        """Trials that did not complete (failed, preempted, cancelled, interrupted); ASHA's stops are not."""
        return [r for r in self.results if r.status not in OK_STATES]


def salvage(spec: LaunchSpec, why: str) -> TrialOutcome:
    """A trial's outcome when its backend stopped before returning: what its run directory says, and
    cancelled for a trial that never started."""
    if run_info_path(spec) is None:
        return TrialOutcome(spec, State.CANCELLED, {}, f"not started: {why}", recorded=False)
    return outcome_from_run_dir(spec)


def run_sweep(
    name: str,
    params: Mapping[str, Any],
    *,
    backend: str = "local",
    profile: Profile | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seeds: Sequence[int] | None = None,
    preset: str | None = None,
    run_root: Path = Path("runs"),
    data_dir: Path = Path("data"),
    checkpoint_every: int = 0,
) -> SweepOutcome:
    """Expand, validate every trial, run them all on one backend, and write the summary table.

    The summary (summary.md, summary.csv, trials.jsonl, sweep.json's status) is written however the trials
    end, failed ones included; when the backend itself stops (Ctrl-C, a backend error) it is written from
    the run directories before the error goes on."""
    sweeps = params.get("sweeps") or {}
    if name not in sweeps:
        raise ConfigError(
            f"unknown sweep '{name}'{did_you_mean(name, sweeps)}; params.yaml defines: {', '.join(sweeps) or 'none'}"
        )
    if checkpoint_every < 0:
        raise ConfigError(f"checkpoint_every = {checkpoint_every}: give 0 or a positive number of optimizer steps")
    run_trials = get_backend(backend)
    profile = profile or Profile()
    sweep = sweeps[name]
    metric, mode = sweep.get("metric", "val/loss"), sweep.get("mode", "min")
    trials = expand_sweep(sweep, grid, seeds, name)
    requests = [
        plan_run(
            sweep["component"], params, preset=preset, overrides=trial.overrides, seed=trial.seed, data_dir=data_dir
        )
        for trial in trials
    ]

    directory = Path(run_root).absolute() / "sweeps" / name / time.strftime("%Y%m%d-%H%M%S")
    directory.mkdir(parents=True, exist_ok=True)
    specs = [
        LaunchSpec.from_request(
            request,
            directory / "trials" / f"{index:03d}-{trial.name}",
            data_dir,
            profile,
            checkpoint_every=checkpoint_every,
            backend=backend,
        )
        for index, (trial, request) in enumerate(zip(trials, requests))
    ]
    ledger = {
        "name": name,
        "backend": backend,
        "profile": profile.name,
        "metric": metric,
        "mode": mode,
        "component": sweep["component"],
        "trials": [{"overrides": dict(t.overrides), "seed": t.seed} for t in trials],
        "status": RUNNING,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **process_identity(),
    }
    atomic_write_json(directory / "sweep.json", ledger)
    try:
        outcomes = run_trials(specs, profile, workdir=directory, metric=metric, mode=mode)
    except BaseException as err:
        if not any(run_info_path(spec) for spec in specs):  # nothing ran (the backend refused the profile...)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        why = "the sweep was interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else one_line(err)
        write_summary(directory, name, sweep, ledger, trials, [salvage(spec, why) for spec in specs], backend)
        raise
    return write_summary(directory, name, sweep, ledger, trials, outcomes, backend)


def trials_jsonl(results: Sequence[TrialResult]) -> str:
    """The sweep's ledger of trials, one JSON record a line (what status, collect and the report read)."""
    records = (
        {
            "overrides": dict(r.trial.overrides),
            "seed": r.trial.seed,
            "status": r.status,
            "metrics": r.metrics,
            "run_dir": r.run_dir,
            "error": r.error,
        }
        for r in results
    )
    return "".join(json.dumps(record) + "\n" for record in records)


def write_summary(
    directory: Path,
    name: str,
    sweep: Mapping[str, Any],
    ledger: dict[str, Any],
    trials: Sequence[Trial],
    outcomes: Sequence[TrialOutcome],
    backend: str,
) -> SweepOutcome:
    metric, mode = ledger["metric"], ledger["mode"]
    results = [
        TrialResult(trial, str(outcome.status), outcome.metrics, outcome.spec.run_dir, outcome.error)
        for trial, outcome in zip(trials, outcomes)
    ]
    status = sweep_state([r.status for r in results])
    rows = summarise(results, metric, mode)
    columns = summary_columns(sweep, rows, metric)
    markdown = (
        f"### Sweep `{name}` ({sweep['component']}, {len(trials)} trials on {backend}, {mode} {metric}): {status}\n\n"
        + to_markdown(rows, columns)
        + failures_markdown(results)
    )
    atomic_write_text(directory / "trials.jsonl", trials_jsonl(results))
    atomic_write_text(directory / "summary.md", markdown)
    atomic_write_text(directory / "summary.csv", to_csv(rows, columns))
    counts = {str(s): n for s in State if (n := sum(r.status == s for r in results))}
    ledger.update(status=status, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), counts=counts)
    atomic_write_json(directory / "sweep.json", ledger)
    return SweepOutcome(directory, results, rows, markdown, status)
