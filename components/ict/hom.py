"""Equivariant maps between O(3) spaces (ict.md §3.5): Algorithm 2's basis of Hom(S, S') and the
Algorithm-4 layer.

A space is a direct sum of tensor products of O(3) irreps, S = (+)_i V_{l_i1}^{p_i1} (x) ... (x) V_{l_ik}^{p_ik},
written like "1o x 2e + 1o x 3o". The parity of a summand is the product of its factors' parities, per
summand and per space, never borrowed from the other space (the official `equivariant_bases.py` gives the
second space the first one's parity; ict.md §8). Rank-n Cartesian tensors are `Space.cartesian(n)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from components.core.errors import ConfigError
from components.ict.cg import real_cg, wigner_d

Irrep = tuple[int, int]  # (l, parity +1 / -1)


def parse_irrep(text: str) -> Irrep:
    text = text.strip()
    if len(text) < 2 or text[-1] not in "eo" or not text[:-1].isdigit():
        raise ConfigError(f"irrep '{text}' must look like 1o or 2e (weight, then e for even or o for odd parity)")
    return int(text[:-1]), 1 if text[-1] == "e" else -1


@dataclass(frozen=True)
class Space:
    summands: tuple[tuple[Irrep, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Space:
        summands = tuple(tuple(parse_irrep(f) for f in part.split("x")) for part in text.split("+"))
        if not summands or any(not s for s in summands):
            raise ConfigError(f"space '{text}' must look like '1o x 2e + 3o'")
        return cls(summands)

    @classmethod
    def cartesian(cls, n: int) -> Space:
        return cls((((1, -1),) * n,))

    def __str__(self) -> str:
        return " + ".join(" x ".join(f"{l}{'e' if p > 0 else 'o'}" for l, p in s) for s in self.summands)

    def summand_dim(self, i: int) -> int:
        return math.prod(2 * l + 1 for l, _ in self.summands[i])

    def offset(self, i: int) -> int:
        return sum(self.summand_dim(k) for k in range(i))

    @property
    def dim(self) -> int:
        return sum(self.summand_dim(i) for i in range(len(self.summands)))

    def parity(self, i: int) -> int:
        return math.prod(p for _, p in self.summands[i])

    def representation(self, rotation: torch.Tensor, improper: bool = False) -> torch.Tensor:
        """D_S(g) for g = rotation, times the inversion when `improper`: block diagonal over summands,
        each a Kronecker product with the last factor most significant (the path matrices' row layout)."""
        g = -rotation if improper else rotation
        out = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        for i, summand in enumerate(self.summands):
            block = torch.ones(1, 1, dtype=torch.float64)
            for l, p in summand:
                block = torch.kron(wigner_d(l, g, p), block)
            start = self.offset(i)
            out[start : start + block.shape[0], start : start + block.shape[0]] = block
        return out


@dataclass(frozen=True)
class SpacePath:
    summand: int
    weights: tuple[int, ...]  # j_0 = 0, j_1, ..., j_k: running weight after each factor
    parity: int

    @property
    def key(self) -> Irrep:
        return self.weights[-1], self.parity


def space_paths(space: Space) -> list[SpacePath]:
    """Per summand, every admissible sequence: factor l couples j to j' in |j - l| .. j + l."""
    out: list[SpacePath] = []

    def visit(i: int, summand, weights: tuple[int, ...]) -> None:
        k = len(weights) - 1
        if k == len(summand):
            out.append(SpacePath(i, weights, space.parity(i)))
            return
        l, j = summand[k][0], weights[-1]
        for j2 in range(abs(j - l), j + l + 1):
            visit(i, summand, weights + (j2,))

    for i, summand in enumerate(space.summands):
        visit(i, summand, (0,))
    return out


def multiplicities(space: Space) -> dict[Irrep, int]:
    out: dict[Irrep, int] = {}
    for path in space_paths(space):
        out[path.key] = out.get(path.key, 0) + 1
    return dict(sorted(out.items()))


def space_path_matrix(
    space: Space, path: SpacePath, cg_source: str = "e3nn", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(dim S, 2j+1) with orthonormal columns, zero outside the path's summand."""
    m = torch.ones(1, 1, dtype=dtype)
    for (l, _), j, j2 in zip(space.summands[path.summand], path.weights[:-1], path.weights[1:]):
        c = real_cg(l, j, j2, cg_source, dtype) * math.sqrt(2 * j2 + 1)
        m = torch.einsum("am,bmn->ban", m, c).reshape(-1, 2 * j2 + 1)
    out = torch.zeros(space.dim, m.shape[1], dtype=dtype)
    start = space.offset(path.summand)
    out[start : start + m.shape[0]] = m
    return out


def hom_dimension(space_in: Space, space_out: Space) -> int:
    a, b = multiplicities(space_in), multiplicities(space_out)
    return sum(count * b.get(key, 0) for key, count in a.items())


def hom_basis(
    space_in: Space, space_out: Space, cg_source: str = "e3nn"
) -> list[tuple[tuple[SpacePath, SpacePath], torch.Tensor]]:
    """{P'_q P_p^T : p of S, q of S', equal end weight and equal parity}: orthogonal, <B, B> = 2l + 1."""
    mats_in = [(p, space_path_matrix(space_in, p, cg_source)) for p in space_paths(space_in)]
    mats_out = [(q, space_path_matrix(space_out, q, cg_source)) for q in space_paths(space_out)]
    return [((p, q), mq @ mp.T) for q, mq in mats_out for p, mp in mats_in if p.key == q.key]


class EquivariantLinear(torch.nn.Module):
    """Algorithm 4: y = Q' (W_l z_l)_l with z = Q^T x; one bias-free linear map per (weight, parity) acting
    on the multiplicity axis, sum_l m_l m'_l weights in all (= dim Hom(S, S'))."""

    def __init__(
        self,
        space_in: Space,
        space_out: Space,
        cg_source: str = "e3nn",
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.space_in, self.space_out = space_in, space_out
        paths_in, paths_out = space_paths(space_in), space_paths(space_out)
        keys = sorted({p.key for p in paths_in} & {q.key for q in paths_out})
        self.keys = keys
        self.paths_in = [[p for p in paths_in if p.key == key] for key in keys]
        self.paths_out = [[q for q in paths_out if q.key == key] for key in keys]
        q_in = [space_path_matrix(space_in, p, cg_source, dtype) for group in self.paths_in for p in group]
        q_out = [space_path_matrix(space_out, q, cg_source, dtype) for group in self.paths_out for q in group]
        empty_in, empty_out = torch.zeros(space_in.dim, 0, dtype=dtype), torch.zeros(space_out.dim, 0, dtype=dtype)
        self.register_buffer("q_in", torch.cat(q_in, 1) if q_in else empty_in)
        self.register_buffer("q_out", torch.cat(q_out, 1) if q_out else empty_out)
        self.mix = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(len(outs), len(ins), dtype=dtype, generator=generator) / math.sqrt(len(ins)))
            for ins, outs in zip(self.paths_in, self.paths_out)
        )

    @property
    def num_weights(self) -> int:
        return sum(w.numel() for w in self.mix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.q_in
        pieces, start = [], 0
        for (l, _), ins, weight in zip(self.keys, self.paths_in, self.mix):
            width = len(ins) * (2 * l + 1)
            block = z[..., start : start + width].unflatten(-1, (len(ins), 2 * l + 1))
            pieces.append(torch.einsum("oi,...ic->...oc", weight, block).flatten(-2))
            start += width
        if not pieces:
            return x.new_zeros(*x.shape[:-1], self.space_out.dim)
        return torch.cat(pieces, -1) @ self.q_out.T

    def as_matrix(self) -> torch.Tensor:
        """The layer's (dim S', dim S) matrix, equal to sum_pq W[q, p] P'_q P_p^T."""
        with torch.no_grad():
            return self(torch.eye(self.space_in.dim, dtype=self.q_in.dtype)).T
