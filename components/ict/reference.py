"""The naive reference (ict.md §3.3-3.6, the pseudocode as written): one path at a time, dense matrices.

Every fast routine in `stream.py` has a parity test against these functions for n <= 5. Nothing here is
batched, block-sparse or streamed; it keeps every dense matrix, exactly what the fast path avoids. The one
exception is the last function, the orthogonality oracle: it takes the path vectors from the fast stream
(themselves tested against `path_matrices` here) and keeps all of them, where the check streams one block.
"""

from __future__ import annotations

import math

import torch

from components.ict import stream
from components.ict.cg import real_cg
from components.ict.paths import Path, next_weights


def path_matrices(
    n: int, cg_source: str = "e3nn", dtype: torch.dtype = torch.float64
) -> list[tuple[Path, torch.Tensor]]:
    """Algorithm 1 by depth-first search with shared prefixes; the new slot is the most significant digit."""
    out: list[tuple[Path, torch.Tensor]] = []

    def visit(path: Path, m: torch.Tensor) -> None:
        if len(path) == n + 1:
            out.append((path, m / m[:, 0].norm()))  # the chained CG shrink every column by prod 1/sqrt(2j_k+1)
            return
        j = path[-1]
        for j2 in next_weights(j):
            c = real_cg(1, j, j2, cg_source, dtype)  # (3, 2j+1, 2j2+1)
            grown = torch.einsum("am,bmn->ban", m, c).reshape(-1, 2 * j2 + 1)
            visit(path + (j2,), grown)

    visit((0,), torch.ones(1, 1, dtype=dtype))
    return out


def decomposition_matrices(n: int, **kwargs) -> list[tuple[Path, torch.Tensor]]:
    """D_p = P_p P_p^T for every path, all dense (3^n x 3^n each)."""
    return [(p, m @ m.T) for p, m in path_matrices(n, **kwargs)]


def isotypic_projectors(n: int, **kwargs) -> dict[int, torch.Tensor]:
    """Pi_l = sum of D_p over the paths ending at l."""
    out: dict[int, torch.Tensor] = {}
    for p, d in decomposition_matrices(n, **kwargs):
        out[p[-1]] = out[p[-1]] + d if p[-1] in out else d
    return out


def end_basis(n: int, **kwargs) -> list[tuple[tuple[Path, Path], torch.Tensor]]:
    """B_pq = P_p P_q^T for every ordered pair with equal end weight, p == q included (ict.md §8: the official
    `equivariant_bases_end.py` skips p == q and misses the #paths projectors)."""
    mats = path_matrices(n, **kwargs)
    return [((p, q), mp @ mq.T) for p, mp in mats for q, mq in mats if p[-1] == q[-1]]


def tensor_power(matrix: torch.Tensor, n: int) -> torch.Tensor:
    """matrix^{(x)n} in the path matrices' row layout (all slots carry the same matrix, so order is moot)."""
    out = torch.ones(1, 1, dtype=matrix.dtype)
    for _ in range(n):
        out = torch.kron(matrix, out)
    return out


def so3_generators(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """L_a with (L_a)_{bc} = -eps_{abc}: exp(theta L_a) rotates about axis a; real antisymmetric."""
    gens = torch.zeros(3, 3, 3, dtype=dtype)
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        gens[a, b, c], gens[a, c, b] = -1.0, 1.0
    return gens


def kronecker_sum(generator: torch.Tensor, n: int) -> torch.Tensor:
    """sum_s I (x) .. (x) L (slot s) (x) .. (x) I: the Lie-algebra action on (R^3)^{(x)n}."""
    eye = torch.eye(3, dtype=generator.dtype)
    total = torch.zeros(3**n, 3**n, dtype=generator.dtype)
    for slot in range(n):
        term = torch.ones(1, 1, dtype=generator.dtype)
        for s in range(n):
            term = torch.kron(generator if s == slot else eye, term)
        total += term
    return total


def commutant_dimension(n: int) -> int:
    """dim {X : [L_a^{(n)}, X] = 0 for a = 1..3}, from the null space of the stacked constraints (n <= 3)."""
    eye = torch.eye(3**n, dtype=torch.float64)
    rows = []
    for gen in so3_generators():
        big = kronecker_sum(gen, n)
        rows.append(torch.kron(big, eye) - torch.kron(eye, big.T.contiguous()))  # vec(L X - X L) for row-major vec(X)
    constraint = torch.cat(rows)
    singular = torch.linalg.svdvals(constraint)
    return int((singular < 1e-9 * singular.max()).sum()) + max(0, constraint.shape[1] - singular.numel())


def casimir_projector(n: int, slots: int, j: int) -> torch.Tensor:
    """The projector onto total weight j of the first `slots` slots (least significant digits), as a
    3^n x 3^n matrix: an independent, basis-free construction (a polynomial in the Casimir J^2)."""
    gens = so3_generators()
    casimir = -sum(kronecker_sum(g, slots) @ kronecker_sum(g, slots) for g in gens)  # eigenvalues j(j+1)
    projector = torch.eye(3**slots, dtype=torch.float64)
    for other in range(slots + 1):
        if other != j:
            projector = projector @ (casimir - other * (other + 1) * torch.eye(3**slots, dtype=torch.float64))
            projector = projector / (j * (j + 1) - other * (other + 1))
    return torch.kron(torch.eye(3 ** (n - slots), dtype=torch.float64), projector)


def path_projector_from_casimirs(path: Path) -> torch.Tensor:
    """D_p as the product of the commuting Casimir projectors of the nested slot groups 1..k (k = 1..n):
    the coupling scheme's joint eigenspace, with no CG coefficient involved."""
    n = len(path) - 1
    out = torch.eye(3**n, dtype=torch.float64)
    for k in range(2, n + 1):
        out = out @ casimir_projector(n, k, path[k])
    return out


def spherical_q_blocks(n: int, dtype: torch.dtype = torch.float64) -> dict[int, torch.Tensor]:
    """Every M-block of Q in the spherical basis at once (rows: column m = M of each path, in the stream's
    order), cut from the fast stream's whole path vectors: the oracle of `stream.magnetic_blocks`."""
    columns: dict[int, list[torch.Tensor]] = {}
    for l, _, vectors in stream.spherical_path_vectors(n, dtype):
        for m, (start, stop) in stream.segment_offsets(n, l).items():
            columns.setdefault(m, []).append(vectors[:, start:stop])
    return {m: torch.cat(parts) for m, parts in sorted(columns.items())}


def spherical_orthogonality_error(n: int, dtype: torch.dtype = torch.float64) -> float:
    """The oracle of `stream.spherical_orthogonality_error`: all M-blocks kept at once, each Gram formed whole
    (the check as it was before it streamed: 5.2 GB at n = 10)."""
    worst = 0.0
    for block in spherical_q_blocks(n, dtype).values():
        if block.shape[0] != block.shape[1]:
            return math.inf
        gram = block @ block.T
        gram.diagonal().sub_(1)
        worst = max(worst, gram.abs().max().item())
    return worst
