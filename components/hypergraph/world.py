"""The world model of hypergraph.md §3.1: a weighted hypergraph H0, a perception bijection phi, and corpora of
i.i.d. hyperedges emitted as token sequences in a random order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = -1  # a row of a corpus or of H0's member table is padded to the largest hyperedge size with PAD


@dataclass(frozen=True)
class Hypergraph:
    n: int  # entities 0..n-1
    members: np.ndarray  # (M, k_max) int64, each row sorted ascending, padded with PAD at the end
    weights: np.ndarray  # (M,) float64, positive, summing to 1

    @property
    def size(self) -> int:
        return len(self.weights)

    def to_json(self) -> dict:
        return {
            "nodes": self.n,
            "hyperedges": [[int(v) for v in row if v != PAD] for row in self.members],
            "weights": [float(w) for w in self.weights],
        }


def draw_weights(m: int, prior: str, alpha: float, exponent: float, rng: np.random.Generator) -> np.ndarray:
    if prior == "dirichlet":
        weights = rng.dirichlet(np.full(m, alpha))
    else:  # Zipf: w_i ∝ i^-s, assigned to hyperedges in a random order
        weights = rng.permutation(np.arange(1, m + 1, dtype=np.float64) ** -exponent)
    weights = np.maximum(weights, np.finfo(np.float64).tiny)  # w0: E0 -> (0, 1]: every hyperedge has mass
    return weights / weights.sum()


def random_hypergraph(
    n: int, m: int, sizes: list[int], prior: str, alpha: float, exponent: float, rng: np.random.Generator
) -> Hypergraph:
    """M distinct hyperedges on n entities, each of a size drawn uniformly from `sizes`, with prior weights.

    Candidates are drawn in vectorised batches (rows with a repeated entity or a set seen before are
    rejected), so 10^5 hyperedges on 10^4 entities take a fraction of a second; C(n, k) >= M is checked by
    the Config."""
    k_max = max(sizes)
    members = np.full((0, k_max), PAD, dtype=np.int64)
    seen = np.zeros(0, dtype=np.int64)
    while len(members) < m:
        batch = 2 * (m - len(members)) + 16
        width = rng.choice(sizes, size=batch)
        rows = np.sort(rng.integers(0, n, size=(batch, k_max)), axis=1)
        rows = np.where(np.arange(k_max) < width[:, None], rows, n)  # PAD as the digit n, sorted last
        rows = np.sort(rows, axis=1)
        repeated = np.any((rows[:, 1:] == rows[:, :-1]) & (rows[:, 1:] != n), axis=1)
        rows = rows[~repeated]
        keys = np.zeros(len(rows), dtype=np.int64)
        for column in range(k_max):
            keys = keys * (n + 1) + rows[:, column]
        _, first = np.unique(keys, return_index=True)
        first = np.sort(first)  # first appearance, in draw order
        fresh = first[~np.isin(keys[first], seen)][: m - len(members)]
        seen = np.concatenate([seen, keys[fresh]])
        members = np.concatenate([members, np.where(rows[fresh] == n, PAD, rows[fresh])])
    return Hypergraph(n, members, draw_weights(m, prior, alpha, exponent, rng))


def cycle(n: int) -> Hypergraph:
    """The symmetric control of §6: an n-cycle with equal weights (its automorphisms are the dihedral group)."""
    members = np.sort(np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1), axis=1).astype(np.int64)
    return Hypergraph(n, members, np.full(n, 1.0 / n))


def perception(n: int, rng: np.random.Generator) -> np.ndarray:
    """phi: V0 -> X as a permutation array, token = phi[entity]."""
    return rng.permutation(n).astype(np.int64)


def sample_corpus(world: Hypergraph, phi: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """N rows: e ~ Categorical(w0), its members' tokens phi(v) in a uniformly random order, PAD at the end."""
    drawn = world.members[rng.choice(world.size, size=samples, p=world.weights)]
    tokens = np.where(drawn == PAD, PAD, phi[np.maximum(drawn, 0)])
    shuffle_keys = np.where(tokens == PAD, np.inf, rng.random(tokens.shape))  # PAD keeps the last positions
    return np.take_along_axis(tokens, np.argsort(shuffle_keys, axis=1), axis=1)
