"""Reading the hypergraph back (hypergraph.md §3.2) and scoring it against the truth (§3.3), plus the
theory's predictions (§3.4) that the curves are compared with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from components.hypergraph.world import PAD, Hypergraph


@dataclass(frozen=True)
class Recovered:
    keys: np.ndarray  # (S,) int64 set keys, ascending
    weights: np.ndarray  # (S,) float64 recovered weights w_hat(s)


def set_keys(rows: np.ndarray, n: int) -> np.ndarray:
    """One int64 per row that depends on the token SET only: sort the row (order carries no information, §8),
    then read it as digits in base n + 1 (PAD is the digit n)."""
    ordered = np.sort(np.where(rows == PAD, n, rows), axis=1)
    keys = np.zeros(len(rows), dtype=np.int64)
    for column in range(ordered.shape[1]):
        keys = keys * (n + 1) + ordered[:, column]
    return keys


def key_members(keys: np.ndarray, n: int, width: int) -> np.ndarray:
    """The inverse of set_keys: (S, width) token table, PAD where a set is smaller."""
    digits = np.zeros((len(keys), width), dtype=np.int64)
    rest = keys.copy()
    for column in range(width - 1, -1, -1):
        rest, digits[:, column] = np.divmod(rest, n + 1)
    return np.where(digits == n, PAD, digits)


def tabular(corpus: np.ndarray, n: int) -> Recovered:
    """The count-based masked model's read-out = the MLE: w_hat(s) = #{samples with token set s} / N (§3.2)."""
    keys, counts = np.unique(set_keys(corpus, n), return_counts=True)
    return Recovered(keys, counts / len(corpus))


def relabelled_truth(world: Hypergraph, phi: np.ndarray) -> Recovered:
    """w0 o phi^-1 as keys of the token sets phi(e): what a perfect read-out of that modality returns."""
    tokens = np.where(world.members == PAD, PAD, phi[np.maximum(world.members, 0)])
    keys = set_keys(tokens, world.n)
    order = np.argsort(keys)
    return Recovered(keys[order], world.weights[order])


def aligned(estimate: Recovered, truth: Recovered) -> tuple[np.ndarray, np.ndarray]:
    """Both weight vectors over the union of the two supports (false-positive mass counts, §8)."""
    union = np.union1d(estimate.keys, truth.keys)
    w_hat, w_true = np.zeros(len(union)), np.zeros(len(union))
    w_hat[np.searchsorted(union, estimate.keys)] = estimate.weights
    w_true[np.searchsorted(union, truth.keys)] = truth.weights
    return w_hat, w_true


def errors(estimate: Recovered, truth: Recovered, f1_threshold: float) -> dict[str, float]:
    """§3.3: total variation, l2, max error, exact support recovery, edge-set F1 at tau = f1_threshold w_min."""
    w_hat, w_true = aligned(estimate, truth)
    diff = np.abs(w_hat - w_true)
    tau = f1_threshold * truth.weights.min()
    found, real = w_hat > tau, w_true > 0
    hits = float(np.sum(found & real))
    f1 = float(2 * hits / (found.sum() + real.sum())) if found.sum() + real.sum() else 1.0
    return {
        "tv": 0.5 * float(diff.sum()),
        "l2": float(np.sqrt(np.sum(diff**2))),
        "max_err": float(diff.max()),
        "exact": float(np.array_equal(w_hat > 0, real)),  # E_hat = supp(w_hat) equals phi(E0)
        "f1": f1,
    }


def predicted_tv(weights: np.ndarray, samples: int) -> float:
    """§3.4: E d_TV ≈ (2 pi N)^-1/2 sum_e sqrt(w_e (1 - w_e)) for the empirical estimator."""
    return float(np.sum(np.sqrt(weights * (1 - weights))) / math.sqrt(2 * math.pi * samples))


def predicted_exact(weights: np.ndarray, samples: int) -> float:
    """§3.4: P(every hyperedge seen at least once) ≈ prod_e (1 - (1 - w_e)^N)."""
    return float(np.exp(np.sum(np.log1p(-np.exp(samples * np.log1p(-np.minimum(weights, 1 - 1e-16)))))))


def exact_frequency(weights: np.ndarray, samples: int, draws: int, rng: np.random.Generator) -> float:
    """How often a corpus of N samples observes every hyperedge, from `draws` multinomial count vectors."""
    counts = rng.multinomial(samples, weights, size=draws)
    return float(np.mean(np.all(counts > 0, axis=1)))


def loglog_slope(samples: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(samples), np.log(values), 1)[0])
