"""Coupling paths of rank-n Cartesian tensors (ict.md §3.2): 0 -> 1 -> j_2 -> ... -> j_n, |j_k - j_{k-1}| <= 1.

The canonical order of paths is the depth-first order of Algorithm 1 with j+1, j, j-1 tried in that order
(the official code's order), so index i of every list of paths in this package is the same path.
"""

from __future__ import annotations

import functools

Path = tuple[int, ...]  # (j_0 = 0, j_1 = 1, ..., j_n)


def next_weights(j: int) -> tuple[int, ...]:
    """Weights reachable by coupling one more vector to weight j, in Algorithm 1's order."""
    return (1,) if j == 0 else tuple(w for w in (j + 1, j, j - 1) if w >= 0)


@functools.cache
def cartesian_paths(n: int) -> tuple[Path, ...]:
    if n < 1:
        raise ValueError(f"rank n must be >= 1, got {n}")
    out: list[Path] = []

    def visit(path: Path) -> None:
        if len(path) == n + 1:
            out.append(path)
            return
        for j in next_weights(path[-1]):
            visit(path + (j,))

    visit((0,))
    return tuple(out)


def canonical_key(path: Path) -> tuple[int, ...]:
    """Sorting paths by this key gives the depth-first order (a step up sorts before level, before down)."""
    return tuple(path[k - 1] - path[k] for k in range(1, len(path)))


@functools.cache
def path_index(n: int) -> dict[Path, int]:
    return {p: i for i, p in enumerate(cartesian_paths(n))}


@functools.cache
def multiplicities(n: int) -> tuple[int, ...]:
    """m_l(n) for l = 0..n: the number of paths ending at weight l (a walk count, no enumeration)."""
    counts = {0: 1}
    for _ in range(n):
        following: dict[int, int] = {}
        for j, c in counts.items():
            for w in next_weights(j):
                following[w] = following.get(w, 0) + c
        counts = following
    return tuple(counts.get(l, 0) for l in range(n + 1))


def num_paths(n: int) -> int:
    return sum(multiplicities(n))


def end_dimension(n: int) -> int:
    """dim End_O(3)((R^3)^{(x)n}) = sum_l m_l^2 (Schur's lemma)."""
    return sum(m * m for m in multiplicities(n))


@functools.cache
def trinomial(n: int, total: int) -> int:
    """Number of digit strings mu in {-1, 0, 1}^n with sum(mu) == total (the coefficient of x^total)."""
    if abs(total) > n:
        return 0
    if n == 0:
        return 1
    return trinomial(n - 1, total - 1) + trinomial(n - 1, total) + trinomial(n - 1, total + 1)


def central_trinomial(n: int) -> int:
    return trinomial(n, 0)


def spherical_block_entries(n: int) -> int:
    """Entries of all M-blocks with |M| <= j_n over all paths, dense inside each block (ict.md §3.7 (4))."""
    mult = multiplicities(n)
    return sum(mult[l] * sum(trinomial(n, m) ** 2 for m in range(-l, l + 1)) for l in range(n + 1))


def dense_entries(n: int) -> int:
    return num_paths(n) * 9**n


def check_count_identities(n: int) -> None:
    """sum_l m_l (2l + 1) = 3^n and #paths = central trinomial; raises if the walk count is wrong."""
    mult = multiplicities(n)
    if sum(m * (2 * l + 1) for l, m in enumerate(mult)) != 3**n:
        raise AssertionError(f"n={n}: sum m_l (2l+1) != 3^n")
    if sum(mult) != central_trinomial(n):
        raise AssertionError(f"n={n}: #paths != central trinomial")
