"""The operations every entry point shares: the CLI verbs, DVC's stages (which call the CLI) and the
Prefect flows all call these functions, so a run is the same run however it was started."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.core.config import deep_merge, overrides_to_tree
from components.core.errors import ConfigError, RunError, did_you_mean
from pipelines.params import load_params


def prepare_dataset(
    name: str,
    options: Iterable[str] | Mapping[str, Any] = (),
    *,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
) -> Path:
    """Prepare dataset `name` ('images/digits') as params.yaml's datasets section describes, plus options."""
    from pipelines.datasets import prepare

    known = load_params(params_file).get("datasets") or {}
    spec = deep_merge(known.get(name, {}), overrides_to_tree(options))
    if "source" not in spec:
        raise ConfigError(
            f"dataset '{name}' is not in {params_file} datasets{did_you_mean(name, known)}; "
            f"add it there or pass --set source=..."
        )
    return prepare(name, spec, Path(data_dir))


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    metrics: dict[str, float]


def run_component(
    slug: str | None,
    *,
    preset: str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    seed: int = 0,
    backend: str = "local",
    profile: str | Path | None = None,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
    run_root: Path = Path("runs"),
    out: Path | None = None,
    resume: Path | None = None,
    checkpoint_every: int = 0,
) -> RunOutcome:
    """Validate everything, then run one component on a backend; `out` is a fixed directory replaced only
    on success (DVC's stages), `resume` continues an unfinished run directory."""
    from cluster.backends import get_backend
    from cluster.launch import LaunchSpec
    from cluster.profiles import load_profile
    from cluster.runner import execute, load_request, new_run_dir, plan_run

    chosen = load_profile(profile)
    if resume is not None:
        if slug or overrides or preset or out:
            raise ConfigError("--resume takes the run's own component, preset and config; drop the other arguments")
        request, run_dir = load_request(resume), Path(resume)
    else:
        if not slug:
            raise ConfigError("name a component to run, e.g. `paperzoo run uba` (see `paperzoo list`)")
        request = plan_run(
            slug, load_params(params_file), preset=preset, overrides=overrides, seed=seed, data_dir=data_dir
        )
        run_dir = Path(out) if out else new_run_dir(run_root, request)
    replace = out is not None
    if backend == "local" and chosen.world_size == 1:  # in this process, with a progress bar on a terminal
        result = execute(
            request,
            run_dir,
            data_dir=data_dir,
            threads=chosen.threads,
            replace=replace,
            checkpoint_every=checkpoint_every,
            strategy=chosen.strategy,
            strategy_options=chosen.strategy_options(),
            use_gpu=chosen.gpus_per_node > 0,
        )
        return RunOutcome(result.run_dir, result.metrics)
    spec = LaunchSpec.from_request(request, run_dir, data_dir, chosen, checkpoint_every, replace, backend)
    (outcome,) = get_backend(backend)([spec], chosen, workdir=Path(spec.run_dir).parent / ".launch")
    if outcome.status != "completed":
        raise RunError(f"run {outcome.status}: {outcome.error or 'see ' + spec.run_dir}")
    return RunOutcome(Path(spec.run_dir), outcome.metrics)


def run_named_sweep(
    name: str,
    *,
    backend: str = "local",
    profile: str | Path | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seeds: list[int] | None = None,
    preset: str | None = None,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
    run_root: Path = Path("runs"),
    checkpoint_every: int = 0,
):
    from cluster.profiles import load_profile
    from pipelines.sweep import run_sweep

    return run_sweep(
        name,
        load_params(params_file),
        backend=backend,
        profile=load_profile(profile),
        grid=grid,
        seeds=seeds,
        preset=preset,
        run_root=run_root,
        data_dir=data_dir,
        checkpoint_every=checkpoint_every,
    )


def write_report(
    *,
    params_file: Path = Path("params.yaml"),
    run_root: Path = Path("runs"),
    out_dir: Path = Path("reports"),
) -> Path:
    """The one report (`paperzoo report`, which DVC's report stage runs too): pipeline, sweeps, one-off runs."""
    from pipelines.report import build_report

    return build_report(load_params(params_file), run_root, out_dir)
