"""Clebsch-Gordan tensors and Wigner matrices in the two bases ICT uses.

Real basis (ict.md §3.1): e3nn's `wigner_3j`, Frobenius norm 1, whose l = 1 index is Cartesian x, y, z
once `vector_permutation()` has confirmed D^1(R) == R. The path matrices of Algorithm 1 and every dense
Cartesian matrix come from these tensors.

Spherical basis (the fast path, ict.md §3.7 (4)): e_{-1} = (x - iy)/sqrt2, e_0 = z, e_{+1} = -(x + iy)/sqrt2
per tensor slot and the Condon-Shortley coefficients <j m; 1 mu | J M>. These are real, so every path
vector, decomposition block and isotypic block in that basis is real, and each is non-zero only where the
total magnetic number M (the sum of the slots' mu) equals the column's m.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch

from components.core.errors import RunError

CG_SOURCES = ("e3nn", "sympy")


@functools.cache
def vector_permutation() -> tuple[int, ...]:
    """The permutation pi with D^1(R)[a, b] == R[pi[a], pi[b]] for e3nn's l = 1 basis (identity in 0.6.0).

    ict.md §3.1: do not assume D^1(R) == R for every e3nn release; test it once and conjugate otherwise.
    """
    from e3nn import o3

    rotation = _fixed_rotation()
    d1 = o3.Irrep(1, -1).D_from_matrix(rotation)
    for perm in itertools.permutations(range(3)):
        if torch.allclose(d1, rotation[list(perm)][:, list(perm)], atol=1e-12):
            return perm
    raise RunError("e3nn's D^1(R) is not a permutation of R: this e3nn release uses a basis ict cannot map to x, y, z")


def _fixed_rotation() -> torch.Tensor:
    """A generic rotation without touching the global RNG (a component is a function of config and seed)."""
    from e3nn import o3

    return o3.angles_to_matrix(
        torch.tensor(0.3, dtype=torch.float64),
        torch.tensor(1.1, dtype=torch.float64),
        torch.tensor(-2.0, dtype=torch.float64),
    )


def real_to_complex(l: int) -> torch.Tensor:
    """Q_l with complex = Q_l @ real for the real spherical harmonics (m = -l..l), times (-i)^l.

    The factor (-i)^l makes the real-basis CG of sympy's complex coefficients real (ict.md §3.1); the
    matrix is e3nn's convention, re-derived here from the textbook real form so `cg_source: sympy` is a
    construction independent of e3nn's own CG routine.
    """
    q = torch.zeros(2 * l + 1, 2 * l + 1, dtype=torch.complex128)
    s = 1 / math.sqrt(2)
    for m in range(-l, 0):
        q[l + m, l - m] = s
        q[l + m, l + m] = -1j * s
    q[l, l] = 1
    for m in range(1, l + 1):
        q[l + m, l + m] = (-1) ** m * s
        q[l + m, l - m] = 1j * (-1) ** m * s
    return (-1j) ** l * q


@functools.cache
def _sympy_real_cg(l1: int, l2: int, l3: int) -> torch.Tensor:
    from sympy.physics.wigner import clebsch_gordan

    complex_cg = torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=torch.complex128)
    for i, m1 in enumerate(range(-l1, l1 + 1)):
        for k, m2 in enumerate(range(-l2, l2 + 1)):
            if abs(m1 + m2) <= l3:
                complex_cg[i, k, m1 + m2 + l3] = float(clebsch_gordan(l1, l2, l3, m1, m2, m1 + m2))
    q1, q2, q3 = real_to_complex(l1), real_to_complex(l2), real_to_complex(l3)
    real = torch.einsum("ia,kb,nc,ikn->abc", q1, q2, q3.conj(), complex_cg)
    if real.imag.abs().max() > 1e-12:
        raise RunError(f"sympy real CG ({l1},{l2},{l3}) is not real: the basis change is wrong")
    out = real.real
    out = torch.where(out.abs() < 1e-14, torch.zeros_like(out), out)  # complex round-off where the value is 0
    return out / out.norm()


@functools.cache
def _real_cg(l1: int, l2: int, l3: int, source: str) -> torch.Tensor:
    if source == "e3nn":
        from e3nn import o3

        out = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    elif source == "sympy":
        out = _sympy_real_cg(l1, l2, l3)
    else:
        raise RunError(f"unknown cg_source '{source}' (known: {', '.join(CG_SOURCES)})")
    perm = vector_permutation()
    if perm != (0, 1, 2):  # e3nn's l = 1 index a is the Cartesian axis perm[a]: re-index every l = 1 axis
        inverse = torch.tensor([perm.index(x) for x in range(3)])
        for axis, l in enumerate((l1, l2, l3)):
            if l == 1:
                out = out.index_select(axis, inverse)
    return out.contiguous()


def real_cg(
    l1: int,
    l2: int,
    l3: int,
    source: str = "e3nn",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """C^{l1, l2 -> l3}, shape (2l1+1, 2l2+1, 2l3+1), Frobenius norm 1, real basis (l = 1: x, y, z)."""
    return _real_cg(l1, l2, l3, source).to(dtype=dtype, device=device)


def wigner_d(l: int, rotation: torch.Tensor, parity: int = 1) -> torch.Tensor:
    """D^{l, parity}(g) in the real basis of `real_cg` (e3nn's; g may be improper: det -1 applies parity)."""
    from e3nn import o3

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds the so(3) generators in the default dtype
    try:
        d = o3.Irrep(l, parity).D_from_matrix(rotation.to(torch.float64))
    finally:
        torch.set_default_dtype(previous)
    if l == 1:
        perm = list(vector_permutation())
        inverse = [perm.index(a) for a in range(3)]
        d = d[inverse][:, inverse]
    return d


def vector_cg(j: int, m: int, mu: int, big_j: int) -> float:
    """Condon-Shortley <j m; 1 mu | J, m + mu> for J in {j-1, j, j+1}: the closed forms of coupling a vector."""
    big_m = m + mu
    if abs(m) > j or abs(mu) > 1 or abs(big_m) > big_j or big_j < 0:
        return 0.0
    if big_j == j + 1:
        denominator = (2 * j + 1) * (2 * j + 2)
        if mu == 1:
            return math.sqrt((j + big_m) * (j + big_m + 1) / denominator)
        if mu == 0:
            return math.sqrt((j - big_m + 1) * (j + big_m + 1) / ((2 * j + 1) * (j + 1)))
        return math.sqrt((j - big_m) * (j - big_m + 1) / denominator)
    if big_j == j:
        if j == 0:
            return 0.0
        if mu == 1:
            return -math.sqrt((j + big_m) * (j - big_m + 1) / (2 * j * (j + 1)))
        if mu == 0:
            return big_m / math.sqrt(j * (j + 1))
        return math.sqrt((j - big_m) * (j + big_m + 1) / (2 * j * (j + 1)))
    if big_j == j - 1:
        denominator = 2 * j * (2 * j + 1)
        if mu == 1:
            return math.sqrt((j - big_m) * (j - big_m + 1) / denominator)
        if mu == 0:
            return -math.sqrt((j - big_m) * (j + big_m) / (j * (2 * j + 1)))
        return math.sqrt((j + big_m + 1) * (j + big_m) / denominator)
    return 0.0


def spherical_vector_basis() -> torch.Tensor:
    """U (3 x 3, complex): column a is e_{mu} with mu = a - 1 in Cartesian components (rows x, y, z)."""
    s = 1 / math.sqrt(2)
    return torch.tensor([[s, 0, -s], [-1j * s, 0, -1j * s], [0, 1, 0]], dtype=torch.complex128)


def spherical_to_cartesian(block: torch.Tensor, n: int) -> torch.Tensor:
    """U^{(x)n} A U^{(x)n, H} for a dense 3^n x 3^n spherical-basis matrix A (real part; the result is real)."""
    u = spherical_vector_basis()
    out = block.to(torch.complex128)
    shape = (3,) * n
    out = out.reshape(shape + shape)
    for axis in range(n):  # rows: apply U on every slot
        out = torch.tensordot(u, out, dims=([1], [axis])).movedim(0, axis)
    for axis in range(n, 2 * n):  # columns: apply conj(U) on every slot
        out = torch.tensordot(u.conj(), out, dims=([1], [axis])).movedim(0, axis)
    return out.reshape(3**n, 3**n).real.contiguous()
