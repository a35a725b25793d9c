"""HLOP's lateral subspace neurons (hlop.md §3.2): weights H [k, n] learned by Oja's subspace rule.

y = H x is the lateral response, x- = -H^T y the feedback, so x + x- = (I - H^T H) x. The Hebbian /
anti-Hebbian update dH = eta (y x^T - y y^T H) drives the rows of H to an orthonormal basis of the top-k
subspace of the uncentred second moment E[x x^T]. Rows learned on earlier tasks are frozen ("old"); only the
rows added for the current task learn, and with the old rows in the reconstruction they converge to the
principal subspace of the residual, orthogonal to the old rows.
"""

from __future__ import annotations

import torch


class Subspace:
    """The lateral neurons of one layer: H's rows 0..old-1 are frozen, the rest learn (no SGD ever touches H)."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        self.dim = dim
        self.weight = torch.zeros(0, dim, dtype=dtype, device=device)
        self.momentum = torch.zeros(0, dim, dtype=dtype, device=device)
        self.old = 0  # rows [0, old) are merged (learned on earlier tasks) and frozen

    @property
    def size(self) -> int:
        return self.weight.shape[0]

    def add(self, count: int, generator: torch.Generator | None = None) -> None:
        """Append `count` new rows, orthogonal among themselves (nn.init.orthogonal_) but not to the old rows:
        the Hebbian updates make them so (hlop.md §8); their momentum starts at 0."""
        if count < 0:
            raise ValueError(f"cannot add {count} subspace neurons")
        if self.size + count > self.dim:
            raise ValueError(f"{self.size} + {count} subspace neurons exceed the layer's input width {self.dim}")
        if count == 0:
            return
        rows = torch.empty(count, self.dim, dtype=self.weight.dtype)  # drawn on the CPU: the same rows on any device
        torch.nn.init.orthogonal_(rows, generator=generator)
        rows = rows.to(self.weight.device)
        self.weight = torch.cat([self.weight, rows])
        self.momentum = torch.cat([self.momentum, torch.zeros_like(rows)])

    def merge(self) -> None:
        """End of a task: every row becomes old (frozen, and used by the projection from the next task on)."""
        self.old = self.size

    def old_basis(self) -> torch.Tensor:
        return self.weight[: self.old]

    @torch.no_grad()
    def update(
        self,
        activity: torch.Tensor,
        lr: float,
        iterations: int = 5,
        momentum: float = 0.9,
        clamp: float = 10.0,
        lateral_steps: int | None = None,
        lateral_scale: float = 20.0,
    ) -> None:
        """Oja's subspace rule on a batch of presynaptic activity [rows, dim], as hlop_module.py does it:
        `iterations` times, dH = clamp(Y^T (X - Y H) / rows) with Y = X H^T over all rows (old ones included,
        so the new rows learn the residual), old rows' dH and momentum left untouched, m = b m + (1 - b) dH,
        H_new += lr m. `lateral_steps` (T_h) rate-codes Y as spiking lateral neurons (hlop.md §3.4)."""
        if self.size == self.old:
            return
        x = activity.reshape(-1, self.dim).to(self.weight.dtype)
        new = slice(self.old, self.size)
        for _ in range(iterations):
            y = x @ self.weight.T
            if lateral_steps is not None:
                y = quantise(y, lateral_steps, lateral_scale)
            delta = torch.clamp(y.T @ (x - y @ self.weight) / x.shape[0], -clamp, clamp)
            self.momentum[new] = momentum * self.momentum[new] + (1 - momentum) * delta[new]
            self.weight[new] += lr * self.momentum[new]

    def orthonormality_error(self) -> float:
        """||H H^T - I||_F over every row (0 for an empty subspace)."""
        gram = self.weight @ self.weight.T
        return float(torch.linalg.matrix_norm(gram - torch.eye(self.size, dtype=gram.dtype, device=gram.device)))

    def rank(self) -> int:
        return int(torch.linalg.matrix_rank(self.weight)) if self.size else 0

    def state(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.clone(), "momentum": self.momentum.clone(), "old": torch.tensor(self.old)}


def quantise(y: torch.Tensor, steps: int, scale: float) -> torch.Tensor:
    """Spiking lateral neurons: y clipped to [-s, s] and rate-coded in T_h steps (hlop.md §3.4)."""
    return torch.round(torch.clamp(y, -scale, scale) / scale * steps) / steps * scale


def residual_basis(activity: torch.Tensor, old: torch.Tensor, count: int) -> torch.Tensor:
    """The SVD control (GPM-style, at HLOP's sizes): the top `count` right singular vectors of the activity's
    residual after projecting out the old basis [count, dim]."""
    x = activity.reshape(-1, activity.shape[-1]).double()
    if old.shape[0]:
        x = x - (x @ old.double().T) @ old.double()
    _, singular, vh = torch.linalg.svd(x, full_matrices=False)
    # directions the residual does not reach (singular value ~0) would repeat the old basis: never added
    # (the tolerance is matrix_rank's, at the activity's precision: the old basis is stored in it)
    tolerance = torch.finfo(activity.dtype).eps * max(x.shape) * (float(singular[0]) if len(singular) else 0.0)
    reached = int((singular > tolerance).sum())
    return vh[: min(count, reached)].to(activity.dtype)
