"""The `local` backend: trials one after another in this process (profiles with processes > 1 go through
torchrun instead). A failed trial is recorded in its run directory and the next one starts."""

from __future__ import annotations

from pathlib import Path

from cluster.launch import LaunchSpec, TrialOutcome, outcome_from_run_dir, run_spec
from cluster.profiles import Profile
from components.core.errors import ConfigError, PaperzooError


def run_trials(
    specs: list[LaunchSpec],
    profile: Profile,
    *,
    workdir: Path | None = None,
    metric: str | None = None,
    mode: str = "min",
) -> list[TrialOutcome]:
    if profile.world_size > 1:
        raise ConfigError(
            f"profile {profile.name} asks for {profile.world_size} processes: use --backend torchrun "
            "(one machine) or --backend submitit (SLURM)"
        )
    outcomes = []
    for index, spec in enumerate(specs):
        print(f"[{index + 1}/{len(specs)}] {Path(spec.run_dir).name}", flush=True)
        try:
            run_spec(spec)
        except PaperzooError as err:
            print(f"  failed: {err}", flush=True)
        outcomes.append(outcome_from_run_dir(spec))
    return outcomes
