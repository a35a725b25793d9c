"""Derivatives of a measured field u[t, x] on a periodic grid (di_sindy.md §3.4 step 1-2).

x-derivatives: `spectral` (exact for band-limited clean data), `lowpass` (spectral after a sharp cut of the
modes above `cutoff` times Nyquist; the field itself is filtered too, so every feature comes from the same
smoothed u) or `savgol` (Savitzky-Golay in x with periodic wrap, polynomial order 5). u_t is the central
difference in time of the same (filtered) u. Every method returns the jets on the interior time slices only:
`trim` slices are dropped at each end."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.signal import savgol_filter

from components.core.pdes import JET, spectral_factor

DiffMethod = Literal["spectral", "lowpass", "savgol"]


def x_derivatives(u: np.ndarray, length: float, method: DiffMethod, cutoff: float, window: int) -> list[np.ndarray]:
    """[u, u_x, ..., u_xxxx] of u[t, x] (u is the filtered field for lowpass and savgol)."""
    n_x = u.shape[-1]
    if method in ("spectral", "lowpass"):
        v = np.fft.rfft(u, axis=-1)
        if method == "lowpass":
            keep = np.arange(v.shape[-1]) <= cutoff * (n_x // 2)
            v = v * keep
        return [np.fft.irfft(v * spectral_factor(order, n_x, length), n=n_x, axis=-1) for order in range(len(JET))]
    dx = length / n_x
    return [
        savgol_filter(u, window, polyorder=5, deriv=order, delta=dx, axis=-1, mode="wrap") for order in range(len(JET))
    ]


def jets(
    u: np.ndarray,
    dt: float,
    length: float,
    method: DiffMethod = "spectral",
    cutoff: float = 1.0,
    window: int = 9,
    trim: int = 2,
) -> dict[str, np.ndarray]:
    """{"u", "u_x", ..., "u_xxxx", "u_t"}: arrays (n_t - 2 trim, n_x) on the interior time slices."""
    if u.ndim != 2 or u.shape[0] < 2 * trim + 1:
        raise ValueError(f"need a field (time, x) with more than {2 * trim} time slices, got shape {u.shape}")
    derivs = x_derivatives(u, length, method, cutoff, window)
    u_t = np.gradient(derivs[0], dt, axis=0)  # central differences on the interior, O(dt^2)
    inner = slice(trim, u.shape[0] - trim)
    out = {name: d[inner] for name, d in zip(JET, derivs, strict=True)}
    out["u_t"] = u_t[inner]
    return out
