"""The tasks' data, generated from the seed (liesd.md §4), their exact functions, and their true Lie algebras.

inertia: x = k points r_i ~ N(0, I_3), y = sum_i (|r_i|^2 I - r_i r_i^T) (EMLP's generator); the noisy
variant multiplies x and y entrywise by (1 + noise U(-1, 1)) after y is computed, as the official code.
two_body: HNN's orbits data (2 unit masses, G = 1), one-step prediction of (q1, v1, q2, v2) in (R^2)^4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TASKS = ("two_body", "inertia")
ROTATION_2D = np.array([[0.0, -1.0], [1.0, 0.0]])


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (n, c, d) input channels
    y: np.ndarray  # (n, c', d') output channels, or (n, d1, d2) for a matrix output


# ---------------------------------------------------------------- moment of inertia


def inertia_tensor(points: np.ndarray) -> np.ndarray:
    """(n, k, 3) -> (n, 3, 3): sum_i |r_i|^2 I - r_i r_i^T."""
    squared = np.einsum("nkd,nkd->n", points, points)
    return squared[:, None, None] * np.eye(3) - np.einsum("nki,nkj->nij", points, points)


def inertia_torch(flat: torch.Tensor, points: int) -> torch.Tensor:
    """The exact function on one flattened input (3 k,) -> flattened (9,): what the network should learn."""
    r = flat.reshape(points, 3)
    eye = torch.eye(3, dtype=flat.dtype, device=flat.device)
    return ((r * r).sum() * eye - r.T @ r).reshape(9)


def exact_outputs(task: str, x: np.ndarray) -> np.ndarray | None:
    """The exact function at inputs x, where it has a closed form (two_body's is an ODE flow: None)."""
    return inertia_tensor(x) if task == "inertia" else None


def inertia_split(n: int, points: int, noise: float, rng: np.random.Generator) -> tuple[Split, Split]:
    """(what the network trains on, the same draws before the noise)."""
    x = rng.standard_normal((n, points, 3))
    y = inertia_tensor(x)
    clean = Split(x, y)
    if noise:
        x = x * (1.0 + noise * rng.uniform(-1.0, 1.0, x.shape))
        y = y * (1.0 + noise * rng.uniform(-1.0, 1.0, y.shape))
    return Split(x, y), clean


# ---------------------------------------------------------------- two-body orbits


def two_body_rhs(t: float, flat: np.ndarray) -> np.ndarray:
    """Newtonian gravity of two unit masses (G = 1); state rows (q1, q2, v1, v2) in R^2, many orbits at once."""
    state = flat.reshape(-1, 4, 2)
    q1, q2, v1, v2 = state[:, 0], state[:, 1], state[:, 2], state[:, 3]
    delta = q2 - q1
    inverse_cube = np.sum(delta * delta, axis=1, keepdims=True) ** -1.5
    acc1 = delta * inverse_cube
    return np.stack([v1, v2, acc1, -acc1], axis=1).reshape(-1)


def two_body_orbits(
    trajectories: int, steps: int, t_end: float, orbit_noise: float, rtol: float, rng: np.random.Generator
) -> np.ndarray:
    """HNN experiment-orbits' sampler: body 1 at pos ~ U[0.5, 1.5]^2, body 2 at -pos, circular-orbit velocity
    |v| = 1 / (2 sqrt(r)) scaled by (1 + orbit_noise N(0, 1)). Returns (trajectories, steps, 4, 2) with
    channels (q1, v1, q2, v2). All orbits are integrated as one vectorised system (rtol = atol = `rtol`)."""
    from scipy.integrate import solve_ivp

    pos = rng.uniform(0.5, 1.5, size=(trajectories, 2))
    radius = np.linalg.norm(pos, axis=1, keepdims=True)
    vel = pos[:, ::-1] / (2.0 * radius**1.5)
    vel[:, 0] *= -1.0
    vel *= 1.0 + orbit_noise * rng.standard_normal((trajectories, 1))
    start = np.stack([pos, -pos, vel, -vel], axis=1)
    times = np.linspace(0.0, t_end, steps)
    solution = solve_ivp(
        two_body_rhs, (0.0, t_end), start.reshape(-1), t_eval=times, rtol=rtol, atol=rtol, method="DOP853"
    )
    if not solution.success:
        raise RuntimeError(f"the two-body integration failed: {solution.message}")
    states = solution.y.T.reshape(steps, trajectories, 4, 2).transpose(1, 0, 2, 3)
    return states[:, :, [0, 2, 1, 3]]  # (q1, q2, v1, v2) -> the per-body channels (q1, v1, q2, v2)


def rotate_quarter(channels: np.ndarray) -> np.ndarray:
    """Rotate every R^2 channel by +90 degrees."""
    return channels @ ROTATION_2D.T


def two_body_split(orbits: np.ndarray, non_uniform: bool) -> Split:
    """One-step pairs (state_t, state_{t+1}) for t = 0 .. steps - 3, as the official dataset (48 of 50 steps).

    non_uniform: samples whose q1 lies in quadrant I or III are rotated by +90 degrees (inputs and targets),
    so the data are not rotation symmetric while the map still is (liesd.md §4)."""
    steps = orbits.shape[1]
    x = orbits[:, : steps - 2].reshape(-1, 4, 2)
    y = orbits[:, 1 : steps - 1].reshape(-1, 4, 2)
    if non_uniform:
        q1 = x[:, 0]
        chosen = (q1[:, 0] > 0) == (q1[:, 1] > 0)
        x, y = x.copy(), y.copy()
        x[chosen], y[chosen] = rotate_quarter(x[chosen]), rotate_quarter(y[chosen])
    return Split(x, y)


# ---------------------------------------------------------------- true algebras


def so3_and_scaling() -> list[np.ndarray]:
    """L_x, L_y, L_z (antisymmetric units) and I: the inertia tensor's symmetry algebra acting on R^3."""
    units = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        unit = np.zeros((3, 3))
        unit[i, j], unit[j, i] = 1.0, -1.0
        units.append(unit)
    return [*units, np.eye(3)]


def kronecker_sum(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """The matrix of F -> B1 F + F B2^T on row-major vec(F): B1 kron I + I kron B2."""
    return np.kron(b1, np.eye(b2.shape[-1])) + np.kron(np.eye(b1.shape[-1]), b2)


def true_generators(task: str) -> list[np.ndarray]:
    """Generators acting on one channel (R^2 for two_body, R^3 for inertia)."""
    if task == "two_body":
        return [ROTATION_2D.copy()]
    if task == "inertia":
        return so3_and_scaling()
    raise ValueError(f"unknown task '{task}'; choose from {', '.join(TASKS)}")


def true_unknowns(task: str, form: str, in_channels: int) -> np.ndarray:
    """The true algebra as vectors u in the unknown layout of `form` (rows), before any normalisation.

    A generator G acting on every channel gives A = G (shared) or I_c kron G (vector form). The output
    transforms as: two_body (R^2)^4 with G per channel; inertia's matrix with F -> G F G^T, which is the
    Kronecker sum on vec(F) (vector and multichannel forms) or B1 = B2 = G (tensor form)."""
    vectors = []
    for g in true_generators(task):
        on_input = np.kron(np.eye(in_channels), g)
        if task == "two_body":
            parts = {"vector": [on_input, on_input], "multichannel": [g, g], "channelwise": [g] * in_channels}.get(form)
        else:
            parts = {
                "vector": [on_input, kronecker_sum(g, g)],
                "multichannel": [g, kronecker_sum(g, g)],
                "tensor": [g, g, g],
            }.get(form)
        if parts is None:
            raise ValueError(f"task '{task}' has no '{form}' form")
        vectors.append(np.concatenate([p.reshape(-1) for p in parts]))
    return np.stack(vectors)
