"""EKAN (lift + EKAN layers) and the paper's baselines: KAN (this repo's psi_j(x_i) x_i form), MLP, EMLP.

Raw weights are unconstrained parameters; every forward projects them onto the equivariant subspace
(never once at init: the optimizer moves raw weights out of it). Grids are buffers, updated in place
by `update_grids` (pykan style, least-squares refit, then re-projected on the next forward).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.ekan.equivariant import Bilinear, HomProjector
from components.ekan.reps import Rep, scalars
from components.ekan.spline import kan_basis, refit_grid, uniform_grid

BILINEAR_SCALE = 0.1  # y <- y + 0.1 W_bi(y) y, EMLP's residual weight


def _linear_parameters(n_out: int, n_in: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Orthogonal raw weight (the official init) and nn.Linear's uniform(+-1/sqrt(fan_in)) bias."""
    weight = torch.empty(n_out, n_in)
    nn.init.orthogonal_(weight)
    bound = 1.0 / math.sqrt(n_in)
    bias = torch.empty(n_out).uniform_(-bound, bound)
    return nn.Parameter(weight), nn.Parameter(bias)


class EquivariantLinear(nn.Module):
    """`copies` stacked maps Hom(rep_in, rep_out) sharing one projector, plus an invariant bias."""

    def __init__(self, rep_in: Rep, rep_out: Rep, copies: int = 1):
        super().__init__()
        self.n_in, self.n_out, self.copies = rep_in.size, rep_out.size, copies
        self.weight, self.bias = _linear_parameters(rep_out.size, copies * rep_in.size)
        self.project_weight = HomProjector(rep_out, rep_in)
        self.project_bias = HomProjector(rep_out, scalars(rep_in.group, 1))

    def projected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W (copies, n_out, n_in) and b (n_out,), both in the equivariant subspace."""
        raw = self.weight.view(self.n_out, self.copies, self.n_in).transpose(0, 1)
        return self.project_weight(raw), self.project_bias(self.bias[:, None])[:, 0]

    def set_projected(self, W: torch.Tensor) -> None:
        """Store P(W) as the raw weight (the grid-update refit); W is (copies, n_out, n_in)."""
        W = self.project_weight(W)
        self.weight.data.copy_(W.transpose(0, 1).reshape(self.n_out, self.copies * self.n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W, b = self.projected()
        return x @ W[0].T + b


class EKANLayer(nn.Module):
    """gated(rep_in) -> gated(rep_out): basis functions of each channel's gate times the channel,
    an equivariant linear map per basis function, and the bilinear residual (ekan.md §3.2)."""

    def __init__(
        self,
        rep_in: Rep,
        rep_out: Rep,
        grid: int,
        k: int,
        grid_range: tuple[float, float],
        bilinear: bool,
        rng: np.random.Generator,
        grid_eps: float = 1.0,
    ):
        super().__init__()
        self.k, self.intervals, self.n_in, self.grid_eps = k, grid, rep_in.size, grid_eps
        self.basis_count = grid + k + 1
        gates, channel_gate = np.unique(rep_in.gate_index(), return_inverse=True)
        self.register_buffer("gates", torch.from_numpy(gates), persistent=False)  # positions in the input
        self.register_buffer("channel_gate", torch.from_numpy(channel_gate.reshape(-1)), persistent=False)
        self.register_buffer("grid", uniform_grid(len(gates), grid, *grid_range))
        self.linear = EquivariantLinear(rep_in, rep_out.gated(), copies=self.basis_count)
        self.bilinear = Bilinear(rep_out.gated(), rng) if bilinear else None

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """f_{j,i} = psi_j(s_g(i)) x_i: (B, K, n_in); psi_j of an invariant scalar keeps each copy in rep_in."""
        psi = kan_basis(h[:, self.gates], self.grid, self.k)  # (B, n_gates, K)
        return psi[:, self.channel_gate].transpose(1, 2) * h[:, None, : self.n_in]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        W, b = self.linear.projected()
        y = torch.einsum("bki,koi->bo", self.features(h), W) + b
        if self.bilinear is not None:
            y = y + BILINEAR_SCALE * self.bilinear(y)
        return y

    @torch.no_grad()
    def update_grid(self, h: torch.Tensor) -> None:
        """Refit each gate's grid to the batch's range, then refit W by least squares so the pre-bias
        outputs on the batch are kept, and project it (ekan.md §3.3)."""
        W, _ = self.linear.projected()
        before = self.features(h).flatten(1)  # (B, K n_in), basis-major like the raw weight
        targets = before @ W.transpose(0, 1).reshape(W.shape[1], -1).T  # (B, n_out)
        self.grid.copy_(refit_grid(h[:, self.gates], self.intervals, eps=self.grid_eps))
        after = self.features(h).flatten(1)
        refit = (torch.linalg.pinv(after) @ targets).T  # (n_out, K n_in)
        self.linear.set_projected(refit.reshape(-1, self.basis_count, self.n_in).transpose(0, 1))


class EKAN(nn.Module):
    def __init__(
        self,
        rep_in: Rep,
        rep_out: Rep,
        hidden: list[Rep],
        grid: int = 3,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        bilinear: bool = True,
        seed: int = 0,
        grid_eps: float = 1.0,
    ):
        super().__init__()
        rng = np.random.default_rng(seed)  # which x blocks feed each bilinear map
        self.out_size = rep_out.size
        gated_in = rep_in.gated()
        self.lift = EquivariantLinear(rep_in, gated_in)
        self.lift_bilinear = Bilinear(gated_in, rng) if bilinear else None
        reps = [rep_in, *hidden, rep_out]
        self.layers = nn.ModuleList(
            EKANLayer(a, b, grid, k, grid_range, bilinear, rng, grid_eps) for a, b in zip(reps, reps[1:])
        )

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every EKAN layer, then the last layer's gated output."""
        h = self.lift(x)
        if self.lift_bilinear is not None:
            h = h + BILINEAR_SCALE * self.lift_bilinear(h)
        acts = [h]
        for layer in self.layers:
            acts.append(layer(acts[-1]))
        return acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)[-1][:, : self.out_size]  # drop the last gates

    @torch.no_grad()
    def update_grids(self, x: torch.Tensor) -> None:
        for index, layer in enumerate(self.layers):
            layer.update_grid(self.activations(x)[index])  # later layers see the refitted earlier ones


class KANLayer(nn.Module):
    """The repo's KAN layer: y = sum_j W_j (psi_j(x) * x) + b, a grid per input coordinate."""

    def __init__(self, n_in: int, n_out: int, grid: int, k: int, grid_range: tuple[float, float], grid_eps: float):
        super().__init__()
        self.k, self.intervals, self.grid_eps = k, grid, grid_eps
        self.basis_count = grid + k + 1
        self.register_buffer("grid", uniform_grid(n_in, grid, *grid_range))
        self.weight, self.bias = _linear_parameters(n_out, self.basis_count * n_in)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (kan_basis(x, self.grid, self.k).transpose(1, 2) * x[:, None, :]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.weight.T + self.bias

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor) -> None:
        targets = self.features(x) @ self.weight.T
        self.grid.copy_(refit_grid(x, self.intervals, eps=self.grid_eps))
        self.weight.copy_((torch.linalg.pinv(self.features(x)) @ targets).T)


class KAN(nn.Module):
    def __init__(
        self,
        n_in: int,
        n_out: int,
        width: list[int],
        grid: int = 3,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        grid_eps: float = 1.0,
    ):
        super().__init__()
        dims = [n_in, *width, n_out]
        self.layers = nn.ModuleList(KANLayer(a, b, grid, k, grid_range, grid_eps) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def update_grids(self, x: torch.Tensor) -> None:
        for index, layer in enumerate(self.layers):
            h = x
            for earlier in self.layers[:index]:
                h = earlier(h)
            layer.update_grid(h)


class MLP(nn.Module):
    """Linear + Swish blocks and a linear read-out (the paper's MLP baseline: three hidden layers)."""

    def __init__(self, n_in: int, n_out: int, width: list[int]):
        super().__init__()
        dims = [n_in, *width]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.out = nn.Linear(dims[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.silu(layer(x))
        return self.out(x)


class EMLPBlock(nn.Module):
    """Equivariant linear to gated(rep_out), bilinear residual, gated nonlinearity sigmoid(gate) * x."""

    def __init__(self, rep_in: Rep, rep_out: Rep, rng: np.random.Generator):
        super().__init__()
        self.linear = EquivariantLinear(rep_in, rep_out.gated())
        self.bilinear = Bilinear(rep_out.gated(), rng)
        self.n_out = rep_out.size
        self.register_buffer("gate_index", torch.from_numpy(rep_out.gate_index()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        h = h + BILINEAR_SCALE * self.bilinear(h)
        return torch.sigmoid(h[:, self.gate_index]) * h[:, : self.n_out]


class EMLP(nn.Module):
    def __init__(self, rep_in: Rep, rep_out: Rep, hidden: list[Rep], seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        reps = [rep_in, *hidden]
        self.blocks = nn.ModuleList(EMLPBlock(a, b, rng) for a, b in zip(reps, reps[1:]))
        self.out = EquivariantLinear(reps[-1], rep_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.out(x)
