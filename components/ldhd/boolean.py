"""The Boolean LDHD experiments (ldhd.md §3.1-3.2, checks 1-3 of §6): train on the subspace D_{N0} of {±1}^N
where the last N - N0 coordinates are frozen to +1, test on the rest of the cube, and compare the learned function
with the target and with the min-degree interpolator (MDI) the architecture's bias predicts."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

BooleanFunction = Callable[[np.ndarray], np.ndarray]


def cube(n: int) -> np.ndarray:
    """All 2^n points of {±1}^n, [2^n, n] float64."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=n)))


def split_cube(n: int, n0: int) -> tuple[np.ndarray, np.ndarray]:
    """(D_{N0}, X_N minus D_{N0}): the training subspace (coordinates n0.. frozen to +1) and the off-subspace test."""
    points = cube(n)
    inside = np.all(points[:, n0:] == 1.0, axis=1)
    return points[inside], points[~inside]


def parity(subset: Sequence[int]) -> BooleanFunction:
    """chi_S(x) = prod_{i in S} x_i."""
    index = list(subset)
    return lambda x: np.prod(x[:, index], axis=1)


def mdi(target: BooleanFunction, n0: int) -> BooleanFunction:
    """The standard MDI from D_{N0}: f(x_1..x_{N0}, 1, ..., 1) (every monomial's frozen factors set to +1)."""

    def restricted(x: np.ndarray) -> np.ndarray:
        frozen = x.copy()
        frozen[:, n0:] = 1.0
        return target(frozen)

    return restricted


def walsh_coefficients(values: np.ndarray, points: np.ndarray) -> dict[tuple[int, ...], float]:
    """f_hat(S) = E_x[f(x) chi_S(x)] over the full cube `points` (uniform)."""
    n = points.shape[1]
    out = {}
    for size in range(n + 1):
        for subset in itertools.combinations(range(n), size):
            out[subset] = float(np.mean(values * np.prod(points[:, list(subset)], axis=1)))
    return out


def random_features(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, features: int, seed: int,
    projection: np.ndarray | None = None, bias: bool = False, weight_scale: float | None = None,
) -> np.ndarray:  # fmt: skip
    """RF / RFMP (§3.2): ReLU features relu(w . (V x) + b) with w, b random and frozen, output weights fitted by
    min-norm least squares (= GD from zero on the squared loss); returns the predictions on test_x. train_y may
    hold several targets as columns (one feature draw fits them all)."""
    rng = np.random.default_rng(seed)
    projection = np.eye(train_x.shape[1]) if projection is None else np.atleast_2d(projection)
    width = projection.shape[0]
    scale = (1.0 / np.sqrt(width)) if weight_scale is None else weight_scale
    weights = rng.normal(0.0, scale, size=(width, features))
    offsets = rng.normal(0.0, 1.0, size=features) if bias else np.zeros(features)

    def feature_map(x: np.ndarray) -> np.ndarray:
        return np.maximum((x @ projection.T) @ weights + offsets, 0.0) / np.sqrt(features)

    phi = feature_map(train_x)
    # the minimum-norm interpolant a = phi^T (phi phi^T)^+ y, through the small P x P kernel (P training points)
    dual = np.linalg.pinv(phi @ phi.T, hermitian=True) @ train_y
    return feature_map(test_x) @ (phi.T @ dual)


def adjacent_pairs(u: np.ndarray) -> np.ndarray:
    """The PLAA target (check 3): the number of adjacent (1, 1) pairs of u in {0,1}^N."""
    return np.sum(u[:, :-1] * u[:, 1:], axis=1)


def plaa_fit(
    n: int, n0: int, tied: bool, steps: int, batch: int, lr: float, seed: int,
    target: Callable[[np.ndarray], np.ndarray] = adjacent_pairs,
) -> np.ndarray:  # fmt: skip
    """Position-only linear attention (PLAA, §3.2, reconstruction): f_A(u) = sum_{i<j} A_ij u_i u_j, trained by
    GD from A = 0 on u with u_j = 0 beyond n0 (padding). tied=False is the APE-like free upper triangle; tied=True
    shares A_ij = r(j - i) (Toeplitz, RPE). Returns the learned A [n, n]."""
    rng = np.random.default_rng(seed)
    upper = np.triu(np.ones((n, n)), k=1)
    distance = np.subtract.outer(np.arange(n), np.arange(n)).T  # j - i at [i, j]
    relative = np.zeros(n)  # r(d), d = 1..n-1 (index d)
    free = np.zeros((n, n))
    for _ in range(steps):
        u = (rng.random((batch, n)) < 0.5).astype(float)
        u[:, n0:] = 0.0
        a = upper * (relative[np.clip(distance, 0, n - 1)] if tied else free)
        residual = np.einsum("bi,ij,bj->b", u, a, u) - target(u)
        grad = upper * np.einsum("b,bi,bj->ij", residual, u, u) / batch  # d(0.5 mean r^2)/dA
        if tied:
            relative -= lr * np.bincount(np.clip(distance, 0, n - 1).ravel(), weights=grad.ravel(), minlength=n)
        else:
            free -= lr * grad
    return upper * (relative[np.clip(distance, 0, n - 1)] if tied else free)


def plaa_test_mse(a: np.ndarray, target: Callable[[np.ndarray], np.ndarray] = adjacent_pairs) -> float:
    """MSE over all of {0,1}^N (full length at test)."""
    u = (cube(a.shape[0]) < 0).astype(float)
    return float(np.mean((np.einsum("bi,ij,bj->b", u, a, u) - target(u)) ** 2))


def mdi_check(n: int = 10, n0: int = 6, features: int = 20000, seed: int = 0) -> dict[str, float]:
    """Check 1 (§6): the RF model (V = I, no bias, w ~ N(0, I/N)) learns the MDI, not the target."""
    train, test = split_cube(n, n0)
    subsets = {"in_span": (0, 1), "frozen_deg3": (0, 1, n - 1), "frozen_deg2": (0, n - 1)}
    targets = [parity(subset) for subset in subsets.values()]
    predicted = random_features(train, np.stack([t(train) for t in targets], axis=1), test, features, seed)
    out = {}
    for column, (name, target) in enumerate(zip(subsets, targets)):
        out[f"rf_{name}_mse_vs_target"] = float(np.mean((predicted[:, column] - target(test)) ** 2))
        out[f"rf_{name}_mse_vs_mdi"] = float(np.mean((predicted[:, column] - mdi(target, n0)(test)) ** 2))
    return out


def rfmp_check(n: int = 10, n0: int = 6, features: int = 20000, seed: int = 0) -> dict[str, float]:
    """Check 2 (§6): a projection aligned with the symmetric target f = sum_i x_i / sqrt(N) generalises off the
    subspace; V = I does not."""
    train, test = split_cube(n, n0)
    target = test.sum(axis=1) / np.sqrt(n)
    fit = train.sum(axis=1) / np.sqrt(n)
    variance = float(np.var(target))
    out = {"rfmp_target_var": variance}
    for name, projection in (("identity", np.eye(n)), ("aligned", np.ones((1, n)) / np.sqrt(n))):
        predicted = random_features(train, fit, test, features, seed, projection, bias=True, weight_scale=1.0)
        out[f"rfmp_{name}_mse"] = float(np.mean((predicted - target) ** 2))
    return out


def plaa_check(n: int = 12, n0: int = 6, steps: int = 2000, batch: int = 64, lr: float = 0.05, seed: int = 0):
    """Check 3 (§6): Toeplitz-tied A (RPE) counts adjacent pairs at any length; the free A (APE) does not."""
    return {
        "plaa_ape_test_mse": plaa_test_mse(plaa_fit(n, n0, False, steps, batch, lr, seed)),
        "plaa_rpe_test_mse": plaa_test_mse(plaa_fit(n, n0, True, steps, batch, lr, seed)),
    }
