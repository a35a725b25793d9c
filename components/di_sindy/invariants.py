"""Differential invariants of a PDE's symmetry generators, as a regression library (di_sindy.md §3.1-3.3).

A library term is a linear combination of jet monomials, {exponents over JET_T: coefficient}, JET_T = JET + u_t.
The library has one target (the invariant containing u_t, normalised to u_t coefficient 1) and features (the
invariants without u_t). Two routes:

- Route A (closed forms): translations leave every differential function without explicit x, t invariant; the
  Galilean boost t d_x + c d_u leaves the pure x-derivatives u_x, u_xx, ... and I_0 = u_t + (1/c) u u_x
  invariant (u itself is not); a scaling keeps the monomials whose weight equals the target's (a relative-
  invariant library instead of ratios).
- Route B (generic, for any generators, e.g. discovered ones): write Delta = sum_i c_i theta_i over raw
  monomials, apply each prolonged generator symbolically (sympy), require pr v(Delta) = 0 identically (= lambda
  Delta for a scaling, lambda = its weight of u_t), and take the null space of the linear system in c.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from components.core.pdes import JET, PDE, Monomial

JET_T = (*JET, "u_t")
U_T: Monomial = (0,) * len(JET) + (1,)
Term = dict[Monomial, float]  # exponents over JET_T -> coefficient


def with_time(m: Monomial) -> Monomial:
    """A JET monomial as a JET_T monomial (no u_t)."""
    return tuple(m) + (0,) if len(m) == len(JET) else tuple(m)


def term_name(term: Term) -> str:
    parts = []
    for m, c in term.items():
        powers = [name if p == 1 else f"{name}^{p}" for name, p in zip(JET_T, m, strict=True) if p]
        body = "*".join(powers) or "1"
        parts.append(body if c == 1 else f"{c:g}*{body}")
    return " + ".join(parts) or "0"


@dataclass(frozen=True)
class Library:
    target: Term  # the regression's left-hand side (u_t coefficient 1)
    features: tuple[Term, ...]
    route: str

    @property
    def names(self) -> list[str]:
        return [term_name(f) for f in self.features]


def monomials(variables: Sequence[int], degree: int, width: int = len(JET_T)) -> list[Monomial]:
    """All monomials of total degree <= degree in the given variable indices (degree 0 is the constant 1)."""
    out = []
    for d in range(degree + 1):
        for combo in itertools.combinations_with_replacement(variables, d):
            m = [0] * width
            for index in combo:
                m[index] += 1
            out.append(tuple(m))
    return out


def weight(m: Monomial, scaling: tuple[float, float, float]) -> float:
    """Scaling weight of a JET_T monomial under a x d_x + b t d_t + beta u d_u: u_{jx} has beta - j a, u_t beta - b."""
    a, b, beta = scaling
    per_variable = [beta - j * a for j in range(len(JET))] + [beta - b]
    return float(sum(p * w for p, w in zip(m, per_variable, strict=True)))


def target_term(galilean_c: float | None) -> Term:
    if galilean_c is None:
        return {U_T: 1.0}
    return {U_T: 1.0, with_time((1, 1, 0, 0, 0)): 1.0 / galilean_c}


def route_a(
    galilean_c: float | None, order: int, degree: int, scaling: tuple[float, float, float] | None = None
) -> Library:
    """Closed-form invariants: monomials of degree <= degree in u_x..u_{order x} (Galilean boost; with u too when
    there is no boost), filtered to the target's scaling weight when a scaling is given."""
    first = 1 if galilean_c is not None else 0
    features = monomials(range(first, order + 1), degree)
    target = target_term(galilean_c)
    if scaling is not None:
        features = [m for m in features if abs(weight(m, scaling) - weight(U_T, scaling)) < 1e-12]
    return Library(target, tuple({m: 1.0} for m in features), "A")


# --- Route B: prolongation with sympy -----------------------------------------------------------------------------

X, T = sp.symbols("x t")


def jet_symbol(j: int, k: int) -> sp.Symbol:
    return sp.Symbol("u" + ("_" + "x" * j + "t" * k if j + k else ""))


_JET_INDEX: dict[sp.Symbol, tuple[int, int]] = {}


def jet_index(symbol: sp.Symbol) -> tuple[int, int] | None:
    if not _JET_INDEX:
        for j in range(12):
            for k in range(12):
                _JET_INDEX[jet_symbol(j, k)] = (j, k)
    return _JET_INDEX.get(symbol)


def total_derivative(expr: sp.Expr, wrt: str) -> sp.Expr:
    """D_x or D_t: the explicit derivative plus u_{J + x} d/du_J over every jet variable in expr."""
    out = sp.diff(expr, X if wrt == "x" else T)
    for symbol in expr.free_symbols:
        index = jet_index(symbol)
        if index is not None:
            j, k = index
            out += (jet_symbol(j + 1, k) if wrt == "x" else jet_symbol(j, k + 1)) * sp.diff(expr, symbol)
    return out


@dataclass(frozen=True)
class Generator:
    """v = xi d_x + tau d_t + phi d_u (sympy expressions in x, t, u); `relative`: invariance up to a factor,
    pr v(Delta) = lambda(x, t) Delta (a scaling: its weight of u_t; Burgers' projective generator: -3t)."""

    name: str
    xi: sp.Expr
    tau: sp.Expr
    phi: sp.Expr
    relative: bool = False


def prolong(gen: Generator, expr: sp.Expr) -> sp.Expr:
    """pr v(expr), with phi^J = D_J(phi - xi u_x - tau u_t) + xi u_{J,x} + tau u_{J,t} (Olver ch. 2)."""
    characteristic = gen.phi - gen.xi * jet_symbol(1, 0) - gen.tau * jet_symbol(0, 1)
    out = gen.xi * sp.diff(expr, X) + gen.tau * sp.diff(expr, T)
    for symbol in expr.free_symbols:
        index = jet_index(symbol)
        if index is None:
            continue
        j, k = index
        phi_j = characteristic
        for _ in range(j):
            phi_j = total_derivative(phi_j, "x")
        for _ in range(k):
            phi_j = total_derivative(phi_j, "t")
        phi_j += gen.xi * jet_symbol(j + 1, k) + gen.tau * jet_symbol(j, k + 1)
        out += phi_j * sp.diff(expr, symbol)
    return sp.expand(out)


def known_generators(pde: PDE, use_scaling: bool, projective: bool = False) -> list[Generator]:
    """The point symmetries of di_sindy.md §3.3's table that the library uses."""
    u = jet_symbol(0, 0)
    gens = [Generator("d_x", sp.Integer(1), sp.Integer(0), sp.Integer(0)), Generator("d_t", 0, 1, 0)]
    if pde.galilean_c is not None:
        gens.append(Generator("galilean", T, sp.Integer(0), sp.nsimplify(pde.galilean_c)))
    if use_scaling and pde.scaling is not None:
        a, b, beta = (sp.nsimplify(v) for v in pde.scaling)
        gens.append(Generator("scaling", a * X, b * T, beta * u, relative=True))
    if projective and pde.name == "burgers":
        gens.append(Generator("projective", X * T, T**2, X - T * u, relative=True))
    return gens


def to_symbolic(m: Monomial) -> sp.Expr:
    symbols = [jet_symbol(j, 0) for j in range(len(JET))] + [jet_symbol(0, 1)]
    return sp.Mul(*[s**p for s, p in zip(symbols, m, strict=True)])


def invariance_matrix(gens: Sequence[Generator], raw: Sequence[Monomial]) -> sp.Matrix:
    """M with M c = 0 iff Delta = sum c_i raw_i is (relatively) invariant under every generator."""
    rows: list[list[sp.Expr]] = []
    u_t = jet_symbol(0, 1)
    for gen in gens:
        # lambda = the u_t coefficient of pr v(u_t): beta - b for a scaling, -3t for Burgers' projective generator
        factor = sp.diff(prolong(gen, u_t), u_t) if gen.relative else sp.Integer(0)
        if factor.free_symbols - {X, T}:
            raise ValueError(f"generator {gen.name}: its factor {factor} depends on the jet, not a relative symmetry")
        columns = []
        for m in raw:
            expr = to_symbolic(m)
            columns.append(sp.expand(prolong(gen, expr) - factor * expr))
        symbols = sorted(set().union(*(c.free_symbols for c in columns)) | {X, T}, key=str)
        polys = [sp.Poly(c, *symbols).as_dict() for c in columns]
        keys = sorted(set().union(*(p.keys() for p in polys)))
        rows.extend([p.get(key, 0) for p in polys] for key in keys)
    return sp.Matrix(rows) if rows else sp.zeros(0, len(raw))


def null_space(gens: Sequence[Generator], raw: Sequence[Monomial]) -> list[Term]:
    """A basis of the invariants in span(raw), reduced so that at most one vector contains u_t (coefficient 1)."""
    matrix = invariance_matrix(gens, raw)
    basis = matrix.nullspace() if matrix.rows else [sp.eye(len(raw))[:, i] for i in range(len(raw))]
    if not basis:
        return []
    # reduced row echelon with u_t-bearing columns first: one vector carries u_t, the others are free of it
    order = sorted(range(len(raw)), key=lambda i: (raw[i][-1] == 0, i))
    stacked = sp.Matrix.hstack(*basis).T[:, order]
    reduced, _ = stacked.rref()
    terms = []
    for r in range(reduced.rows):
        row = {raw[order[i]]: float(reduced[r, i]) for i in range(len(raw)) if reduced[r, i] != 0}
        if row:
            terms.append(row)
    return terms


def route_b(gens: Sequence[Generator], order: int, degree: int) -> Library:
    """Route B on raw monomials of degree <= degree in u..u_{order x}, plus u_t alone (u_t stays in the target)."""
    raw = monomials(range(order + 1), degree) + [U_T]
    basis = null_space(gens, raw)
    targets = [t for t in basis if t.get(U_T, 0) != 0]
    if len(targets) != 1:
        raise ValueError(f"the invariants contain {len(targets)} terms with u_t; expected one target")
    target = {m: c / targets[0][U_T] for m, c in targets[0].items()}
    return Library(target, tuple(t for t in basis if U_T not in t), "B")


def galilean_residual(equation: dict[Monomial, float], c: float) -> float:
    """max |coefficient| of pr v(u_t - sum_m a_m m) for the boost t d_x + c d_u (0: the equation admits it)."""
    delta = jet_symbol(0, 1) - sum(sp.Float(a) * to_symbolic(with_time(m)) for m, a in equation.items())
    gen = Generator("galilean", T, sp.Integer(0), sp.Float(c))
    image = sp.expand(prolong(gen, sp.expand(delta)))
    if not image.free_symbols:
        return abs(float(image))
    symbols = sorted(image.free_symbols, key=str)
    return float(max(abs(v) for v in sp.Poly(image, *symbols).as_dict().values()))


def evaluate(term: Term, jets: dict[str, np.ndarray]) -> np.ndarray:
    """A library term on the grid: sum of coefficient * product of jet arrays."""
    out = None
    for m, c in term.items():
        value = np.full_like(jets["u"], c)
        for name, power in zip(JET_T, m, strict=True):
            if power:
                value = value * jets[name] ** power
        out = value if out is None else out + value
    return out


def raw_equation(library: Library, coefficients: np.ndarray) -> dict[Monomial, float]:
    """Map a fitted target = sum xi_k feature_k back to u_t = ... over JET monomials (products expanded)."""
    equation: dict[Monomial, float] = {}
    for m, c in library.target.items():
        if m != U_T:
            equation[m[: len(JET)]] = equation.get(m[: len(JET)], 0.0) - c
    for xi, feature in zip(coefficients, library.features, strict=True):
        if xi != 0:
            for m, c in feature.items():
                equation[m[: len(JET)]] = equation.get(m[: len(JET)], 0.0) + xi * c
    return {m: float(c) for m, c in equation.items() if c != 0}


def raw_library(order: int = 4, power: int = 2) -> Library:
    """PDE-FIND's library {u^p d_x^q u : p <= power, q <= order} (with 1, u, u^2): 15 terms at (4, 2); target u_t."""
    features = [monomials([0], power)[p] for p in range(power + 1)]
    for q in range(1, order + 1):
        for p in range(power + 1):
            m = [0] * len(JET_T)
            m[0], m[q] = p, 1
            features.append(tuple(m))
    return Library({U_T: 1.0}, tuple({m: 1.0} for m in features), "raw")
