"""Named sweeps from params.yaml: expansion into trials, a backend that runs them, and the summary table.

Every backend runs the same list of trials (a trial = config overrides + a seed), so results are
comparable across local, Ray Tune and SLURM. All trials are validated before the first one starts.
Each sweep folder keeps a ledger (pipelines/ledger.py) written as trials are queued, start and end; a sweep
run again reuses what its earlier folders completed (see run_sweep), and collect_sweep summarises a folder
from its ledger whether or not its driver still lives.
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
from cluster.provenance import dataset_digests
from cluster.runner import one_line, plan_run
from cluster.states import OK_STATES, RUNNING, DriverDetached, State, process_alive, process_identity, sweep_state
from components.core.config import parse_override
from components.core.errors import ConfigError, did_you_mean
from components.core.files import atomic_write_json, atomic_write_text
from pipelines.compare import format_value
from pipelines.ledger import (
    CACHED,
    PENDING,
    QUEUED,
    Ledger,
    earlier_records,
    read_ledger,
    run_info,
    trial_key,
    trial_state,
)

ORIGINS = ("new", "cached", "resumed", "adopted")


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


def cost_markdown(ledger: Mapping[str, Any]) -> str:
    """The sweep's cost beside the estimate `paperzoo sweep NAME --estimate` made (only when one was made)."""
    estimate, cost = ledger.get("estimate"), ledger.get("cost")
    if not estimate or not cost:
        return ""
    return (
        f"\ncost: {cost['device_hours']:.3g} device-hours, {cost['wall_hours']:.3g} h wall for {cost['trials_run']} "
        f"trials run (estimate: {estimate['device_hours']:.3g} device-hours, {estimate['wall_hours']:.3g} h wall "
        f"for {estimate['trials']} trials at {estimate['seconds_per_step']:.3g} s/step)\n"
    )


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


@dataclass(frozen=True)
class Reuse:
    """What an earlier sweep left for a trial: origin new (run it), cached (completed: report it), resumed
    (preempted or interrupted: continue it in its run directory from its checkpoint) or adopted (its run or
    job still lives: wait for it), with that run directory and the earlier record."""

    origin: str = "new"
    run_dir: str = ""
    record: Mapping[str, Any] = field(default_factory=dict)


def plan_reuse(records: Sequence[Mapping[str, Any]]) -> Reuse:
    """The earlier records of one trial identity, newest first: reuse the best (a completed run, else a live
    one, else one to resume); a failed or cancelled trial runs again in a new folder."""
    resumable = None
    for record in records:
        run_dir = Path(record["run_dir"])
        state = trial_state(record)
        if state in OK_STATES and (run_dir / "metrics.json").is_file():
            return Reuse("cached", str(run_dir), record)
        if state in (RUNNING, QUEUED):
            return Reuse("adopted", str(run_dir), record)
        if state in (State.PREEMPTED, State.INTERRUPTED) and resumable is None:
            resumable = Reuse("resumed", str(run_dir), record)
    return resumable or Reuse()


def wait_for_adopted(spec: LaunchSpec, record: Mapping[str, Any], poll_s: float = 1.0) -> TrialOutcome:
    """Wait while a trial started by an earlier driver still runs (its process or its job lives), then read it."""
    while trial_state(record) in (RUNNING, QUEUED):
        time.sleep(poll_s)
    if run_info_path(spec) is None:
        return TrialOutcome(spec, State.CANCELLED, {}, "its earlier job ended before the run started", False)
    return outcome_from_run_dir(spec)


def trial_keys(requests: Sequence[Any], data_dir: Path) -> list[str]:
    from components.registry import get_component

    keys = []
    for request in requests:
        datasets = dataset_digests(Path(data_dir), get_component(request.slug).datasets_for(request.config))
        keys.append(trial_key(request.slug, request.config.model_dump(mode="json"), request.seed, datasets))
    return keys


def new_sweep_dir(run_root: Path, name: str) -> Path:
    base = Path(run_root).absolute() / "sweeps" / name / time.strftime("%Y%m%d-%H%M%S")
    candidate, suffix = base, 1
    while candidate.exists():  # a re-run within the same second
        candidate = base.with_name(f"{base.name}.{suffix}")
        suffix += 1
    return candidate


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
    rerun: bool = False,
    directory: Path | None = None,
    use_ledger: bool = True,
) -> SweepOutcome:
    """Expand, validate every trial, run those that no earlier folder of this sweep completed, and write the
    summary table.

    Trials are identified by trial_key (resolved config, seed, code+lock digest, data digests): a completed
    one is reported from its earlier run, a preempted or interrupted one resumes from its checkpoint in its
    run directory, one whose earlier process or SLURM job still runs is waited for; `rerun` runs all anew.
    The ledger (ledger/<index>.json) is written as trials are queued, start and end. The summary (summary.md,
    summary.csv, trials.jsonl, sweep.json's status) is written however the trials end, failed ones included;
    when the backend itself stops (Ctrl-C, a backend error) it is written from the run directories before
    the error goes on; a driver detached by SIGTERM (submitit) leaves its jobs and the ledger, no summary."""
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
    keys = trial_keys(requests, data_dir) if use_ledger else [""] * len(trials)

    directory = Path(directory).absolute() if directory else new_sweep_dir(run_root, name)
    earlier = earlier_records(directory.parent, exclude=directory) if use_ledger and not rerun else {}
    plans = [plan_reuse(earlier.get(key, [])) for key in keys]
    directory.mkdir(parents=True, exist_ok=True)
    specs = [
        LaunchSpec.from_request(
            request,
            Path(plan.run_dir) if plan.run_dir else directory / "trials" / f"{index:03d}-{trial.name}",
            data_dir,
            profile,
            checkpoint_every=checkpoint_every,
            backend=backend,
            evaluations=sweep.get("evaluations", 0),
        )
        for index, (trial, request, plan) in enumerate(zip(trials, requests, plans))
    ]
    ledger = {
        "name": name,
        "backend": backend,
        "profile": profile.name,
        "metric": metric,
        "mode": mode,
        "component": sweep["component"],
        "grid": {axis: list(values) for axis, values in (sweep.get("grid") or {}).items()},
        "preset": requests[0].preset if requests else preset,
        "trials": [{"overrides": dict(t.overrides), "seed": t.seed, "key": k} for t, k in zip(trials, keys)],
        "origins": {origin: n for origin in ORIGINS if (n := sum(p.origin == origin for p in plans))},
        "status": RUNNING,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **process_identity(),
    }
    atomic_write_json(directory / "sweep.json", ledger)
    started = time.time()
    records = Ledger(directory) if use_ledger else None
    driver_log = directory / "driver.log"
    if records is not None:
        for index, (trial, spec, plan, key) in enumerate(zip(trials, specs, plans, keys)):
            state = {"cached": CACHED, "adopted": plan.record.get("state", RUNNING)}.get(plan.origin, PENDING)
            records.write(
                index,
                name=f"{index:03d}-{trial.name}",
                overrides=dict(trial.overrides),
                seed=trial.seed,
                key=key,
                origin=plan.origin,
                backend=plan.record.get("backend", backend) if plan.origin == "adopted" else backend,
                job_id=plan.record.get("job_id", "") if plan.origin == "adopted" else "",
                logs=list(plan.record.get("logs", [])) if plan.origin == "adopted" else [],
                run_dir=spec.run_dir,
                state=state,
            )
        if driver_log.is_file():  # a detached driver: the local trials' output goes there
            records.driver_log = str(driver_log)
    said = ", ".join(f"{n} {origin}" for origin, n in ledger["origins"].items() if origin != "new")
    if said:
        print(f"sweep {name}: {said} from earlier runs of this sweep ({len(trials)} trials)", flush=True)

    outcomes: list[TrialOutcome | None] = [None] * len(trials)
    for index, (spec, plan) in enumerate(zip(specs, plans)):
        if plan.origin == "cached":
            outcomes[index] = outcome_from_run_dir(spec)
    to_run = [index for index, plan in enumerate(plans) if plan.origin in ("new", "resumed")]
    try:
        options: dict[str, Any] = {}
        if backend == "ray" and sweep.get("scheduler"):  # "none": ranked by an end-of-run quantity, ASHA cannot act
            options["scheduler"] = sweep["scheduler"]
        ran = run_trials(
            [specs[index] for index in to_run],
            profile,
            workdir=directory,
            metric=metric,
            mode=mode,
            ledger=records,
            **options,
        )
        for index, outcome in zip(to_run, ran):
            outcomes[index] = outcome
            end_record(records, index, outcome)
        for index, plan in enumerate(plans):
            if plan.origin == "adopted":
                outcomes[index] = wait_for_adopted(specs[index], plan.record)
                end_record(records, index, outcomes[index])
    except DriverDetached as detached:
        ledger.update(status="detached", detached=time.strftime("%Y-%m-%dT%H:%M:%S%z"), note=str(detached))
        atomic_write_json(directory / "sweep.json", ledger)
        raise
    except BaseException as err:
        if not any(run_info_path(spec) for spec in specs) and not any(outcomes):  # nothing ran (refused profile...)
            if not driver_log.is_file():  # a detached driver's log says why: it stays
                shutil.rmtree(directory, ignore_errors=True)
            raise
        why = "the sweep was interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else one_line(err)
        salvaged = [outcome or salvage(spec, why) for outcome, spec in zip(outcomes, specs)]
        for index, outcome in enumerate(salvaged):
            end_record(records, index, outcome)
        write_summary(directory, name, sweep, ledger, trials, salvaged, backend)
        raise
    ledger["cost"] = actual_cost([specs[index] for index in to_run], profile, started)
    estimate_file = directory.parent / "estimate.json"
    if estimate_file.is_file() and to_run:
        estimate = json.loads(estimate_file.read_text())
        if estimate.get("trials") == len(trials) and estimate.get("profile") == profile.name:
            ledger["estimate"] = estimate
    return write_summary(directory, name, sweep, ledger, trials, [o for o in outcomes if o is not None], backend)


def actual_cost(specs: Sequence[LaunchSpec], profile: Profile, started: float) -> dict[str, float]:
    """What the trials run by this sweep cost: device-hours (each run's wall time x its processes) and wall hours."""
    device_s = 0.0
    for spec in specs:
        info = run_info(spec.run_dir) or {}
        device_s += float(info.get("wall_seconds") or 0.0) * int(info.get("world_size") or profile.world_size)
    return {"device_hours": device_s / 3600, "wall_hours": (time.time() - started) / 3600, "trials_run": len(specs)}


def end_record(records: Ledger | None, index: int, outcome: TrialOutcome) -> None:
    if records is not None:
        origin = records.records.get(index, {}).get("origin")
        state = CACHED if origin == "cached" and outcome.status in OK_STATES else str(outcome.status)
        records.write(index, state=state, error=outcome.error, metrics=outcome.metrics)


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
        + cost_markdown(ledger)
    )
    atomic_write_text(directory / "trials.jsonl", trials_jsonl(results))
    atomic_write_text(directory / "summary.md", markdown)
    atomic_write_text(directory / "summary.csv", to_csv(rows, columns))
    counts = {str(s): n for s in [*State, RUNNING] if (n := sum(r.status == s for r in results))}
    ledger.update(status=status, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), counts=counts)
    atomic_write_json(directory / "sweep.json", ledger)
    return SweepOutcome(directory, results, rows, markdown, status)


def collect_sweep(directory: Path) -> SweepOutcome:
    """The summary of a sweep folder from whatever has finished, read from its ledger and run directories (the
    driver may be gone); trials still queued or running, or never started, are listed as missing."""
    from types import SimpleNamespace

    directory = Path(directory).absolute()
    info_path = directory / "sweep.json"
    if not info_path.is_file():
        raise ConfigError(f"{directory} is not a sweep folder (no sweep.json); sweeps are under runs/sweeps/<name>/")
    ledger = json.loads(info_path.read_text())
    records = read_ledger(directory)
    if not records:
        raise ConfigError(
            f"{directory} has no ledger/ (a sweep from before the ledger): its summary.md is all there is"
        )
    driver_alive = process_alive(ledger) and ledger.get("status") == RUNNING
    trials, outcomes = [], []
    for record in records:
        trials.append(Trial(record.get("overrides") or {}, int(record.get("seed", 0))))
        state = trial_state(record)
        spec = SimpleNamespace(run_dir=record.get("run_dir", ""))
        if state == CACHED:
            state = State.COMPLETED
        if state in (PENDING, QUEUED):
            state = RUNNING if driver_alive or state == QUEUED else State.CANCELLED
        if state in OK_STATES or state in State.__members__.values():
            found = outcome_from_run_dir(spec) if run_info(spec.run_dir) else None  # type: ignore[arg-type]
            metrics = found.metrics if found else {}
            error = (found.error if found else "") or record.get("error", "") or ("" if state in OK_STATES else state)
        else:
            metrics, error = {}, f"still {state}"
        outcomes.append(TrialOutcome(spec, state, metrics, error))  # type: ignore[arg-type]
    sweep = {
        "component": ledger.get("component", "?"),
        "grid": ledger.get("grid") or dict.fromkeys(trials[0].overrides),
    }
    return write_summary(directory, ledger["name"], sweep, ledger, trials, outcomes, ledger.get("backend", "?"))
