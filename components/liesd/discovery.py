"""From a function (a trained network or the exact task function) to the LieSD Gram matrix and its result:
Jacobians by vmap(jacrev) in float64, chunked, rows of the chosen form, G = sum_i C_i^T C_i (liesd.md §3.5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import jacrev, vmap

from components.liesd import systems


def gram_matrix(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    form: str,
    out_shape: tuple[int, int],
    chunk: int = 4096,
) -> np.ndarray:
    """G for `fn`, a map from one flattened input (c d,) to one flattened output, over inputs x (n, c, d).

    x's dtype is the dtype of the whole computation (use float64: liesd.md §8)."""
    n, c, d = x.shape
    total = None
    for start in range(0, n, chunk):
        block = x[start : start + chunk]
        flat = block.reshape(len(block), c * d)
        with torch.no_grad():
            outputs = vmap(fn)(flat)
        jac = vmap(jacrev(fn))(flat).detach()
        rows = systems.rows(
            form, block, outputs.reshape(len(block), *out_shape), jac.reshape(len(block), *out_shape, c, d)
        )
        part = systems.gram(rows)
        total = part if total is None else total + part
    return total.cpu().numpy()


@dataclass(frozen=True)
class Discovery:
    layout: systems.Layout
    spectrum: systems.Spectrum
    detected: int  # D from the gap rule (gauge directions included)
    gap_ratio: float  # sigma_{D+1} / sigma_D at the chosen gap
    used: int  # D the bases are taken with: the gap rule's, or the configured num_bases

    @property
    def bases(self) -> np.ndarray:
        """(used, unknowns): the right singular vectors of the `used` smallest singular values, orthonormal."""
        return self.spectrum.vectors[:, : self.used].T


def discover(gram: np.ndarray, layout: systems.Layout, num_bases: int | None = None, gap_max: int = 12) -> Discovery:
    spectrum = systems.spectrum(gram)
    detected, ratio = systems.gap_rule(spectrum.sigma, skip=layout.gauge, j_max=gap_max)
    return Discovery(layout, spectrum, detected, ratio, num_bases if num_bases is not None else detected)
