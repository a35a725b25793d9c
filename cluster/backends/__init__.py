"""Launch backends: each runs a list of LaunchSpecs and returns their outcomes read from the run dirs.

run_trials(specs, profile, *, workdir, metric=None, mode="min") -> list[TrialOutcome]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from components.core.errors import ConfigError, did_you_mean

BACKENDS: dict[str, str] = {
    "local": "cluster.backends.local:run_trials",
    "torchrun": "cluster.backends.torchrun:run_trials",
    "submitit": "cluster.backends.submitit_backend:run_trials",
    "ray": "cluster.backends.ray_backend:run_trials",
}


def get_backend(name: str) -> Callable:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}'{did_you_mean(name, BACKENDS)}; choose from {', '.join(BACKENDS)}")
    module_name, attribute = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)
