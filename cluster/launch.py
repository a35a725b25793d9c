"""What one process needs to run one trial (a LaunchSpec), and the entry point every backend ends in.

A backend turns a list of specs into processes: `local` calls run_spec here, `torchrun` starts
`python -m cluster.launch SPEC.json` on N ranks, `submitit` pickles run_spec into SLURM jobs, `ray`
calls it inside Tune trials. Results are read back from the run directories, the same way for all.

    python -m cluster.launch SPEC.json
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.distributed import DistEnv, from_environment
from cluster.profiles import Profile
from cluster.runner import RunRequest, RunResult, Sink, execute
from cluster.states import RUNNING, State, interruption_note, run_state
from components.core.config import validate
from components.core.errors import PaperzooError
from components.core.files import atomic_write_json
from components.registry import get_component


@dataclass
class LaunchSpec:
    """Everything one process needs to run one trial; JSON-serialisable and picklable."""

    slug: str
    preset: str
    config: dict[str, Any]
    seed: int
    overrides: dict[str, Any]
    run_dir: str
    data_dir: str
    threads: int = 1
    strategy: str = "plain"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 0
    replace: bool = False
    backend: str = "local"
    use_gpu: bool = False
    evaluations: int = 0  # the sweep's evaluations key: RunContext.evaluations (what ASHA ranks at)

    @classmethod
    def from_request(
        cls,
        request: RunRequest,
        run_dir: Path,
        data_dir: Path,
        profile: Profile | None = None,
        checkpoint_every: int = 0,
        replace: bool = False,
        backend: str = "local",
        evaluations: int = 0,
    ) -> LaunchSpec:
        profile = profile or Profile()
        return cls(
            slug=request.slug,
            preset=request.preset,
            config=request.config.model_dump(mode="json"),
            seed=request.seed,
            overrides=dict(request.overrides),
            run_dir=str(Path(run_dir).absolute()),
            data_dir=str(Path(data_dir).absolute()),
            threads=profile.threads,
            strategy=profile.strategy,
            strategy_options=profile.strategy_options(),
            checkpoint_every=checkpoint_every,
            replace=replace,
            backend=backend,
            use_gpu=profile.gpus_per_node > 0,
            evaluations=evaluations,
        )

    def request(self) -> RunRequest:
        component = get_component(self.slug)
        return RunRequest(
            self.slug, self.preset, validate(component.Config, self.config, scope=self.slug), self.seed, self.overrides
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LaunchSpec:
        return cls(**json.loads(text))


def run_spec(spec: LaunchSpec, sinks: Sequence[Sink] = (), dist: DistEnv | None = None) -> RunResult:
    """Run one spec in this process, as the rank torchrun's or SLURM's variables say it is (or as `dist` says:
    a Ray trial inside an srun step is one process, whatever SLURM's variables claim)."""
    return execute(
        spec.request(),
        Path(spec.run_dir),
        data_dir=Path(spec.data_dir),
        threads=spec.threads,
        sinks=sinks,
        checkpoint_every=spec.checkpoint_every,
        show_progress=False,
        replace=spec.replace,
        strategy=spec.strategy,
        strategy_options=spec.strategy_options,
        dist=from_environment() if dist is None else dist,
        use_gpu=spec.use_gpu,
        backend=spec.backend,
        evaluations=spec.evaluations,
    )


@dataclass
class TrialOutcome:
    spec: LaunchSpec
    status: str  # a cluster.states.State: completed, failed, preempted, cancelled, interrupted, stopped (ASHA)
    metrics: dict[str, float]
    error: str = ""
    recorded: bool = True  # False: the run directory holds no outcome of its own (no run.json, or "running")


def run_info_path(spec: LaunchSpec) -> Path | None:
    """The trial's run.json (in its staging folder while a replacing run is unfinished), None if never started."""
    run_dir = Path(spec.run_dir)
    for folder in (run_dir, run_dir.with_name(f".{run_dir.name}.partial")):
        if (folder / "run.json").is_file():
            return folder / "run.json"
    return None


def outcome_from_run_dir(spec: LaunchSpec) -> TrialOutcome:
    """What a finished trial's run directory says. A backend calls this once it is done with the trial, so a
    run.json still "running" is a run whose process ended without recording an outcome: interrupted."""
    run_dir = Path(spec.run_dir)
    info_path = run_info_path(spec)
    if info_path is None:
        return TrialOutcome(spec, State.FAILED, {}, f"no run.json in {run_dir}: the trial never started", False)
    try:
        info = json.loads(info_path.read_text())
        metrics_path = info_path.parent / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    except (OSError, ValueError) as err:
        return TrialOutcome(spec, State.FAILED, {}, f"{info_path.parent} is unreadable: {err}", False)
    status = info.get("status", RUNNING)
    if status == RUNNING:
        state = run_state(info, info_path.parent)
        note = interruption_note(info) if state == State.INTERRUPTED else "its run.json still says running"
        return TrialOutcome(spec, State.INTERRUPTED, metrics, note, False)
    return TrialOutcome(spec, status, metrics, info.get("error", ""))


def record_outcome(spec: LaunchSpec, status: str, error: str, metrics: dict[str, float] | None = None) -> TrialOutcome:
    """Record in the run directory what the backend knows and the run could not write itself (a worker or
    job that died, a scheduler's stop), so run.json and the sweep's records agree."""
    info_path = run_info_path(spec)
    if info_path is None:  # the trial died before its run started: nothing to amend
        return TrialOutcome(spec, status, metrics or {}, error, False)
    info = json.loads(info_path.read_text())
    info.update(status=status, error=error, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if metrics is not None:
        atomic_write_json(info_path.parent / "metrics.json", metrics)
    atomic_write_json(info_path, info)
    return outcome_from_run_dir(spec)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cluster.launch SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = LaunchSpec.from_json(Path(args[0]).read_text())
        run_spec(spec)
    except PaperzooError as err:
        print(f"paperzoo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
