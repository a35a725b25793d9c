"""Entity alignment across two modalities (hypergraph.md §3.5): node signatures of the two recovered
hypergraphs, a Hungarian assignment on their l1 distances, and an optional swap search."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from components.hypergraph.estimators import Recovered, key_members, set_keys
from components.hypergraph.world import PAD


def signatures(recovered: Recovered, n: int, width: int, top: int) -> np.ndarray:
    """(n, 1 + top): weighted degree sum_{e ∋ u} w_hat(e), then the top-L incident weights, descending."""
    members = key_members(recovered.keys, n, width)
    rows, columns = np.nonzero(members != PAD)
    nodes, weights = members[rows, columns], recovered.weights[rows]
    out = np.zeros((n, 1 + top))
    np.add.at(out[:, 0], nodes, weights)
    if top:
        order = np.lexsort((-weights, nodes))  # by node, heaviest first
        nodes, weights = nodes[order], weights[order]
        rank = np.arange(len(nodes)) - np.searchsorted(nodes, nodes)  # position within the node's run
        keep = rank < top
        out[nodes[keep], 1 + rank[keep]] = weights[keep]
    return out


def hungarian(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pi_hat[token of modality 1] = token of modality 2, minimising the summed l1 signature distance."""
    cost = np.abs(first[:, None, :] - second[None, :, :]).sum(axis=2)
    rows, columns = linear_sum_assignment(cost)
    match = np.empty(len(first), dtype=np.int64)
    match[rows] = columns
    return match, cost


def overlap(first: Recovered, second: Recovered, match: np.ndarray, n: int, width: int) -> float:
    """sum_e min(w1_hat(e), w2_hat(pi(e))): the recovered mass the matching carries onto the other modality."""
    mapped = key_members(first.keys, n, width)
    mapped = np.where(mapped == PAD, PAD, match[np.maximum(mapped, 0)])
    keys = set_keys(mapped, n)
    where = np.searchsorted(second.keys, keys)
    found = (where < len(second.keys)) & (second.keys[np.minimum(where, len(second.keys) - 1)] == keys)
    other = np.where(found, second.weights[np.minimum(where, len(second.keys) - 1)], 0.0)
    return float(np.minimum(first.weights, other).sum())


def refine(
    first: Recovered,
    second: Recovered,
    match: np.ndarray,
    cost: np.ndarray,
    n: int,
    width: int,
    neighbours: int,
    passes: int,
) -> np.ndarray:
    """§3.5 step 4: swap the images of two tokens when it raises the overlap; candidates for a token are the
    tokens whose images are its nearest signatures, so a pass costs O(n * neighbours) overlaps."""
    match = match.copy()
    best = overlap(first, second, match, n, width)
    nearest = np.argsort(cost, axis=1)[:, : neighbours + 1]  # modality-2 tokens nearest each modality-1 token
    owner = np.argsort(match)  # owner[y] = the modality-1 token mapped to y
    for _ in range(passes):
        improved = False
        for a in range(n):
            for target in nearest[a]:
                b = owner[target]
                if b == a:
                    continue
                match[a], match[b] = match[b], match[a]
                score = overlap(first, second, match, n, width)
                if score > best + 1e-12:
                    best, improved = score, True
                    owner[match[a]], owner[match[b]] = a, b
                else:
                    match[a], match[b] = match[b], match[a]
        if not improved:
            break
    return match


def accuracy(match: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(match == truth))


def best_dihedral_accuracy(match: np.ndarray, phi1: np.ndarray, phi2: np.ndarray) -> float:
    """Orbit-level accuracy for the cycle control: the best accuracy against truth o g over the 2n symmetries g
    of the n-cycle (rotations and reflections), i.e. whether pi_hat is right up to an automorphism."""
    n = len(match)
    entity_of = np.argsort(phi1)  # phi1^-1
    best = 0.0
    for shift in range(n):
        for sign in (1, -1):
            g = (sign * np.arange(n) + shift) % n  # an automorphism of the cycle on entities
            truth = phi2[g[entity_of]]
            best = max(best, accuracy(match, truth))
    return best
