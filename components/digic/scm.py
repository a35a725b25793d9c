"""The spec's linear-Gaussian structural causal model (digic.md §6): nine features, the expert action A and a
spurious effect cue Z1 = beta A + noise whose sign flips between domains (beta = +1 train, -1 shifted).

Every noise is N(0, 1); the action's own noise is 0.5 e, so Var(A | Pa(A)) = 0.25 is the best achievable MSE
in every domain. True Pa(A) = {P1, P2, P3}; Z1 and Z2 are children of A, W a spouse (through Z2)."""

from __future__ import annotations

import numpy as np

FEATURES = ("G", "P1", "P2", "P3", "N1", "N2", "W", "Z1", "Z2")
PARENTS = ("P1", "P2", "P3")
ACTION_NOISE_VARIANCE = 0.25  # (0.5 e)^2: the expert's own noise, the floor of any policy's MSE


def sample(n: int, beta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n rows of (features in FEATURES order, action) from the domain with effect-cue sign `beta`."""
    e = rng.standard_normal((n, 10))
    g = e[:, 0]
    p1 = 0.8 * g + e[:, 1]
    p2 = e[:, 2]
    p3 = 0.6 * p2 + e[:, 3]
    n1 = e[:, 4]
    n2 = 0.7 * p1 + e[:, 5]
    w = e[:, 6]
    action = 0.5 * p1 - 0.5 * p2 + 0.4 * p3 + 0.5 * e[:, 7]
    z1 = beta * action + 0.6 * e[:, 8]  # noisy on purpose: a near-copy of A breaks faithfulness (spec §6 note)
    z2 = 0.6 * action + 0.6 * w + 0.6 * e[:, 9]
    return np.stack([g, p1, p2, p3, n1, n2, w, z1, z2], axis=1), action


def adjacency() -> np.ndarray:
    """The true DAG over FEATURES + ("A",): adjacency[i, j] = 1 for an edge i -> j."""
    names = (*FEATURES, "A")
    edges = [("G", "P1"), ("P2", "P3"), ("P1", "N2"), ("P1", "A"), ("P2", "A"), ("P3", "A")]
    edges += [("A", "Z1"), ("A", "Z2"), ("W", "Z2")]
    matrix = np.zeros((len(names), len(names)), dtype=np.int8)
    for source, target in edges:
        matrix[names.index(source), names.index(target)] = 1
    return matrix


def domains(n_train: int, n_test: int, beta_train: float, beta_shift: float, seed: int) -> dict[str, tuple]:
    """The run's three tables, each from its own stream of the seed: demonstrations (train domain), a held-out
    test set of the train domain and one of the shifted domain."""
    return {
        "train": sample(n_train, beta_train, np.random.default_rng([seed, 0])),
        "test_train_domain": sample(n_test, beta_train, np.random.default_rng([seed, 1])),
        "test_shift_domain": sample(n_test, beta_shift, np.random.default_rng([seed, 2])),
    }
