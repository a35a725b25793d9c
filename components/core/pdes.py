"""The benchmark PDEs on a periodic grid and the solver that simulates them (and the discovered equations).

Every equation is written u_t = sum_m c_m m(u, u_x, ..., u_xxxx) over jet monomials (exponent tuples over
JET). The solver is ETDRK4 (Cox-Matthews, with Kassam-Trefethen's contour-integral coefficients): the terms
linear in a single derivative form a diagonal Fourier symbol integrated exactly, the rest is evaluated
pseudo-spectrally. The same solver writes the data and rolls out a discovered equation (di_sindy.md §3.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

JET = ("u", "u_x", "u_xx", "u_xxx", "u_xxxx")  # u and its pure x-derivatives up to order 4
Monomial = tuple[int, ...]  # exponents over JET


def monomial(**powers: int) -> Monomial:
    """monomial(u=1, u_x=1) -> (1, 1, 0, 0, 0)."""
    return tuple(int(powers.get(name, 0)) for name in JET)


def monomial_name(m: Monomial) -> str:
    parts = [name if power == 1 else f"{name}^{power}" for name, power in zip(JET, m, strict=True) if power]
    return "*".join(parts) or "1"


@dataclass(frozen=True)
class Setting:
    """A simulation setting: grid [origin, origin + length) with n_x points, snapshots every dt_save up to t_end."""

    length: float
    origin: float
    n_x: int
    t_end: float
    snapshots: int
    step: float  # ETDRK4 time step h
    modes: int  # random Fourier initial condition: this many lowest modes
    amplitude: float  # each cosine/sine coefficient ~ amplitude * N(0, 1)


@dataclass(frozen=True)
class PDE:
    name: str
    equation: str
    rhs: dict[Monomial, float]  # u_t = sum c_m m
    galilean_c: float | None  # the boost t d_x + c d_u (c = 1/a for u_t + a u u_x + ...); None: no boost
    scaling: tuple[float, float, float] | None  # (a, b, beta) of a x d_x + b t d_t + beta u d_u; None: none
    settings: dict[str, Setting] = field(default_factory=dict)
    note: str = ""


UUX = monomial(u=1, u_x=1)
NU_BURGERS = 0.1

PDES: dict[str, PDE] = {
    "kdv": PDE(
        "kdv",
        "u_t + u u_x + u_xxx = 0",
        {UUX: -1.0, monomial(u_xxx=1): -1.0},
        galilean_c=1.0,
        scaling=(1.0, 3.0, -2.0),
        settings={  # smoke: di_sindy.md §6 (measured there); paper: §4 (LieNLSD kdv.py: L = 20, n = 100-128)
            "smoke": Setting(20.0, -10.0, 64, 1.0, 101, 1e-3, 5, 0.5),
            "paper": Setting(20.0, -10.0, 128, 2.0, 201, 5e-4, 5, 0.5),
        },
    ),
    "burgers": PDE(
        "burgers",
        f"u_t + u u_x = {NU_BURGERS} u_xx",
        {UUX: -1.0, monomial(u_xx=1): NU_BURGERS},
        galilean_c=1.0,
        scaling=(1.0, 2.0, -1.0),
        settings={  # smoke: §6; paper: PDE-FIND's grid x in [-8, 8), n = 256, T = 10, 101 snapshots (§4)
            "smoke": Setting(20.0, -10.0, 128, 2.0, 201, 1e-3, 5, 0.15),
            "paper": Setting(16.0, -8.0, 256, 10.0, 101, 5e-3, 5, 0.15),
        },
    ),
    "ks": PDE(
        "ks",
        "u_t + u u_x + u_xx + u_xxxx = 0",
        {UUX: -1.0, monomial(u_xx=1): -1.0, monomial(u_xxxx=1): -1.0},
        galilean_c=1.0,
        scaling=None,
        settings={  # smoke: §6 (n = 128 is under-resolved there); paper: [0, 32 pi), n = 512 (§4: 256-1024)
            "smoke": Setting(32 * np.pi, 0.0, 256, 10.0, 401, 5e-3, 8, 0.3),
            "paper": Setting(32 * np.pi, 0.0, 512, 50.0, 1001, 1e-2, 8, 0.3),
        },
    ),
    "mkdv": PDE(
        "mkdv",
        "u_t + u^2 u_x + u_xxx = 0",
        {monomial(u=2, u_x=1): -1.0, monomial(u_xxx=1): -1.0},
        galilean_c=None,
        scaling=(1.0, 3.0, -1.0),
        settings={
            "smoke": Setting(20.0, -10.0, 64, 1.0, 101, 1e-3, 5, 0.5),
            "paper": Setting(20.0, -10.0, 128, 2.0, 201, 5e-4, 5, 0.5),
        },
        note="placeholder for the paper's unresolved 'nKdV' (di_sindy.md §3.3): modified KdV, a guess",
    ),
}


def wavenumbers(n_x: int, length: float) -> np.ndarray:
    return 2 * np.pi / length * np.arange(n_x // 2 + 1)


def spectral_factor(order: int, n_x: int, length: float) -> np.ndarray:
    """(i k)^order on rfft modes; the Nyquist mode of an odd derivative is zero (it has no real derivative)."""
    factor = (1j * wavenumbers(n_x, length)) ** order
    if order % 2 == 1 and n_x % 2 == 0:
        factor[-1] = 0
    return factor


def split_rhs(rhs: dict[Monomial, float], n_x: int, length: float) -> tuple[np.ndarray, dict[Monomial, float]]:
    """The diagonal Fourier symbol of the terms linear in one derivative, and the remaining (nonlinear) terms."""
    symbol = np.zeros(n_x // 2 + 1, dtype=complex)
    rest = {}
    for m, c in rhs.items():
        if sum(m) == 1:
            symbol += c * spectral_factor(m.index(1), n_x, length)
        elif c != 0:
            rest[m] = c
    return symbol, rest


def etdrk4_coefficients(symbol: np.ndarray, h: float, points: int = 32) -> tuple[np.ndarray, ...]:
    """E, E/2, Q, f1, f2, f3 of Kassam & Trefethen (2005), means over a full circle (complex symbols)."""
    hl = h * symbol
    roots = np.exp(2j * np.pi * (np.arange(1, points + 1) - 0.5) / points)
    lr = hl[:, None] + roots[None, :]
    ex = np.exp(lr)
    q = h * np.mean((np.exp(lr / 2) - 1) / lr, axis=1)
    f1 = h * np.mean((-4 - lr + ex * (4 - 3 * lr + lr**2)) / lr**3, axis=1)
    f2 = h * np.mean((2 + lr + ex * (lr - 2)) / lr**3, axis=1)
    f3 = h * np.mean((-4 - 3 * lr - lr**2 + ex * (4 - lr)) / lr**3, axis=1)
    return np.exp(hl), np.exp(hl / 2), q, f1, f2, f3


def simulate(
    rhs: dict[Monomial, float], u0: np.ndarray, length: float, step: float, dt_save: float, snapshots: int
) -> np.ndarray:
    """(snapshots, n_x) of u_t = rhs from u0 with ETDRK4; rows of NaN after a blow-up (a discovered equation may
    be ill-posed)."""
    n_x = len(u0)
    symbol, nonlinear = split_rhs(rhs, n_x, length)
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(symbol, step)
    orders = sorted({i for m in nonlinear for i, p in enumerate(m) if p})
    factors = {order: spectral_factor(order, n_x, length) for order in orders}

    def n_of(v: np.ndarray) -> np.ndarray:
        if not nonlinear:
            return np.zeros_like(v)
        jets = {order: np.fft.irfft(factors[order] * v, n=n_x) for order in orders}
        total = np.zeros(n_x)
        for m, c in nonlinear.items():
            term = np.full(n_x, c)
            for order, power in enumerate(m):
                if power:
                    term = term * jets[order] ** power
            total += term
        return np.fft.rfft(total)

    per_save = int(round(dt_save / step))
    if per_save < 1 or abs(per_save * step - dt_save) > 1e-9 * dt_save:
        raise ValueError(f"dt_save {dt_save} is not a whole number of steps {step}")
    out = np.full((snapshots, n_x), np.nan)
    out[0] = u0
    v = np.fft.rfft(u0)
    with np.errstate(over="ignore", invalid="ignore"):
        for row in range(1, snapshots):
            for _ in range(per_save):
                nv = n_of(v)
                a = e2 * v + q * nv
                na = n_of(a)
                b = e2 * v + q * na
                nb = n_of(b)
                c = e2 * a + q * (2 * nb - nv)
                nc = n_of(c)
                v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
            u = np.fft.irfft(v, n=n_x)
            if not np.all(np.isfinite(u)) or np.max(np.abs(u)) > 1e6:
                break
            out[row] = u
    return out


def random_fourier(rng: np.random.Generator, x: np.ndarray, length: float, modes: int, amplitude: float) -> np.ndarray:
    """u0(x) = amplitude sum_{k=1}^{modes} (a_k cos(2 pi k x / L) + b_k sin(2 pi k x / L)), a, b ~ N(0, 1)."""
    a, b = rng.standard_normal((2, modes))
    k = 2 * np.pi * np.arange(1, modes + 1) / length
    return amplitude * (np.cos(np.outer(x, k)) @ a + np.sin(np.outer(x, k)) @ b)


def grid(setting: Setting) -> tuple[np.ndarray, np.ndarray]:
    x = setting.origin + setting.length * np.arange(setting.n_x) / setting.n_x
    t = setting.t_end * np.arange(setting.snapshots) / (setting.snapshots - 1)
    return x, t


def trajectories(pde: PDE, setting: Setting, count: int, seed: int, first: int = 0) -> np.ndarray:
    """(count, snapshots, n_x): trajectory i from the initial condition of generator default_rng([seed, i])."""
    x, t = grid(setting)
    dt_save = t[1] - t[0]
    out = []
    for index in range(first, first + count):
        u0 = random_fourier(np.random.default_rng([seed, index]), x, setting.length, setting.modes, setting.amplitude)
        out.append(simulate(pde.rhs, u0, setting.length, setting.step, dt_save, setting.snapshots))
    return np.stack(out)
