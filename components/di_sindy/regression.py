"""Sequentially thresholded least squares (STLSQ, di_sindy.md §3.4 step 3) and the discovery metrics.

Own code, written to match pysindy 2.x's `STLSQ(threshold, alpha, max_iter, normalize_columns=False)` (ridge on
the raw coefficients, threshold in original units, stop when the support is unchanged, then an unregularised
refit on the support); `tests/components/test_di_sindy.py` checks the parity where pysindy is installed. The
least squares are solved on column-normalised features (for conditioning) with the ridge penalty mapped back to
the raw coefficients, so the answer is that of the raw problem."""

from __future__ import annotations

import numpy as np

from components.core.pdes import Monomial


def ridge(theta: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """argmin |y - theta xi|^2 + alpha |xi|^2, solved with columns scaled to unit norm."""
    norms = np.linalg.norm(theta, axis=0)
    norms[norms == 0] = 1.0
    scaled = theta / norms
    gram = scaled.T @ scaled + alpha * np.diag(1.0 / norms**2)  # alpha |xi|^2 with xi = xi_scaled / norms
    return np.linalg.solve(gram, scaled.T @ y) / norms


def stlsq(
    theta: np.ndarray, y: np.ndarray, threshold: float, alpha: float = 1e-5, max_iter: int = 20, unbias: bool = True
) -> np.ndarray:
    """Sparse xi with theta xi ~ y: ridge fit, then <= max_iter rounds of zeroing |xi| < threshold and refitting."""
    columns = theta.shape[1]
    support = np.ones(columns, dtype=bool)
    xi = np.zeros(columns)
    xi[support] = ridge(theta[:, support], y, alpha)
    for _ in range(max_iter):
        new_support = np.abs(xi) >= threshold
        xi[~new_support] = 0.0
        if not new_support.any() or np.array_equal(new_support, support):
            support = new_support
            break
        support = new_support
        xi = np.zeros(columns)
        xi[support] = ridge(theta[:, support], y, alpha)
    xi[~support] = 0.0
    if unbias and support.any():
        xi = np.zeros(columns)
        xi[support] = np.linalg.lstsq(theta[:, support], y, rcond=None)[0]
    return xi


def stlsq_pysindy(theta: np.ndarray, y: np.ndarray, threshold: float, alpha: float = 1e-5, max_iter: int = 20):
    """The same regression through pysindy 2.x (an optional dependency)."""
    import pysindy

    optimizer = pysindy.STLSQ(threshold=threshold, alpha=alpha, max_iter=max_iter, normalize_columns=False)
    return optimizer.fit(theta, y).coef_.reshape(-1)


def support(equation: dict[Monomial, float]) -> frozenset[Monomial]:
    return frozenset(m for m, c in equation.items() if c != 0)


def success(found: dict[Monomial, float], truth: dict[Monomial, float]) -> bool:
    """Success (§3.4 step 5): the raw-variable support equals the true support exactly."""
    return support(found) == support(truth)


def coefficient_error(found: dict[Monomial, float], truth: dict[Monomial, float]) -> float:
    """|xi_hat - xi*|_2 / |xi*|_2 over the union of both supports."""
    keys = support(found) | support(truth)
    diff = np.array([found.get(m, 0.0) - truth.get(m, 0.0) for m in keys])
    return float(np.linalg.norm(diff) / np.linalg.norm(list(truth.values())))


def max_coefficient_error(found: dict[Monomial, float], truth: dict[Monomial, float]) -> float:
    """max over the true terms of |xi_hat_m - xi*_m| / |xi*_m| (inf when a true term is missing)."""
    return float(max(abs(found.get(m, 0.0) - c) / abs(c) for m, c in truth.items()))
