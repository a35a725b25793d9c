"""Discovered bases against the true algebra (the official visualization.py metric, liesd.md §3.4).

Each basis vector u is normalised jointly over all its generator blocks, then mapped to the representation
it is compared in: itself, except in the tensor form, where (A, B1, B2) becomes (A, B1 kron I + I kron B2)
so the gauge (0, cI, -cI) maps to zero and B1, B2 are compared through the action they define.
"""

from __future__ import annotations

import numpy as np

from components.liesd.systems import Layout
from components.liesd.tasks import kronecker_sum


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def compared(vectors: np.ndarray, form: str, layout: Layout) -> np.ndarray:
    """(D, unknowns) raw bases -> (D, p) jointly normalised, in the representation they are compared in."""
    vectors = normalised(np.asarray(vectors, dtype=np.float64))
    if form != "tensor":
        return vectors
    parts = layout.split(vectors)
    output = np.stack([kronecker_sum(b1, b2).reshape(-1) for b1, b2 in zip(parts["B1"], parts["B2"])])
    return np.concatenate([parts["A"].reshape(len(vectors), -1), output], axis=1)


def residual(basis: np.ndarray, targets: np.ndarray) -> float:
    """||basis W* - targets||_F^2 with W* the least-squares fit, computed explicitly: numpy's lstsq returns
    no residuals for rank-deficient or square systems, which would read as a perfect fit (liesd.md §8)."""
    weights = np.linalg.lstsq(basis, targets, rcond=None)[0]
    return float(np.sum((basis @ weights - targets) ** 2))


def error_space(found: np.ndarray, truth: np.ndarray) -> float:
    """||R W* - V||^2 + ||V W'* - R||^2 with columns V = found bases and R = true bases; 0 iff equal spans."""
    v, r = np.asarray(found).T, np.asarray(truth).T
    return residual(r, v) + residual(v, r)


def error_orth(found: np.ndarray) -> float:
    """sum_{i<j} |<v_i, v_j>| over the compared bases."""
    gram = np.asarray(found) @ np.asarray(found).T
    return float(np.sum(np.abs(np.triu(gram, k=1))))
