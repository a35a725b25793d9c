"""Representations as direct sums of tensor blocks, and the null-space solver (ekan.md §3.1).

A block is a tensor type T(p, q) = V^{⊗p} ⊗ V*^{⊗q} with its factors in that order; a `Rep` is an
ordered tuple of blocks, so channel i of a feature vector lives in one block. For orthogonal groups
V* = V and every block is stored as T(p + q, 0).

Equivariant subspaces are solved per tensor "kind sequence" (a tuple of 0 = V and 1 = V* factors):
Hom(T_b, T_a) is the tensor with the factors of a followed by those of b dualised, so one solver
serves invariant vectors, biases and every sub-block of a weight matrix. Solutions are cached by
(group, sorted kinds); a sequence in another factor order is the same tensor with its axes permuted.
Everything here is float64 numpy; the torch side (equivariant.py) only gathers and multiplies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from math import comb

import numpy as np

from components.ekan.groups import Group

Tensor = tuple[int, int]  # (p, q): p factors V then q factors V*
SCALAR: Tensor = (0, 0)
SVD_THRESHOLD = 1e-5  # EMLP's cut on singular values of the constraint matrix
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def kinds_of(block: Tensor) -> tuple[int, ...]:
    return (0,) * block[0] + (1,) * block[1]


def dual_kinds(kinds: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 - k for k in kinds)


def block_name(block: Tensor) -> str:
    p, q = block
    if block == SCALAR:
        return "V⁰"
    parts = []
    if p:
        parts.append("V" + (str(p).translate(_SUPERSCRIPT) if p > 1 else ""))
    if q:
        parts.append("V*" + (str(q).translate(_SUPERSCRIPT) if q > 1 else ""))
    return "⊗".join(parts)


@dataclass(frozen=True, eq=False)
class Rep:
    """A direct sum of tensor blocks of one group, in channel order."""

    group: Group
    blocks: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        if self.group.is_orthogonal:  # V* = V: one canonical name per rank
            object.__setattr__(self, "blocks", tuple((p + q, 0) for p, q in self.blocks))

    def block_size(self, block: Tensor) -> int:
        return self.group.d ** (block[0] + block[1])

    @cached_property
    def sizes(self) -> np.ndarray:
        return np.array([self.block_size(b) for b in self.blocks], dtype=np.int64)

    @cached_property
    def offsets(self) -> np.ndarray:
        return (
            np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64) if self.blocks else np.zeros(0, np.int64)
        )

    @property
    def size(self) -> int:
        return int(self.sizes.sum())

    def __add__(self, other: Rep) -> Rep:
        if other.group is not self.group:
            raise ValueError(f"cannot add reps of {self.group} and {other.group}")
        return Rep(self.group, self.blocks + other.blocks)

    def __rmul__(self, copies: int) -> Rep:
        return Rep(self.group, self.blocks * copies)

    def offsets_of(self, block: Tensor) -> np.ndarray:
        return np.array([o for o, b in zip(self.offsets, self.blocks) if b == block], dtype=np.int64)

    @property
    def types(self) -> list[Tensor]:
        return sorted(set(self.blocks), key=lambda b: (sum(b), -b[0]))

    def __str__(self) -> str:
        counts = Counter(self.blocks)
        return "+".join(f"{counts[b] if counts[b] > 1 else ''}{block_name(b)}" for b in self.types) or "0"

    __repr__ = __str__

    @property
    def key(self) -> str:
        """A stable name of the layout (not only the multiset): the cache and artefact key of this rep."""
        return f"{self.group.name}:" + ",".join(f"{p}.{q}" for p, q in self.blocks)

    def rho(self, g: np.ndarray) -> np.ndarray:
        """The dense block-diagonal matrix of g on this rep (for checks, not for training)."""
        out = np.zeros((self.size, self.size))
        for offset, size, block in zip(self.offsets, self.sizes, self.blocks):
            out[offset : offset + size, offset : offset + size] = tensor_rho(kinds_of(block), g)
        return out

    # Gates (§3.1): one extra scalar per non-scalar block; a scalar channel gates itself.
    @property
    def n_gates(self) -> int:
        return sum(b != SCALAR for b in self.blocks)

    def gated(self) -> Rep:
        return Rep(self.group, self.blocks + (SCALAR,) * self.n_gates)

    def gate_index(self) -> np.ndarray:
        """For every channel, the position in the gated vector of the scalar its basis functions read."""
        index = np.arange(self.size)
        gate = self.size
        for offset, size, block in zip(self.offsets, self.sizes, self.blocks):
            if block != SCALAR:
                index[offset : offset + size] = gate
                gate += 1
        return index


def vectors(group: Group, copies: int = 1) -> Rep:
    return Rep(group, ((1, 0),) * copies)


def scalars(group: Group, copies: int = 1) -> Rep:
    return Rep(group, (SCALAR,) * copies)


def tensor_rho(kinds: tuple[int, ...], g: np.ndarray) -> np.ndarray:
    out = np.eye(1)
    dual = np.linalg.inv(g).T
    for kind in kinds:
        out = np.kron(out, dual if kind else g)
    return out


def tensor_drho(kinds: tuple[int, ...], A: np.ndarray) -> np.ndarray:
    """Kronecker sum: the Lie-algebra action on V^{⊗p} ⊗ V*^{⊗q} (A on V, -A^T on V*)."""
    d = A.shape[0]
    out = np.zeros((1, 1))
    for kind in kinds:
        factor = -A.T if kind else A
        out = np.kron(out, np.eye(d)) + np.kron(np.eye(out.shape[0]), factor)
    return out


def _solve_sorted(group: Group, kinds: tuple[int, ...]) -> np.ndarray:
    """Orthonormal basis Q (D, r) of the invariant tensors with these factor kinds (kinds sorted)."""
    D = group.d ** len(kinds)
    if not kinds:
        return np.ones((1, 1))
    # Gram matrix C^T C of the stacked constraints [rho(h) - I; drho(A)]: its null space is C's, and
    # at D x D it stays small however many generators there are. sigma <= 1e-5 <=> eigenvalue <= 1e-10.
    gram = np.zeros((D, D))
    for A in group.lie_algebra:
        block = tensor_drho(kinds, A)
        gram += block.T @ block
    for h in group.discrete:
        block = tensor_rho(kinds, h) - np.eye(D)
        gram += block.T @ block
    if not len(group.lie_algebra) and not len(group.discrete):
        return np.eye(D)
    values, vectors_ = np.linalg.eigh(gram)
    return np.ascontiguousarray(vectors_[:, values <= SVD_THRESHOLD**2])


_BASES: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}


def equivariant_basis(group: Group, kinds: tuple[int, ...]) -> np.ndarray:
    """Q (D, r), orthonormal columns spanning the G-invariant tensors of this kind sequence.

    Cached per process by (group, sorted kinds); the basis of an unsorted sequence is the sorted one
    with its tensor axes permuted back."""
    kinds = tuple(0 for _ in kinds) if group.is_orthogonal else tuple(kinds)
    order = np.argsort(kinds, kind="stable")
    sorted_kinds = tuple(kinds[i] for i in order)
    key = (group.name, sorted_kinds)
    if key not in _BASES:
        _BASES[key] = _solve_sorted(group, sorted_kinds)
    Q = _BASES[key]
    if np.all(order == np.arange(len(order))):
        return Q
    rank, d = Q.shape[1], group.d
    tensor = Q.T.reshape((rank,) + (d,) * len(kinds))
    return np.ascontiguousarray(tensor.transpose((0, *(1 + np.argsort(order)))).reshape(rank, Q.shape[0]).T)


def solved_bases() -> dict[str, np.ndarray]:
    """Every basis solved so far in this process, keyed '<group>|<kinds>' (for the projectors artefact)."""
    return {f"{g}|{''.join('V' if k == 0 else 'W' for k in kinds) or 'scalar'}": Q for (g, kinds), Q in _BASES.items()}


def hom_kinds(out_block: Tensor, in_block: Tensor) -> tuple[int, ...]:
    """Factor kinds of Hom(T_in, T_out) = T_out ⊗ T_in*, as a (D_out x D_in) matrix in row-major order."""
    return kinds_of(out_block) + dual_kinds(kinds_of(in_block))


def hom_projector_dense(rep_out: Rep, rep_in: Rep) -> np.ndarray:
    """The full (|out||in|)^2 projector on row-major vec(W). A reference for tests only: never for big reps."""
    n_out, n_in = rep_out.size, rep_in.size
    P = np.zeros((n_out * n_in, n_out * n_in))
    for a_off, a_size, a in zip(rep_out.offsets, rep_out.sizes, rep_out.blocks):
        for b_off, b_size, b in zip(rep_in.offsets, rep_in.sizes, rep_in.blocks):
            Q = equivariant_basis(rep_out.group, hom_kinds(a, b))
            rows = ((a_off + np.arange(a_size))[:, None] * n_in + b_off + np.arange(b_size)[None, :]).reshape(-1)
            P[np.ix_(rows, rows)] = Q @ Q.T
    return P


# uniform_rep (EMLP): spread `channels` over tensor ranks, then split each rank's count binomially over T(k, r-k).
def _max_rank(channels: int, d: int) -> int:
    rank = 0
    while (rank + 1) * d**rank <= channels:
        rank += 1
    return rank - 1


def uniform_rep(channels: int, group: Group, rng: np.random.RandomState) -> Rep:
    """EMLP's uniform_rep: `channels` dimensions spread over ranks 0..r, each rank split evenly over
    T(k, r - k) in binomial proportions, leftovers drawn from Binomial(r, 1/2) with `rng`
    (a legacy RandomState, so seed 0 gives the allocation the official code draws)."""
    if channels < 1:
        raise ValueError(f"a hidden width must be >= 1, got {channels}")
    d = group.d
    counts = np.zeros(_max_rank(channels, d) + 1, dtype=np.int64)
    left = channels
    while left > 0:
        top = _max_rank(left, d)
        counts[: top + 1] += [d ** (top - r) for r in range(top + 1)]
        left -= (top + 1) * d**top
    blocks: list[Tensor] = []
    for rank, count in enumerate(counts):
        if count == 0:
            continue
        even, leftover = divmod(int(count), 2**rank)
        for k in range(rank + 1):
            blocks += [(k, rank - k)] * (even * comb(rank, k))
        blocks += [(int(p), rank - int(p)) for p in rng.binomial(rank, 0.5, leftover)]
    rep = Rep(group, tuple(blocks))
    return Rep(group, tuple(sorted(rep.blocks, key=lambda b: (sum(b), -b[0]))))
