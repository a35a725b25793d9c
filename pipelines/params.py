"""params.yaml: the one file of experiment choices (docs/architecture.md, "Configuration"), checked on load."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.core.config import load_yaml
from components.core.contract import PRESETS
from components.core.errors import ConfigError, did_you_mean
from components.registry import REGISTRY

SETTINGS = ("preset", "components", "datasets", "sweeps")
SWEEP_KEYS = ("component", "grid", "seeds", "metric", "mode")


def check_params(params: Mapping[str, Any], source: str = "params.yaml") -> None:
    for key in params:
        if key not in SETTINGS and key not in REGISTRY:
            raise ConfigError(f"{source}: unknown key '{key}'{did_you_mean(key, [*SETTINGS, *REGISTRY])}")
    preset = params.get("preset", "smoke")
    if preset not in PRESETS:
        raise ConfigError(f"{source}: preset '{preset}' is not one of {', '.join(PRESETS)}")
    for slug in params.get("components", []):
        if slug not in REGISTRY:
            raise ConfigError(f"{source}: components lists unknown component '{slug}'{did_you_mean(slug, REGISTRY)}")
    for name, spec in (params.get("datasets") or {}).items():
        if not isinstance(spec, Mapping) or "source" not in spec:
            raise ConfigError(f"{source}: datasets.{name} needs a 'source' (e.g. {{source: sklearn-digits}})")
    for name, sweep in (params.get("sweeps") or {}).items():
        for key in sweep:
            if key not in SWEEP_KEYS:
                raise ConfigError(f"{source}: unknown key 'sweeps.{name}.{key}'{did_you_mean(key, SWEEP_KEYS)}")
        if sweep.get("component") not in REGISTRY:
            raise ConfigError(f"{source}: sweeps.{name}.component '{sweep.get('component')}' is not a component")
        if sweep.get("mode", "min") not in ("min", "max"):
            raise ConfigError(f"{source}: sweeps.{name}.mode must be min or max, not '{sweep.get('mode')}'")
        if not isinstance(sweep.get("grid", {}), Mapping):
            raise ConfigError(f"{source}: sweeps.{name}.grid must map keys to lists of values")


def load_params(path: Path = Path("params.yaml")) -> dict[str, Any]:
    params = load_yaml(path)
    check_params(params, str(path))
    return params
