"""DI-SINDy ("Governing Equation Discovery from Data Based on Differential Invariants", arXiv 2505.18798):
regress the target invariant u_t + (1/c) u u_x on a library of differential invariants of the PDE's symmetry
group (sequentially thresholded least squares), map the result back to raw variables, and compare with
PDE-FIND's raw library on the identical derivatives: success rate, coefficient error, rollout error."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.core.contract import RunContext
from components.core.errors import DataError
from components.core.fields import FieldDataset
from components.core.pdes import PDES, Monomial, monomial_name, simulate
from components.di_sindy import invariants, regression
from components.di_sindy.config import Config
from components.di_sindy.derivatives import jets
from components.di_sindy.invariants import Library

TEST = {"dataset": "fields/{pde}", "n_trials": 2, "rollout_trials": 1, "rollout_horizons": (0.5,)}
SMOKE = {"dataset": "fields/{pde}", "n_trials": 5}  # di_sindy.md §6: check 3's 5 trials per PDE


def build_library(cfg: Config) -> Library:
    """The DI library of cfg.pde's known generators (route A or B), Galilean coefficient from the PDE or cfg."""
    pde = PDES[cfg.pde]
    galilean_c = cfg.galilean_c if cfg.galilean_c is not None else pde.galilean_c
    scaling = pde.scaling if cfg.use_scaling else None
    if cfg.route == "A":
        return invariants.route_a(galilean_c, cfg.lib_order, cfg.lib_degree, scaling)
    gens = invariants.known_generators(pde, cfg.use_scaling, cfg.projective)
    if cfg.galilean_c is not None:
        gens = [
            g if g.name != "galilean" else invariants.Generator("galilean", invariants.T, 0, cfg.galilean_c)
            for g in gens
        ]
    return invariants.route_b(gens, cfg.lib_order, cfg.lib_degree)


def fit(cfg: Config, library: Library, derivs: dict[str, np.ndarray]) -> dict[Monomial, float]:
    """STLSQ of the library's target on its features; the discovered u_t = ... in raw variables."""
    theta = np.stack([invariants.evaluate(f, derivs).ravel() for f in library.features], axis=1)
    y = invariants.evaluate(library.target, derivs).ravel()
    if cfg.solver == "pysindy":
        xi = regression.stlsq_pysindy(theta, y, cfg.tau, cfg.alpha, cfg.max_iter)
    else:
        xi = regression.stlsq(theta, y, cfg.tau, cfg.alpha, cfg.max_iter)
    return invariants.raw_equation(library, xi)


def equation_text(equation: dict[Monomial, float]) -> str:
    return "u_t = " + (" + ".join(f"{c:.6g}*{monomial_name(m)}" for m, c in sorted(equation.items())) or "0")


def rollout_errors(
    cfg: Config, equation: dict[Monomial, float], truth: np.ndarray, data: FieldDataset
) -> dict[str, float]:
    """Relative L2 error of the discovered equation simulated from a held-out initial condition (same solver)."""
    step = data.manifest.get("solver", {}).get("step") or data.dt / 20
    predicted = simulate(equation, truth[0], data.length, step, data.dt, len(truth))
    out = {}
    for horizon in cfg.rollout_horizons:
        index = max(1, int(round(horizon * (len(truth) - 1))))
        error = np.linalg.norm(predicted[index] - truth[index]) / np.linalg.norm(truth[index])
        out[f"{horizon:g}"] = float(min(error, cfg.rollout_cap)) if np.isfinite(error) else cfg.rollout_cap
    return out


def discover(cfg: Config, data: FieldDataset, seed: int) -> dict[str, Any]:
    """Every trial: one train trajectory (+ noise), its derivatives, DI-SINDy and PDE-FIND on them."""
    truth = PDES[cfg.pde].rhs
    library = build_library(cfg)
    raw = invariants.raw_library(cfg.raw_order, cfg.raw_power)
    methods = {"di": library, **({"pdefind": raw} if cfg.baseline else {})}
    found: dict[str, list[dict[Monomial, float]]] = {name: [] for name in methods}
    for trial in range(cfg.n_trials):
        field = data.trajectory("train", trial, cfg.noise, seed)
        derivs = jets(field, data.dt, data.length, cfg.diff_method, cfg.cutoff, cfg.savgol_window, cfg.trim)
        for name, lib in methods.items():  # identical derivatives for every method
            found[name].append(fit(cfg, lib, derivs))
    metrics: dict[str, float] = {}
    for name, equations in found.items():
        prefix = "" if name == "di" else f"{name}/"
        successes = [regression.success(eq, truth) for eq in equations]
        errors = [regression.coefficient_error(eq, truth) for eq in equations]
        metrics[f"{prefix}success_rate"] = float(np.mean(successes))
        metrics[f"{prefix}coef_rel_err"] = float(np.mean(errors))
        metrics[f"{prefix}coef_rel_err_max"] = float(np.max(errors))
        metrics[f"{prefix}terms_mean"] = float(np.mean([len(regression.support(eq)) for eq in equations]))
        rollouts = min(cfg.rollout_trials, data.count("test"))
        for trial in range(rollouts):
            errors_at = rollout_errors(cfg, equations[trial], data.arrays["test"][trial], data)
            for horizon, error in errors_at.items():
                key = f"{prefix}rollout_rel_err@{horizon}"
                metrics[key] = metrics.get(key, 0.0) + error / rollouts
    metrics["library_size_di"] = float(len(library.features))
    metrics["library_size_raw"] = float(len(raw.features))
    galilean_c = cfg.galilean_c if cfg.galilean_c is not None else PDES[cfg.pde].galilean_c
    if galilean_c is not None:  # check 4: every DI model admits the boost, whatever its coefficients
        metrics["galilean_residual_max"] = max(invariants.galilean_residual(eq, galilean_c) for eq in found["di"])
    return {"metrics": metrics, "found": found, "library": library, "raw": raw}


def check_dataset_pde(cfg: Config, data: FieldDataset) -> None:
    recorded = data.pde.get("name", "unknown")
    if recorded not in ("unknown", cfg.pde):
        raise DataError(f"dataset '{data.name}' holds {recorded} fields, but the config's pde is {cfg.pde}")
    if data.count("train") < cfg.n_trials:
        raise DataError(
            f"dataset '{data.name}' has {data.count('train')} train trajectories, n_trials = {cfg.n_trials}: "
            f"prepare more (--set trajectories=...) or lower n_trials"
        )


def write_artefacts(run_dir: Path, cfg: Config, result: dict[str, Any]) -> None:
    with open(run_dir / "coefficients.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "trial", "term", "coefficient"])
        for method, equations in result["found"].items():
            for trial, equation in enumerate(equations):
                writer.writerows((method, trial, monomial_name(m), repr(c)) for m, c in sorted(equation.items()))
    library: Library = result["library"]
    basis = {
        "route": library.route,
        "target": invariants.term_name(library.target),
        "features": library.names,
        "raw_library": result["raw"].names,
        "true_equation": PDES[cfg.pde].equation,
    }
    (run_dir / "invariants.json").write_text(json.dumps(basis, indent=2) + "\n")
    equations = {m: [equation_text(eq) for eq in eqs] for m, eqs in result["found"].items()}
    (run_dir / "equations.json").write_text(json.dumps(equations, indent=2) + "\n")


class DiSindy:
    name = "di_sindy"
    Config = Config
    presets = {
        "test": TEST,  # seconds: 2 trials on the smoke-scale fields
        "smoke": SMOKE,  # di_sindy.md §6 at 5 trials, one PDE per run (the sweep crosses PDEs)
        "paper": {},  # the Config defaults: 50 trials per cell on fields/<pde>_paper (§4, §7)
    }
    datasets = ("fields/kdv", "fields/burgers", "fields/ks")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset_name,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        started = time.perf_counter()
        data = FieldDataset(ctx.data_dir, cfg.dataset_name)
        check_dataset_pde(cfg, data)
        result = discover(cfg, data, ctx.seed)
        metrics = result["metrics"]
        ctx.log(metrics, step=None)
        if ctx.is_main:
            write_artefacts(ctx.run_dir, cfg, result)
            (ctx.run_dir / "timing.json").write_text(json.dumps({"wall_time_s": time.perf_counter() - started}))
        return metrics

    def random_step(self, cfg: Config) -> float | None:
        return None  # nothing is trained: a regression on prepared fields


component = DiSindy()
