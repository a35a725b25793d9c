"""The spec's falsifiable identities (ict.md §6) as numbers: what the component reports and the tests bound.

Each function returns max-abs errors in float64 computed from the naive reference (`reference.py`) or from
the fast path compared with it; thresholds live in the tests, not here.
"""

from __future__ import annotations

import contextlib
import itertools
import math

import torch

from components.ict import reference, stream
from components.ict.cg import wigner_d
from components.ict.paths import cartesian_paths, multiplicities


@contextlib.contextmanager
def float64_default():
    """e3nn builds some tensors in the default dtype; float32 there costs 7 digits (ReducedTensorProducts)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def random_rotations(count: int, generator: torch.Generator) -> torch.Tensor:
    """Haar-distributed rotations: QR of a Gaussian with the sign fix, then det +1."""
    q, r = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    return q


def rank_errors(n: int, cg_source: str, generator: torch.Generator, rotations: int = 5) -> dict[str, float]:
    """Checks 1-3 at rank n, plus the fast path's parity with the naive reference (every layout)."""
    mats = reference.path_matrices(n, cg_source)
    q = torch.cat([m for _, m in mats], 1)
    eye = torch.eye(3**n, dtype=torch.float64)
    d = torch.stack([m @ m.T for _, m in mats])
    out = {
        "orth_err": max((q.T @ q - eye).abs().max().item(), (q @ q.T - eye).abs().max().item()),
        "idem_err": (torch.bmm(d, d) - d).abs().max().item(),
        "trace_err": max(abs(dp.trace().item() - (2 * p[-1] + 1)) for (p, _), dp in zip(mats, d)),
        "sum_err": (d.sum(0) - eye).abs().max().item(),
    }
    cross, gram = 0.0, q.T @ q
    starts = [0] + list(itertools.accumulate(m.shape[1] for _, m in mats))
    for a, b in itertools.combinations(range(len(mats)), 2):  # D_p D_q = P_p (P_p^T P_q) P_q^T = (D_q D_p)^T
        middle = gram[starts[a] : starts[a + 1], starts[b] : starts[b + 1]]
        cross = max(cross, (mats[a][1] @ middle @ mats[b][1].T).abs().max().item())
    out["cross_err"] = cross
    commute, path_equiv = 0.0, 0.0
    for rotation in random_rotations(rotations, generator):
        power = reference.tensor_power(rotation, n)
        commute = max(commute, (d @ power - power @ d).abs().max().item())
        for p, m in mats:
            path_equiv = max(path_equiv, (m.T @ power - wigner_d(p[-1], rotation) @ m.T).abs().max().item())
    out["equiv_err"], out["path_equiv_err"] = commute, path_equiv
    fast = dict(stream.all_cartesian_path_matrices(n, cg_source=cg_source))
    out["fast_paths_err"] = max((fast[p] - m).abs().max().item() for p, m in mats)
    dense = {p: dp for (p, _), dp in zip(mats, d)}
    for layout in stream.LAYOUTS:
        out[f"fast_{layout}_err"] = max(
            (stream.to_dense(bm, n, layout) - dense[bm.label]).abs().max().item()
            for bm in stream.projector_matrices(n, layout, cg_source)
        )
    return out


def all_rank_errors(max_n: int, cg_source: str, generator: torch.Generator) -> dict[str, float]:
    """The worst of each error over n = 1..max_n."""
    worst: dict[str, float] = {}
    for n in range(1, max_n + 1):
        for key, value in rank_errors(n, cg_source, generator).items():
            worst[key] = max(worst.get(key, 0.0), value)
    return worst


def trace_projector() -> torch.Tensor:
    eye = torch.eye(3, dtype=torch.float64)
    return torch.einsum("ij,kl->ijkl", eye, eye).reshape(9, 9) / 3


def antisymmetric_projector() -> torch.Tensor:
    eye = torch.eye(3, dtype=torch.float64)
    return ((torch.einsum("ik,jl->ijkl", eye, eye) - torch.einsum("il,jk->ijkl", eye, eye)) / 2).reshape(9, 9)


def symmetric_traceless_projector() -> torch.Tensor:
    eye = torch.eye(3, dtype=torch.float64)
    sym = (torch.einsum("ik,jl->ijkl", eye, eye) + torch.einsum("il,jk->ijkl", eye, eye)) / 2
    return sym.reshape(9, 9) - trace_projector()


def rank2_ground_truth_error(cg_source: str = "e3nn") -> float:
    """Check 4: D_(0,1,0), D_(0,1,1), D_(0,1,2) are the trace, antisymmetric and symmetric-traceless projectors."""
    truth = {
        (0, 1, 0): trace_projector(),
        (0, 1, 1): antisymmetric_projector(),
        (0, 1, 2): symmetric_traceless_projector(),
    }
    return max((d - truth[p]).abs().max().item() for p, d in reference.decomposition_matrices(2, cg_source=cg_source))


def symmetry_violation(y: torch.Tensor, n: int) -> float:
    """max over slot permutations of |Y - Y permuted| for a rank-n tensor given as a 3^n vector."""
    t = y.reshape((3,) * n)
    return max((t - t.permute(perm)).abs().max().item() for perm in itertools.permutations(range(n)))


def max_pair_trace(y: torch.Tensor, n: int) -> float:
    t = y.reshape((3,) * n)
    return max(
        torch.diagonal(t, dim1=a, dim2=b).sum(-1).abs().max().item() for a, b in itertools.combinations(range(n), 2)
    )


def top_path_errors(n: int, generator: torch.Generator, cg_source: str = "e3nn") -> dict[str, float]:
    """Check 5: the path (0, 1, ..., n) gives symmetric traceless tensors; a non-top path to n-1 does not."""
    mats = dict(reference.path_matrices(n, cg_source))
    x = torch.randn(3**n, generator=generator, dtype=torch.float64)
    top = tuple(range(n + 1))
    y = mats[top] @ (mats[top].T @ x)
    other = next(p for p in cartesian_paths(n) if p[-1] == n - 1)
    z = mats[other] @ (mats[other].T @ x)
    return {
        "top_sym_err": symmetry_violation(y, n),
        "top_trace_err": max_pair_trace(y, n),
        "nontop_sym_violation": symmetry_violation(z, n),
    }


def e3nn_isotypic(n: int) -> dict[int, torch.Tensor]:
    """Pi_l from e3nn's ReducedTensorProducts (an independent numerical construction), in float64."""
    from e3nn import o3

    letters = "ijklmnopq"[:n]
    with float64_default():
        rtp = o3.ReducedTensorProducts(letters, **{c: "1o" for c in letters})
    basis = rtp.change_of_basis.reshape(-1, 3**n).to(torch.float64)
    out, start = {}, 0
    for mul, ir in rtp.irreps_out:
        rows = basis[start : start + mul * ir.dim]
        start += mul * ir.dim
        projector = rows.T @ torch.linalg.solve(rows @ rows.T, rows)  # onto the row space, whatever its scale
        out[ir.l] = out[ir.l] + projector if ir.l in out else projector
    return out


def isotypic_vs_e3nn_error(n: int, cg_source: str = "e3nn") -> float:
    """Check 6: sum of D_p over paths ending at l equals e3nn's projector onto weight l (row layouts differ,
    Pi_l is invariant under slot permutations, so no transpose is needed)."""
    ours, theirs = reference.isotypic_projectors(n, cg_source=cg_source), e3nn_isotypic(n)
    if sorted(ours) != sorted(theirs):
        return math.inf
    return max((ours[l] - theirs[l]).abs().max().item() for l in ours)


def e3nn_multiplicities(n: int) -> tuple[int, ...]:
    from e3nn import o3

    letters = "ijklmnopq"[:n]
    with float64_default():
        rtp = o3.ReducedTensorProducts(letters, **{c: "1o" for c in letters})
    counts = [0] * (n + 1)
    for mul, ir in rtp.irreps_out:
        counts[ir.l] += mul
    return tuple(counts)


def end_basis_errors(n: int, cg_source: str = "e3nn") -> dict[str, float]:
    """Check 7: the End basis has sum m_l^2 elements, Gram diagonal 2l+1, and spans the commutant."""
    basis = reference.end_basis(n, cg_source=cg_source)
    flat = torch.stack([b.reshape(-1) for _, b in basis])
    gram = flat @ flat.T
    expected = torch.tensor([2 * p[-1] + 1 for (p, _), _ in basis], dtype=torch.float64)
    off = gram - torch.diag(gram.diagonal())
    out = {
        "end_count": float(len(basis)),
        "end_expected_count": float(sum(m * m for m in multiplicities(n))),
        "end_gram_diag_err": (gram.diagonal() - expected).abs().max().item(),
        "end_gram_offdiag": off.abs().max().item(),
        "end_rank": float(torch.linalg.matrix_rank(flat).item()),
    }
    if n <= 3:
        out["commutant_dim"] = float(reference.commutant_dimension(n))
    return out


def casimir_error(n: int, cg_source: str = "e3nn") -> float:
    """D_p against the product of the nested Casimir projectors (no CG involved): pins the slot order."""
    return max(
        (reference.path_projector_from_casimirs(p) - d).abs().max().item()
        for p, d in reference.decomposition_matrices(n, cg_source=cg_source)
    )
