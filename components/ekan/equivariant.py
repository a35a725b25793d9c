"""The torch side of the representation algebra: the lazy Hom projector and EMLP's bilinear map.

`HomProjector` applies P vec(W) without ever building the (|out||in|)^2 matrix: the sub-blocks of W
that pair the same two block types share one cached basis Q, so they are gathered into a batch and
multiplied by Q Q^T (EMLP's block-diagonal "lazy" projector). `Bilinear.dense` materialises W(x) as
the reference implementation; `Bilinear.forward` contracts without it (parity is tested).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from components.ekan.reps import SCALAR, Rep, equivariant_basis, hom_kinds, kinds_of


def _block_index(out_offsets: np.ndarray, out_size: int, in_offsets: np.ndarray, in_size: int, n_in: int) -> np.ndarray:
    """Flat row-major indices into an (n_out, n_in) matrix of every (out block, in block) sub-block:
    shape (len(out_offsets) * len(in_offsets), out_size * in_size), sub-blocks out-major."""
    rows = out_offsets[:, None] + np.arange(out_size)[None, :]  # (ma, Da)
    cols = in_offsets[:, None] + np.arange(in_size)[None, :]  # (mb, Db)
    flat = rows[:, None, :, None] * n_in + cols[None, :, None, :]  # (ma, mb, Da, Db)
    return flat.reshape(len(out_offsets) * len(in_offsets), out_size * in_size)


class HomProjector(nn.Module):
    """W -> unvec(P vec W) for W in Hom(rep_in, rep_out); also works on a leading batch of matrices."""

    def __init__(self, rep_out: Rep, rep_in: Rep):
        super().__init__()
        self.shape = (rep_out.size, rep_in.size)
        self.pairs: list[tuple[str, str]] = []
        self.free_dims = 0  # dimension of the equivariant subspace
        positions = []
        for a in rep_out.types:
            for b in rep_in.types:
                Q = equivariant_basis(rep_out.group, hom_kinds(a, b))
                if Q.shape[1] == 0:
                    continue  # no equivariant maps between these block types: those entries stay zero
                index = _block_index(
                    rep_out.offsets_of(a),
                    rep_out.block_size(a),
                    rep_in.offsets_of(b),
                    rep_in.block_size(b),
                    rep_in.size,
                )
                name = f"pair{len(self.pairs)}"
                self.register_buffer(f"{name}_index", torch.from_numpy(index), persistent=False)
                self.register_buffer(f"{name}_basis", torch.from_numpy(Q).float(), persistent=False)
                self.pairs.append((f"{name}_index", f"{name}_basis"))
                self.free_dims += index.shape[0] * Q.shape[1]
                positions.append(index.reshape(-1))
        self.register_buffer(
            "positions",
            torch.from_numpy(np.concatenate(positions) if positions else np.zeros(0, np.int64)),
            persistent=False,
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        lead = w.shape[:-2]
        flat = w.reshape(-1, self.shape[0] * self.shape[1])
        pieces = []
        for index_name, basis_name in self.pairs:
            index, Q = getattr(self, index_name), getattr(self, basis_name)
            blocks = flat[:, index]  # (L, m, D)
            pieces.append(((blocks @ Q) @ Q.T).reshape(flat.shape[0], -1))
        out = flat.new_zeros(flat.shape)
        if pieces:
            out = out.index_copy(1, self.positions, torch.cat(pieces, dim=1))
        return out.reshape(*lead, *self.shape)


class Bilinear(nn.Module):
    """EMLP's equivariant bilinear map x -> W(x) x on a rep (ekan.md §3.2).

    Every sub-block (a, b) of W is a tensor of kinds T_a ⊗ T_b*; if x holds blocks of that tensor type
    (up to factor order), the sub-block is a learned linear combination of n = min(count, size) of them,
    chosen once at random, with its axes permuted into the sub-block's factor order. Sub-blocks of a type
    x does not hold, and scalar-scalar ones, are zero. theta ~ N(0, 1), one row per sub-block.
    """

    def __init__(self, rep: Rep, rng: np.random.Generator):
        super().__init__()
        self.size = rep.size
        d = rep.group.d
        orthogonal = rep.group.is_orthogonal
        sources: dict[tuple[int, int], np.ndarray] = {}  # canonical (nV, nV*) -> (n, D) positions of chosen x blocks
        for block in rep.types:
            if block == SCALAR:
                continue
            offsets = rep.offsets_of(block)
            size = rep.block_size(block)
            n = min(len(offsets), size)
            chosen = np.sort(rng.choice(len(offsets), size=n, replace=False))
            sources[block] = offsets[chosen][:, None] + np.arange(size)[None, :]
        self.groups: list[dict] = []
        total = 0
        for a in rep.types:
            for b in rep.types:
                kinds = (0,) * len(hom_kinds(a, b)) if orthogonal else hom_kinds(a, b)
                key = (kinds.count(0), kinds.count(1))
                if key == SCALAR or key not in sources:
                    continue
                order = np.argsort(kinds, kind="stable")  # sub-block axis order -> canonical slots
                rank = len(kinds)
                permute = np.arange(d**rank).reshape((d,) * rank).transpose(np.argsort(order)).reshape(-1)
                out_offsets, in_offsets = rep.offsets_of(a), rep.offsets_of(b)
                da, db = rep.block_size(a), rep.block_size(b)
                count = len(out_offsets) * len(in_offsets) * sources[key].shape[0]
                name = f"g{len(self.groups)}"
                for suffix, array in (
                    ("source", sources[key]),
                    ("permute", permute.reshape(da, db)),
                    ("out", out_offsets[:, None] + np.arange(da)[None, :]),
                    ("in", in_offsets[:, None] + np.arange(db)[None, :]),
                ):
                    self.register_buffer(
                        f"{name}_{suffix}", torch.from_numpy(np.ascontiguousarray(array)), persistent=False
                    )
                self.groups.append(
                    {
                        "name": name,
                        "start": total,
                        "count": count,
                        "ma": len(out_offsets),
                        "mb": len(in_offsets),
                        "n": sources[key].shape[0],
                    }
                )
                total += count
        self.weight = nn.Parameter(torch.randn(total))

    def _parts(self, g: dict, x: torch.Tensor):
        theta = self.weight[g["start"] : g["start"] + g["count"]].reshape(g["ma"], g["mb"], g["n"])
        source = x[:, getattr(self, g["name"] + "_source")]  # (B, n, D): the chosen blocks, canonical order
        source = source[:, :, getattr(self, g["name"] + "_permute")]  # (B, n, Da, Db): sub-block axis order
        return theta, source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape)
        for g in self.groups:
            theta, source = self._parts(g, x)
            inputs = x[:, getattr(self, g["name"] + "_in")]  # (B, mb, Db)
            # contract the inputs first: (B, n, Da, mb) is far smaller than the (B, ma, mb, Da, Db) sub-blocks
            z = torch.einsum("bnij,bqj->bniq", source, inputs)
            y = torch.einsum("pqn,bniq->bpi", theta, z)  # (B, ma, Da)
            out = out.index_add(1, getattr(self, g["name"] + "_out").reshape(-1), y.reshape(x.shape[0], -1))
        return out

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """W(x) as a (B, n, n) matrix: the reference the fast forward is tested against."""
        W = x.new_zeros(x.shape[0], self.size, self.size)
        for g in self.groups:
            theta, source = self._parts(g, x)
            blocks = torch.einsum("pqn,bnij->bpqij", theta, source)  # (B, ma, mb, Da, Db)
            rows = getattr(self, g["name"] + "_out")  # (ma, Da)
            cols = getattr(self, g["name"] + "_in")  # (mb, Db)
            W[:, rows[:, None, :, None], cols[None, :, None, :]] = blocks
        return W


def count_parameters(model: nn.Module) -> int:
    """Trainable raw parameters, as the paper counts them (projection does not reduce the count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["Bilinear", "HomProjector", "count_parameters", "kinds_of"]
