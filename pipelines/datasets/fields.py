"""Field sources (di_sindy.md §4-§6): simulated KdV, Burgers, Kuramoto-Sivashinsky (and the mKdV placeholder)
trajectories, and a user's own fields from a .npy/.npz file. Both write `fields/<name>` through
`components.core.fields.write_field_dataset` (clean float64 arrays; noise is applied at read time).

`pde-fields`: ETDRK4 (32 contour points) on the periodic grid of the chosen scale, random Fourier initial
conditions from default_rng([seed, i]) for trajectory i; the first `trajectories - test_trajectories` are the
train split (the regression trials), the rest the test split (held-out initial conditions for rollouts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from components.core.errors import ConfigError, DataError
from components.core.fields import check_grid, write_field_dataset
from components.core.pdes import PDES, grid, monomial_name, trajectories

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options
PdeName = Literal["kdv", "burgers", "ks", "mkdv"]
Scale = Literal["smoke", "paper"]


def pde_entry(name: str) -> dict:
    """The manifest's record of an equation: u_t = sum of coefficient * monomial, and its symmetry data."""
    pde = PDES[name]
    return {
        "name": name,
        "equation": pde.equation,
        "rhs": {monomial_name(m): c for m, c in pde.rhs.items()},
        "galilean_c": pde.galilean_c,
        "scaling": list(pde.scaling) if pde.scaling else None,
        "note": pde.note,
    }


def check_counts(where: str, trajectories_: int, test_trajectories: int) -> None:
    if trajectories_ < 1:
        raise ConfigError(f"{where}: option trajectories must be >= 1, got {trajectories_}")
    if not 0 <= test_trajectories < trajectories_:
        raise ConfigError(
            f"{where}: option test_trajectories must be in [0, trajectories), got {test_trajectories} "
            f"of {trajectories_}"
        )


def prepare_pde_fields(
    out_dir: Path,
    *,
    pde: PdeName,
    scale: Scale = "smoke",
    trajectories: int = 6,
    test_trajectories: int = 1,
    seed: int = 0,
) -> dict:
    """Simulated trajectories of one PDE at the spec's smoke (§6) or paper (§4) resolution."""
    where = f"pde-fields ({pde})"
    if pde not in PDES:
        raise ConfigError(f"{where}: option pde must be one of {', '.join(PDES)}, got {pde!r}")
    check_counts(where, trajectories, test_trajectories)
    setting = PDES[pde].settings[scale]
    x, t = grid(setting)
    fields = simulate_checked(pde, setting, trajectories, seed, where)
    train = trajectories - test_trajectories
    splits = {"train": fields[:train]}
    if test_trajectories:
        splits["test"] = fields[train:]
    return write_field_dataset(
        out_dir,
        source="pde-fields",
        options={
            "pde": pde,
            "scale": scale,
            "trajectories": trajectories,
            "test_trajectories": test_trajectories,
            "seed": seed,
        },
        generator_version=GENERATOR_VERSION,
        x=x,
        t=t,
        splits=splits,
        pde=pde_entry(pde),
        notes={
            "solver": {
                "method": "ETDRK4 (Kassam-Trefethen, 32 contour points), pseudo-spectral nonlinear terms",
                "step": setting.step,
                "initial_condition": f"random Fourier series, {setting.modes} modes x {setting.amplitude} N(0, 1)",
            }
        },
    )


def simulate_checked(pde: str, setting, count: int, seed: int, where: str) -> np.ndarray:
    fields = trajectories(PDES[pde], setting, count, seed)
    bad = [i for i in range(count) if not np.all(np.isfinite(fields[i]))]
    if bad:
        raise DataError(f"{where}: trajectories {bad} blew up (seed {seed}); choose another seed or scale")
    return fields


def load_field_file(path: Path, length: float, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t, u[trajectory, t, x]) from a .npy (u alone: give length and dt) or a .npz (u, and x, t or the options)."""
    if not path.is_file():
        raise DataError(f"fields-file: no file at {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path}: not a readable .npy/.npz array file ({error})") from None
    if isinstance(loaded, np.ndarray):
        u, x, t = loaded, None, None
    else:
        with loaded:
            if "u" not in loaded.files:
                raise DataError(f"{path}: no array 'u' in the .npz (it has {', '.join(loaded.files) or 'nothing'})")
            u = loaded["u"]
            x = loaded["x"] if "x" in loaded.files else None
            t = loaded["t"] if "t" in loaded.files else None
    if u.ndim == 2:
        u = u[None]
    if u.ndim != 3 or not np.issubdtype(u.dtype, np.number):
        raise DataError(f"{path}: u must be numeric (t, x) or (trajectory, t, x), got {u.dtype} {u.shape}")
    n_t, n_x = u.shape[1:]
    if x is None:
        if length <= 0:
            raise ConfigError(f"fields-file: {path} has no x array: give option length (the periodic domain)")
        x = length * np.arange(n_x) / n_x
    if t is None:
        if dt <= 0:
            raise ConfigError(f"fields-file: {path} has no t array: give option dt (the snapshot spacing)")
        t = dt * np.arange(n_t)
    x, t = np.asarray(x, np.float64).reshape(-1), np.asarray(t, np.float64).reshape(-1)
    if (len(t), len(x)) != (n_t, n_x):
        raise DataError(f"{path}: u has (t, x) = {(n_t, n_x)} but t has {len(t)} and x {len(x)} points")
    if not np.all(np.isfinite(u)):
        raise DataError(f"{path}: u has non-finite values")
    check_grid(x, t, str(path))
    return x, t, u.astype(np.float64)


def prepare_fields_file(
    out_dir: Path,
    *,
    path: str,
    pde: Literal["unknown", "kdv", "burgers", "ks", "mkdv"] = "unknown",
    test_trajectories: int = 0,
    length: float = 0.0,
    dt: float = 0.0,
) -> dict:
    """A user's own periodic fields: u of shape (t, x) or (trajectory, t, x) in a .npy, or with x and t in a .npz.
    `pde` names the true equation when it is known (success rates need it)."""
    source = Path(path).expanduser()
    x, t, u = load_field_file(source, length, dt)
    check_counts(f"fields-file ({source})", len(u), test_trajectories)
    train = len(u) - test_trajectories
    splits = {"train": u[:train]}
    if test_trajectories:
        splits["test"] = u[train:]
    return write_field_dataset(
        out_dir,
        source="fields-file",
        options={"path": str(path), "pde": pde, "test_trajectories": test_trajectories, "length": length, "dt": dt},
        generator_version=GENERATOR_VERSION,
        x=x,
        t=t,
        splits=splits,
        pde=pde_entry(pde) if pde != "unknown" else {"name": "unknown"},
    )
