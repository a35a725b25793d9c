"""The LieSD linear systems (liesd.md §3.1-3.3): per sample, rows C_i with C_i u = 0 for every generator u of
the symmetry; the Gram matrix G = sum_i C_i^T C_i; its spectrum; and the gap rule that counts the bases.

Every vec is row-major (vec(M)[i * cols + j] = M_ij), so J A x = (J kron x^T) vec(A). Shapes:
x (batch, c, d) input channels, f (batch, c', d') output channels or (batch, d1, d2) a matrix output,
J (batch, c', d', c, d) or (batch, d1, d2, c, d) the Jacobian of the flattened output w.r.t. x.
Signs: the output action enters with +, the input action with -, so u = (A, B, ...) = (G, G, ...) for a
generator G that acts alike on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Form = Literal["vector", "multichannel", "channelwise", "tensor"]
FORMS: tuple[str, ...] = ("vector", "multichannel", "channelwise", "tensor")


@dataclass(frozen=True)
class Layout:
    """How the unknown vector u splits into square generator blocks, and how many exact gauge zeros it has."""

    blocks: tuple[tuple[str, int], ...]  # (name, side), in the order they sit in u
    gauge: int = 0  # null directions that every function has (the tensor form's (0, cI, -cI))

    @property
    def unknowns(self) -> int:
        return sum(side * side for _, side in self.blocks)

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """u (..., unknowns) -> {name: (..., side, side)}."""
        out, start = {}, 0
        for name, side in self.blocks:
            out[name] = vector[..., start : start + side * side].reshape(*vector.shape[:-1], side, side)
            start += side * side
        return out


def layout(form: str, in_channels: int, in_dim: int, out_shape: tuple[int, int]) -> Layout:
    """The unknowns of `form` for inputs (c, d) and outputs out_shape = (c', d') or (d1, d2) (tensor)."""
    c, d = in_channels, in_dim
    if form == "vector":  # §3.1: one A on the flattened input, one B on the flattened output
        return Layout((("A", c * d), ("B", out_shape[0] * out_shape[1])))
    if form == "multichannel":  # §3.2: one A shared by every input channel, one B by every output channel
        return Layout((("A", d), ("B", out_shape[1])))
    if form == "channelwise":  # §3.2 two-body: A_l per channel, output channel k transforms with A_k
        if out_shape != (c, d):
            raise ValueError(f"the channelwise form needs outputs shaped like the inputs {(c, d)}, got {out_shape}")
        return Layout(tuple((f"A{l + 1}", d) for l in range(c)))
    if form == "tensor":  # §3.3: F -> e^{B1} F e^{B2^T}; (0, cI, -cI) acts trivially when d1 == d2
        d1, d2 = out_shape
        return Layout((("A", d), ("B1", d1), ("B2", d2)), gauge=1 if d1 == d2 else 0)
    raise ValueError(f"unknown form '{form}'; choose from {', '.join(FORMS)}")


def multichannel_rows(x: torch.Tensor, f: torch.Tensor, jac: torch.Tensor, invariant: bool = False) -> torch.Tensor:
    """Rows of  B f_k - sum_l J_kl A x_l = 0  for every output channel k: (batch, c' d', d^2 + d'^2).

    With invariant=True the B columns are dropped (B = 0: f is invariant, as in top tagging)."""
    batch, _, d = x.shape
    _, c_out, d_out = f.shape
    rows_a = -torch.einsum("bkpli,blj->bkpij", jac, x).reshape(batch, c_out * d_out, d * d)
    if invariant:
        return rows_a
    eye = torch.eye(d_out, dtype=f.dtype, device=f.device)
    rows_b = torch.einsum("pq,bkr->bkpqr", eye, f).reshape(batch, c_out * d_out, d_out * d_out)
    return torch.cat([rows_a, rows_b], dim=2)


def vector_rows(x: torch.Tensor, f: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """§3.1: C_i = [-(J kron x^T), I_m kron f^T] on the flattened input and output: (batch, m, n^2 + m^2)."""
    batch = x.shape[0]
    n, m = x[0].numel(), f[0].numel()
    return multichannel_rows(x.reshape(batch, 1, n), f.reshape(batch, 1, m), jac.reshape(batch, 1, m, 1, n))


def channelwise_rows(x: torch.Tensor, f: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """Rows of  A_k f_k - sum_l J_kl A_l x_l = 0  (the official two-body system): (batch, c d, c d^2)."""
    batch, c, d = x.shape
    rows_a = -torch.einsum("bkpli,blj->bkplij", jac, x)
    eye_c = torch.eye(c, dtype=f.dtype, device=f.device)
    eye_d = torch.eye(d, dtype=f.dtype, device=f.device)
    rows_b = torch.einsum("kl,pq,bkr->bkplqr", eye_c, eye_d, f)
    return (rows_a + rows_b).reshape(batch, c * d, c * d * d)


def tensor_rows(x: torch.Tensor, f: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """Rows of  vec(B1 F + F B2^T) - sum_j J_j A x_j = 0: (batch, d1 d2, d^2 + d1^2 + d2^2).

    vec(B1 F) = (I_d1 kron F^T) vec(B1): row (r, s), column (a, q) holds delta_ra F_qs.
    vec(F B2^T): row (r, s), column (a, q) holds delta_sa F_rq, i.e. (I_d2 kron F_{r,:}) for the rows of r."""
    batch, _, d = x.shape
    _, d1, d2 = f.shape
    rows_a = -torch.einsum("brsli,blj->brsij", jac, x).reshape(batch, d1 * d2, d * d)
    eye1 = torch.eye(d1, dtype=f.dtype, device=f.device)
    eye2 = torch.eye(d2, dtype=f.dtype, device=f.device)
    rows_b1 = torch.einsum("ra,bqs->brsaq", eye1, f).reshape(batch, d1 * d2, d1 * d1)
    rows_b2 = torch.einsum("sa,brq->brsaq", eye2, f).reshape(batch, d1 * d2, d2 * d2)
    return torch.cat([rows_a, rows_b1, rows_b2], dim=2)


ROWS = {
    "vector": vector_rows,
    "multichannel": multichannel_rows,
    "channelwise": channelwise_rows,
    "tensor": tensor_rows,
}


def rows(form: str, x: torch.Tensor, f: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    if form not in ROWS:
        raise ValueError(f"unknown form '{form}'; choose from {', '.join(FORMS)}")
    return ROWS[form](x, f, jac)


def gram(blocks: torch.Tensor) -> torch.Tensor:
    """sum_i C_i^T C_i over a batch of row blocks (batch, rows, unknowns), in float64 (liesd.md §8)."""
    blocks = blocks.to(torch.float64)
    return torch.einsum("bpu,bpv->uv", blocks, blocks)


@dataclass(frozen=True)
class Spectrum:
    sigma: np.ndarray  # singular values of the stacked system, ascending
    vectors: np.ndarray  # (unknowns, unknowns): column j is the right singular vector of sigma[j]


def spectrum(gram_matrix: np.ndarray) -> Spectrum:
    """sigma = sqrt(eig(G)) ascending (G is PSD; round-off negatives are clipped to 0)."""
    gram_matrix = np.asarray(gram_matrix, dtype=np.float64)
    eigenvalues, vectors = np.linalg.eigh(0.5 * (gram_matrix + gram_matrix.T))
    return Spectrum(np.sqrt(np.clip(eigenvalues, 0.0, None)), vectors)


def gap_rule(sigma: np.ndarray, skip: int = 0, j_max: int = 12) -> tuple[int, float]:
    """(d, gap_ratio): d = argmax_j log(sigma_{j+1} / sigma_j) over the j_max smallest values, j > skip
    (1-based), so the `skip` known exact gauge zeros, whose ratio is infinite, never decide (liesd.md §3.4).
    d counts the gauge directions too: they are among the d smallest that form the discovered bases."""
    sigma = np.asarray(sigma, dtype=np.float64)
    values = sigma[:j_max]
    if len(values) < skip + 2:
        raise ValueError(f"the gap rule needs at least {skip + 2} singular values, got {len(values)}")
    # sigma = sqrt(eig(G)) is exact only down to ~sqrt(eps) sigma_max: below that, round-off ratios mean nothing
    floor = max(float(sigma.max()), 1e-300) * 10.0 * np.sqrt(np.finfo(np.float64).eps)
    below, above = np.maximum(values[skip:-1], floor), np.maximum(values[skip + 1 :], floor)
    ratios = above / below
    best = int(np.argmax(np.log(ratios)))
    return skip + best + 1, float(ratios[best])
