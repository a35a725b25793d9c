"""The pyramid sampler (Euler per stage, block-noise jumps between stages), autoregressive video generation
with a clean temporal-pyramid history, a full-resolution flow sampler for the cost comparison, and the
closed-form oracle velocity of one clean latent (pyramid_flow.md §6 check 5).

A velocity function is v(z, k, r, tau): the state z at stage k's resolution, the local ratio r and the
model time tau -> dz/dr, so an Euler step is z + (r_next - r) v (r decreases from 1 to 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from components.pyramid_flow.model import PyramidDiT
from components.pyramid_flow.pyramid import (
    history_levels,
    jump,
    latent_pyramid,
    noise_pyramid,
    patchify,
    unpatchify,
    up,
)
from components.pyramid_flow.schedule import StageTable

Velocity = Callable[[torch.Tensor, int, float, float], torch.Tensor]


def stage_grid(table: StageTable, k: int, steps: int) -> tuple[list[float], list[float]]:
    """Local ratios linspace(1, 1/T, N) then 0 (N + 1 values), and model times linspace(tau(0), tau(T-1), N)."""
    last = 1.0 - (table.train_timesteps - 1) / table.train_timesteps
    ratios = np.linspace(1.0, last, steps).tolist() + [0.0]
    first_tau = table.tau(k, torch.tensor(0)).item()
    last_tau = table.tau(k, torch.tensor(table.train_timesteps - 1)).item()
    return ratios, np.linspace(first_tau, last_tau, steps).tolist()


def sample_unit(
    velocity: Velocity,
    table: StageTable,
    steps: Sequence[int],
    shape: tuple[int, ...],
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> torch.Tensor:
    """One unit through all stages: n_0 (a full-res draw downsampled with the x2 factor), Euler inside each
    stage, a jump into the next. Returns the full-resolution result [B, C, H, W]."""
    z = noise_pyramid(torch.randn(shape, generator=generator, dtype=dtype), table.stages)[0].to(device)
    for k in range(table.stages):
        if k > 0:
            z = jump(z, k, table, generator)
        ratios, taus = stage_grid(table, k, steps[k])
        for i, tau in enumerate(taus):
            z = z + (ratios[i + 1] - ratios[i]) * velocity(z, k, ratios[i], tau)
    return z


def sample_fullres(
    velocity: Velocity,
    steps: int,
    shape: tuple[int, ...],
    generator: torch.Generator,
    train_timesteps: int = 1000,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> torch.Tensor:
    """The baseline: one flow from pure noise to data at full resolution, `steps` Euler steps (the model is
    queried as at the last stage; only its cost is compared)."""
    z = torch.randn(shape, generator=generator, dtype=dtype).to(device)
    ratios = np.linspace(1.0, 1.0 / train_timesteps, steps).tolist() + [0.0]
    taus = np.linspace(float(train_timesteps), 1.0, steps).tolist()
    for i, tau in enumerate(taus):
        z = z + (ratios[i + 1] - ratios[i]) * velocity(z, -1, ratios[i], tau)
    return z


def oracle_velocity(x1: torch.Tensor, table: StageTable) -> Velocity:
    """The exact conditional velocity for one clean latent x1 [..., C, H, W]: inside stage k the state is
    [r s + (1-r) e] n_k + r (1-s) Up(L_{k-1}) + (1-r)(1-e) L_k, affine in the shared noise n_k, so solve for
    n_k and return S_k - E_k (s_0 = 1 and e_{K-1} = 0 make the first and last stages the same formula)."""
    clean = latent_pyramid(x1, table.stages)

    def velocity(z: torch.Tensor, k: int, r: float, tau: float) -> torch.Tensor:
        s, e = table.start[k], table.end[k]
        previous = up(clean[k - 1]) if k > 0 else torch.zeros_like(clean[k])
        noise = (z - r * (1 - s) * previous - (1 - r) * (1 - e) * clean[k]) / (r * s + (1 - r) * e)
        return (s * noise + (1 - s) * previous) - (e * noise + (1 - e) * clean[k])

    return velocity


def model_velocity(model: PyramidDiT, table: StageTable, history: torch.Tensor | None, unit: int) -> Velocity:
    """The DiT as a velocity for unit `unit` of a batch, with clean history [B, unit, C, H, W] (a temporal
    pyramid: unit-1 at the stage's level, unit-2 one level lower, ..., older units at level 0)."""
    layout = model.layout
    cache: dict[int, tuple] = {}

    def velocity(z: torch.Tensor, k: int, r: float, tau: float) -> torch.Tensor:
        k = k % table.stages  # -1: the full-resolution baseline
        count = z.shape[0]
        if k not in cache:
            tokens = patchify(z, layout.patch).cpu()
            samples = []
            levels = history_levels(k, unit)
            pyramid = latent_pyramid(history.cpu(), table.stages) if unit else None
            for b in range(count):
                blocks = [(patchify(pyramid[level][b, u], layout.patch), level, u) for u, level in enumerate(levels)]
                samples.append(blocks + [(tokens[b], k, unit)])
            cache[k] = (layout.pack(samples, model.frames).to(z.device), tokens.shape[1])
        packed, n = cache[k]
        packed.tokens[:, -n:] = patchify(z, layout.patch)
        out = model(packed, torch.full((count,), tau, dtype=z.dtype, device=z.device))
        return unpatchify(out[:, -n:].to(z.dtype), layout.patch, z.shape[-3], z.shape[-2], z.shape[-1])

    return velocity


@torch.no_grad()
def generate(
    model: PyramidDiT,
    table: StageTable,
    count: int,
    units: int,
    channels: int,
    first_steps: Sequence[int],
    video_steps: Sequence[int],
    generator: torch.Generator,
    device: str = "cpu",
) -> torch.Tensor:
    """Autoregressive clips [count, units, C, H, W]: unit 0 as an image, then each unit conditioned on the
    clean (generated) history."""
    height, width = model.layout.sizes[-1]
    generated: list[torch.Tensor] = []
    for unit in range(units):
        history = torch.stack(generated, dim=1) if generated else None
        steps = first_steps if unit == 0 else video_steps
        velocity = model_velocity(model, table, history, unit)
        generated.append(
            sample_unit(velocity, table, steps, (count, channels, height, width), generator, device=device)
        )
    return torch.stack(generated, dim=1)


@torch.no_grad()
def sampling_cost(
    model: PyramidDiT, table: StageTable, channels: int, steps: int, device: str = "cpu"
) -> dict[str, float]:
    """Model FLOPs of the pyramid sampler (unit 0, N steps per stage) against a full-res flow with K N steps,
    and the predicted ratio sum_k F(n_k) / (K F(n_{K-1})) with F(n) = n c_lin + n^2 c_attn per layer."""
    height, width = model.layout.sizes[-1]
    shape = (1, channels, height, width)
    counts = []
    for run in ("pyramid", "fullres"):
        generator = torch.Generator().manual_seed(0)
        velocity = model_velocity(model, table, None, 0)
        with FlopCounterMode(display=False) as counter:
            if run == "pyramid":
                sample_unit(velocity, table, [steps] * table.stages, shape, generator, device=device)
            else:
                sample_fullres(velocity, steps * table.stages, shape, generator, table.train_timesteps, device=device)
        counts.append(float(counter.get_total_flops()))
    c_lin, c_attn = model.flops_per_layer()
    cost = [n * c_lin + n * n * c_attn for n in model.layout.tokens]
    predicted = sum(cost) / (table.stages * cost[-1])
    return {
        "sample/flops_pyramid": counts[0],
        "sample/flops_fullres": counts[1],
        "sample/flops_ratio_vs_fullres": counts[0] / counts[1],
        "sample/flops_ratio_predicted": predicted,
        "sample/flops_ratio_linear_only": sum(model.layout.tokens) / (table.stages * model.layout.tokens[-1]),
    }
