"""params.yaml: the one file of experiment choices (docs/architecture.md, "Configuration"), checked on load.

Every mistake is a one-line ConfigError naming the file and the key, raised before anything runs: unknown keys
(with the nearest suggested), a component section that is not a mapping, and sweeps whose grid or seeds would
expand to nothing or to something no trial can run. check_sweep_trials validates every trial of a sweep against
its component's Config.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.core.config import load_yaml
from components.core.contract import PRESETS
from components.core.errors import ConfigError, did_you_mean
from components.registry import REGISTRY

SETTINGS = ("preset", "components", "datasets", "derived_datasets", "sweeps")
SWEEP_KEYS = ("component", "grid", "seeds", "metric", "mode", "scheduler", "evaluations")
SCHEDULERS = ("asha", "fifo", "none")  # on Ray; none: the metric is an end-of-run quantity, so no scheduler can act


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_seeds(seeds: Any, where: str) -> list[int]:
    """A non-empty list of distinct non-negative integers (YAML `[0, 1]`), else a one-line error naming `where`."""
    if not isinstance(seeds, list):
        raise ConfigError(f"{where} must be a list of integers such as [0, 1], not {_kind(seeds)} {seeds!r}")
    if not seeds:
        raise ConfigError(f"{where} is empty: a sweep needs at least one seed, e.g. [0]")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{where} holds {seed!r}: seeds are non-negative integers, e.g. [0, 1]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} repeats a seed: {seeds}")
    return seeds


def check_grid(grid: Any, where: str) -> dict[str, list[Any]]:
    """A non-empty mapping of dotted keys to non-empty lists of values, else a one-line error naming the axis."""
    if not isinstance(grid, Mapping):
        raise ConfigError(
            f"{where} must map keys to lists of values, e.g. {{schedule.phi: [0.5, 2]}}, not {_kind(grid)}"
        )
    if not grid:
        raise ConfigError(
            f"{where} is empty: give at least one key with a list of values, e.g. {{schedule.phi: [0.5, 2]}}"
        )
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(
                f"{where}.{key} must be a list of values, e.g. [{values!r}], not {_kind(values)} {values!r}"
            )
        if not values:
            raise ConfigError(f"{where}.{key} is an empty list: the sweep would have no trials")
    return {str(key): list(values) for key, values in grid.items()}


def check_params(params: Mapping[str, Any], source: str = "params.yaml") -> None:
    for key in params:
        if key not in SETTINGS and key not in REGISTRY:
            raise ConfigError(f"{source}: unknown key '{key}'{did_you_mean(key, [*SETTINGS, *REGISTRY])}")
    preset = params.get("preset", "smoke")
    if preset not in PRESETS:
        raise ConfigError(
            f"{source}: preset '{preset}' is not one of {', '.join(PRESETS)}{did_you_mean(preset, PRESETS)}"
        )
    for slug in REGISTRY:
        section = params.get(slug)
        if section is not None and not isinstance(section, Mapping):
            raise ConfigError(
                f"{source}: section '{slug}' must be a mapping of config keys to values (key: value lines), "
                f"not {_kind(section)}"
            )
    components = params.get("components", [])
    if not isinstance(components, list):
        raise ConfigError(f"{source}: components must be a list of component names, not {_kind(components)}")
    for slug in components:
        if slug not in REGISTRY:
            raise ConfigError(f"{source}: components lists unknown component '{slug}'{did_you_mean(slug, REGISTRY)}")
    datasets = params.get("datasets") or {}
    if not isinstance(datasets, Mapping):
        raise ConfigError(f"{source}: datasets must map names to {{source: ...}} entries, not {_kind(datasets)}")
    for name, spec in datasets.items():
        if not isinstance(spec, Mapping) or "source" not in spec:
            raise ConfigError(f"{source}: datasets.{name} needs a 'source' (e.g. {{source: sklearn-digits}})")
    derived = params.get("derived_datasets") or {}
    if not isinstance(derived, Mapping):
        raise ConfigError(f"{source}: derived_datasets must map names to {{source, parent, ...}}, not {_kind(derived)}")
    for name, spec in derived.items():
        where = f"{source}: derived_datasets.{name}"
        if not isinstance(spec, Mapping) or "source" not in spec or "parent" not in spec:
            raise ConfigError(f"{where} needs a 'source' and the 'parent' dataset it is built from")
        if name in datasets:
            raise ConfigError(f"{where}: the name is already in datasets")
        if spec["parent"] not in datasets:
            raise ConfigError(
                f"{where}.parent '{spec['parent']}' is not in datasets{did_you_mean(str(spec['parent']), datasets)}"
            )
    sweeps = params.get("sweeps") or {}
    if not isinstance(sweeps, Mapping):
        raise ConfigError(
            f"{source}: sweeps must map sweep names to {{component, grid, seeds, ...}}, not {_kind(sweeps)}"
        )
    for name, sweep in sweeps.items():
        if not isinstance(sweep, Mapping):
            raise ConfigError(f"{source}: sweeps.{name} must be a mapping with component, grid, seeds, metric, mode")
        for key in sweep:
            if key not in SWEEP_KEYS:
                raise ConfigError(f"{source}: unknown key 'sweeps.{name}.{key}'{did_you_mean(key, SWEEP_KEYS)}")
        component = sweep.get("component")
        if component not in REGISTRY:
            hint = did_you_mean(component, REGISTRY) if isinstance(component, str) else ""
            raise ConfigError(f"{source}: sweeps.{name}.component '{component}' is not a component{hint}")
        if sweep.get("mode", "min") not in ("min", "max"):
            raise ConfigError(f"{source}: sweeps.{name}.mode must be min or max, not '{sweep.get('mode')}'")
        if sweep.get("scheduler", "asha") not in SCHEDULERS:
            raise ConfigError(
                f"{source}: sweeps.{name}.scheduler must be one of {', '.join(SCHEDULERS)}, not '{sweep['scheduler']}'"
            )
        evaluations = sweep.get("evaluations", 0)
        if not isinstance(evaluations, int) or isinstance(evaluations, bool) or evaluations < 0:
            raise ConfigError(
                f"{source}: sweeps.{name}.evaluations must be a whole number >= 0 (reports of the metric per trial), "
                f"not {evaluations!r}"
            )
        if not isinstance(sweep.get("metric", "val/loss"), str):
            raise ConfigError(f"{source}: sweeps.{name}.metric must be a metric name such as val/loss")
        if "grid" in sweep:  # no grid at all: every seed at the section's config; an empty one is a mistake
            check_grid(sweep["grid"], f"{source}: sweeps.{name}.grid")
        if "seeds" in sweep:
            check_seeds(sweep["seeds"], f"{source}: sweeps.{name}.seeds")


def load_params(path: Path = Path("params.yaml")) -> dict[str, Any]:
    params = load_yaml(path)
    check_params(params, str(path))
    return params


def check_sweep_trials(
    name: str,
    params: Mapping[str, Any],
    *,
    preset: str | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] | None = None,
    source: str = "params.yaml",
) -> int:
    """Resolve the config of every grid point of sweep `name` (as narrowed by grid/seeds) against its component's
    Config, before any trial starts; the first bad point is a one-line ConfigError naming the sweep, the point and
    the key. Returns the number of trials. (run_sweep validates again through plan_run, with the dataset check.)"""
    from components.core.config import resolve_config
    from components.registry import get_component

    sweeps = params.get("sweeps") or {}
    if name not in sweeps:
        raise ConfigError(
            f"unknown sweep '{name}'{did_you_mean(name, sweeps)}; {source} defines: {', '.join(sweeps) or 'none'}"
        )
    sweep = sweeps[name]
    full = check_grid(sweep["grid"], f"{source}: sweeps.{name}.grid") if "grid" in sweep else {}
    for key, values in (grid or {}).items():
        if key not in full:
            raise ConfigError(
                f"--grid {key}: sweep '{name}' has no axis '{key}'{did_you_mean(key, full)}; axes: {', '.join(full)}"
            )
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"--grid {key}: give at least one value, e.g. --grid {key}={full[key][0]}")
        full[key] = list(values)
    if seeds is not None:
        check_seeds(list(seeds), "--seeds")
    count = len(list(seeds)) if seeds is not None else len(check_seeds(sweep.get("seeds", [0]), "seeds"))
    component = get_component(sweep["component"])
    chosen = preset or params.get("preset", "smoke")
    keys = list(full)
    for values in itertools.product(*(full[key] for key in keys)):
        point = dict(zip(keys, values))
        try:
            resolve_config(component, chosen, params.get(component.name), point)
        except ConfigError as err:
            shown = ", ".join(f"{key}={value}" for key, value in point.items())
            raise ConfigError(f"sweep '{name}' trial {shown}: {err}") from None
    return count * len(list(itertools.product(*full.values())))


def dataset_specs(params: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every dataset params.yaml describes: `datasets` (prepared from a source), then `derived_datasets` (prepared
    from another prepared dataset, their `parent`: dvc.yaml's prepare_derived stage depends on it)."""
    return {**(params.get("datasets") or {}), **(params.get("derived_datasets") or {})}
