"""The operations every entry point shares: the CLI verbs, DVC's stages (which call the CLI) and the
Prefect flows all call these functions, so a run is the same run however it was started."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.core.config import deep_merge, overrides_to_tree
from components.core.errors import ConfigError, did_you_mean
from pipelines.params import check_sweep_trials, dataset_specs, load_params


def check_writable(path: Path, option: str) -> None:
    """That files can be created under `path` (or, while it does not exist yet, in its nearest existing parent):
    a temporary file is created there and removed at once. A read-only or missing root is a one-line ConfigError
    naming the path and the option that chooses it, before anything runs or is written."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is not a directory")
    try:
        handle, name = tempfile.mkstemp(prefix=".paperzoo-write-check-", dir=existing)
        os.close(handle)
        os.unlink(name)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{option} {path} is not writable ({reason} in {existing}); choose a writable folder with {option}"
        ) from None


def prepare_dataset(
    name: str,
    options: Iterable[str] | Mapping[str, Any] = (),
    *,
    params_file: Path = Path("params.yaml"),
    data_dir: Path = Path("data"),
) -> Path:
    """Prepare dataset `name` ('images/digits') as params.yaml's datasets section describes, plus options."""
    from pipelines.datasets import prepare

    known = dataset_specs(load_params(params_file))
    spec = deep_merge(known.get(name, {}), overrides_to_tree(options))
    if "source" not in spec:
        raise ConfigError(
            f"dataset '{name}' is not in {params_file} datasets{did_you_mean(name, known)}; "
            f"add it there or pass --set source=..."
        )
    check_writable(Path(data_dir), "--data-dir")
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
    if resume is not None:
        check_writable(run_dir, "--resume")
    else:
        check_writable(Path(out) if out else Path(run_root), "--out" if out else "--run-root")
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
    if outcome.status != "completed":  # the job failed on the cluster (a lost node, a killed job): worth a retry
        from cluster.runner import RunFailed

        raise RunFailed(outcome.error or f"see {spec.run_dir}", spec.run_dir, outcome.status, retryable=True)
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

    params = load_params(params_file)
    chosen = load_profile(profile)
    check_sweep_trials(name, params, preset=preset, grid=grid, seeds=seeds, source=str(params_file))
    check_writable(Path(run_root), "--run-root")
    return run_sweep(
        name,
        params,
        backend=backend,
        profile=chosen,
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
