"""Procedural table sources: the three-body orbits of HNN (Greydanus et al. 2019), as EKAN reads them.

Three unit masses, G = 1, positions on a circle of radius r ~ U[0.9, 1.2] at 120 degrees, velocities
of the circular orbit perturbed by a factor 1 + 0.2 U(-1, 1) per component, integrated with
solve_ivp (RK45, rtol 1e-9, atol 1e-6: HNN's settings) and sampled at `timesteps` points of [0, t_end].
The dataset is `train.npy` and `test.npy`, float64 arrays (trajectories, timesteps, 3 bodies,
(q_x, q_y, v_x, v_y)), plus a manifest; the last `test_fraction` of the trajectories are the test split.
The reader is components/ekan/data.py (`ThreeBodyTable`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from components.core.errors import ConfigError, DataError
from components.core.files import atomic_directory
from components.core.shards import MANIFEST, encode_npy, manifest_bytes, sha256_file

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options
BODIES = 3
FIELDS = ("q_x", "q_y", "v_x", "v_y")


def rotate(vector: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def initial_state(
    rng: np.random.Generator, orbit_noise: float = 0.2, min_radius: float = 0.9, max_radius: float = 1.2
) -> np.ndarray:
    """HNN's `random_config`: (3, 4) rows (q_x, q_y, v_x, v_y) of a perturbed circular three-body orbit."""
    direction = 2 * rng.random(2) - 1  # as HNN: a point of the square, scaled onto the circle
    radius = rng.random() * (max_radius - min_radius) + min_radius
    q1 = direction * radius / np.sqrt(np.sum(direction**2))
    # speed of the circular orbit of three unit masses at 120 degrees (HNN's scale factor)
    v1 = rotate(q1, np.pi / 2) / radius**1.5 * np.sqrt(np.sin(np.pi / 3) / (2 * np.cos(np.pi / 6) ** 2))
    state = np.zeros((BODIES, 4))
    for body in range(BODIES):
        angle = 2 * np.pi / 3 * body
        state[body, :2] = rotate(q1, angle)
        state[body, 2:] = rotate(v1, angle)
    for body in range(BODIES):
        state[body, 2:] *= 1 + orbit_noise * (2 * rng.random(2) - 1)
    return state


def derivative(_: float, y: np.ndarray) -> np.ndarray:
    """d/dt (q, v) for unit masses and G = 1: a_i = sum_j (q_j - q_i) / |q_j - q_i|^3.

    Written out pair by pair: solve_ivp calls it ~10^5 times per dataset, and numpy's per-call overhead
    on 12 numbers is most of the cost."""
    x1, y1, u1, w1, x2, y2, u2, w2, x3, y3, u3, w3 = y.tolist()
    dx12, dy12, dx13, dy13, dx23, dy23 = x2 - x1, y2 - y1, x3 - x1, y3 - y1, x3 - x2, y3 - y2
    k12 = (dx12 * dx12 + dy12 * dy12) ** -1.5
    k13 = (dx13 * dx13 + dy13 * dy13) ** -1.5
    k23 = (dx23 * dx23 + dy23 * dy23) ** -1.5
    return np.array(
        [
            u1,
            w1,
            dx12 * k12 + dx13 * k13,
            dy12 * k12 + dy13 * k13,
            u2,
            w2,
            -dx12 * k12 + dx23 * k23,
            -dy12 * k12 + dy23 * k23,
            u3,
            w3,
            -dx13 * k13 - dx23 * k23,
            -dy13 * k13 - dy23 * k23,
        ]
    )


def energy(states: np.ndarray) -> np.ndarray:
    """Total energy of (..., 3, 4) states (unit masses): kinetic minus sum over pairs of 1/r."""
    kinetic = 0.5 * np.sum(states[..., 2:] ** 2, axis=(-1, -2))
    q = states[..., :2]
    potential = np.zeros(states.shape[:-2])
    for i in range(BODIES):
        for j in range(i + 1, BODIES):
            potential -= 1.0 / np.linalg.norm(q[..., i, :] - q[..., j, :], axis=-1)
    return kinetic + potential


def integrate(state: np.ndarray, times: np.ndarray, rtol: float) -> np.ndarray:
    solution = solve_ivp(derivative, (times[0], times[-1]), state.reshape(-1), t_eval=times, rtol=rtol)
    if not solution.success:
        raise DataError(f"three-body: the integrator failed ({solution.message})")
    return solution.y.T.reshape(len(times), BODIES, 4)


def three_body_orbits(trajectories: int, timesteps: int, t_end: float, seed: int, rtol: float = 1e-9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    times = np.linspace(0.0, t_end, timesteps)
    return np.stack([integrate(initial_state(rng), times, rtol) for _ in range(trajectories)])


def prepare_three_body(
    out_dir: Path,
    *,
    trajectories: int = 500,
    timesteps: int = 50,
    t_end: float = 5.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    rtol: float = 1e-9,
) -> dict:
    """HNN three-body orbits for EKAN (ekan.md §4): 50 points on [0, 5] per trajectory, 20 % for test."""
    where = "three-body"
    if trajectories < 2:
        raise ConfigError(f"{where}: option trajectories must be >= 2, got {trajectories}")
    if timesteps < 6:
        raise ConfigError(f"{where}: option timesteps must be >= 6 (4 input steps, 1 target, 1 spare), got {timesteps}")
    test = int(round(trajectories * test_fraction))
    if not 1 <= test < trajectories:
        raise ConfigError(
            f"{where}: test_fraction {test_fraction} leaves {test} of {trajectories} trajectories "
            "for test; choose it so both splits are non-empty"
        )
    orbits = three_body_orbits(trajectories, timesteps, t_end, seed, rtol)
    drift = np.abs(energy(orbits) - energy(orbits[:, :1])) / np.abs(energy(orbits[:, :1]))
    arrays = {"train": orbits[: trajectories - test], "test": orbits[trajectories - test :]}
    options = {
        "trajectories": trajectories,
        "timesteps": timesteps,
        "t_end": t_end,
        "test_fraction": test_fraction,
        "seed": seed,
        "rtol": rtol,
    }
    with atomic_directory(out_dir) as staging:
        files = []
        for split, array in arrays.items():
            path = staging / f"{split}.npy"
            path.write_bytes(encode_npy(array))
            files.append({"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        manifest = {
            "name": f"{Path(out_dir).parent.name}/{Path(out_dir).name}",
            "kind": "tables",
            "source": where,
            "options": options,
            "generator_version": GENERATOR_VERSION,
            "format": "npy",
            "layout": ["trajectory", "time", "body", list(FIELDS)],
            "dtype": "float64",
            "splits": {
                split: {"trajectories": int(len(array)), "shape": list(array.shape), "shards": []}
                for split, array in arrays.items()
            },
            "files": files,
            "max_relative_energy_drift": float(drift.max()),
        }
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest
