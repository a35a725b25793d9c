"""uba.md §6(a): gradient descent on f(x) = 0.5 sum_i lambda_i x_i^2 leaves x_i,T = x_i,0 prod_t (1 - eta_t lambda_i)."""

from __future__ import annotations

import numpy as np


def eigenvalues(mu: float, L: float, count: int) -> np.ndarray:
    return np.linspace(mu, L, count, dtype=np.float64)


def worst_residual(step_sizes: np.ndarray, curvatures: np.ndarray) -> float:
    """max_i |prod_t (1 - eta_t lambda_i)|, multiplied per eigenvalue in float64 (no cancellation)."""
    residual = np.ones_like(curvatures)
    for eta in np.asarray(step_sizes, dtype=np.float64):
        residual *= 1.0 - eta * curvatures
    return float(np.max(np.abs(residual)))
