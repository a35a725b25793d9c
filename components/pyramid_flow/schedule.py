"""The stage table of Pyramidal Flow Matching and the renoising jump between stages.

Convention (the official code's, pyramid_flow.md §8): sigma is the NOISE coefficient, a point is
z = sigma * noise + (1 - sigma) * signal, sigma = 1 is pure noise. Stage k of K works at downsample factor
2^(K-1-k); inside it a local ratio r runs from 1 (start point S_k) to 0 (end point E_k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StageTable:
    """Per-stage noise levels, model-time slices and jump coefficients (index k = stage, 0 = lowest resolution).

    start[k] is s_k, the corrected start noise (s_0 = 1); nominal_start[k] the uncorrected grid value e_{k-1};
    end[k] is e_k (e_{K-1} = 0). tau_max[k] / tau_min[k] bound the stage's slice of the global timeline in the
    SD3 timestep scale; the model time at local step i (r = 1 - i/T) is linspace(tau_max, tau_min, T + 1)[i].
    alpha[k], beta[k] are the jump into stage k (NaN for k = 0)."""

    stages: int
    gamma: float
    train_timesteps: int
    start: tuple[float, ...]
    nominal_start: tuple[float, ...]
    end: tuple[float, ...]
    timeline: tuple[tuple[float, float], ...]
    tau_max: tuple[float, ...]
    tau_min: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]

    def downsample(self, k: int) -> int:
        return 2 ** (self.stages - 1 - k)

    def ratio(self, index: torch.Tensor) -> torch.Tensor:
        """The local ratio r = 1 - i/T of training step index i in 0..T-1 (the code's sigmas_per_stage)."""
        return 1.0 - index.to(torch.float64) / self.train_timesteps

    def tau(self, k: int, index: torch.Tensor) -> torch.Tensor:
        """Model time of stage k at step index i: linspace(tau_max, tau_min, T + 1)[i]."""
        fraction = index.to(torch.float64) / self.train_timesteps
        return self.tau_max[k] + (self.tau_min[k] - self.tau_max[k]) * fraction

    def rows(self) -> list[dict[str, float]]:
        return [
            {
                "stage": k,
                "downsample": self.downsample(k),
                "start_noise": self.start[k],
                "nominal_start_noise": self.nominal_start[k],
                "end_noise": self.end[k],
                "path_length": self.start[k] - self.end[k],
                "timeline_start": self.timeline[k][0],
                "timeline_end": self.timeline[k][1],
                "tau_max": self.tau_max[k],
                "tau_min": self.tau_min[k],
                "jump_alpha": self.alpha[k],
                "jump_beta": self.beta[k],
            }
            for k in range(self.stages)
        ]


def global_sigmas(train_timesteps: int = 1000, shift: float = 1.0) -> torch.Tensor:
    """sigma_i = (T - i)/T for i = 0..T-1 (1 down to 1/T), then SD3's shift s sigma / (1 + (s - 1) sigma)."""
    sigmas = torch.arange(train_timesteps, 0, -1, dtype=torch.float64) / train_timesteps
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def jump_coefficients(signal: float, gamma: float) -> tuple[float, float, float]:
    """(alpha, beta, b) for a jump from a state with signal coefficient `a` (pyramid_flow.md §3.5):
    alpha = 1 / (sqrt(1 + 1/gamma) (1 - a) + a), beta = alpha (1 - a) / sqrt(gamma), b = alpha a."""
    a = signal
    alpha = 1.0 / (math.sqrt(1.0 + 1.0 / gamma) * (1.0 - a) + a)
    return alpha, alpha * (1.0 - a) / math.sqrt(gamma), alpha * a


def stage_table(
    stages: int = 3,
    stage_range: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0),
    gamma: float = 1 / 3,
    shift: float = 1.0,
    train_timesteps: int = 1000,
) -> StageTable:
    """Stage windows on the global grid, the corrected starts, and each stage's slice of the model timeline,
    proportional to its path length s_k - e_k (the official scheduler's init_sigmas_for_each_stage)."""
    if len(stage_range) != stages + 1:
        raise ValueError(f"stage_range needs {stages + 1} boundaries for {stages} stages, got {len(stage_range)}")
    if not 0 < gamma <= 1 / 3:
        raise ValueError(f"gamma must lie in (0, 1/3] (the block covariance is not PSD above 1/3), got {gamma}")
    sigmas = global_sigmas(train_timesteps, shift)
    timesteps = sigmas * train_timesteps
    start, nominal, end, alpha, beta = [], [], [], [], []
    for k in range(stages):
        first = max(int(stage_range[k] * train_timesteps), 0)
        last = min(int(stage_range[k + 1] * train_timesteps), train_timesteps)
        nominal_start = sigmas[first].item()
        end.append(sigmas[last].item() if last < train_timesteps else 0.0)
        nominal.append(nominal_start)
        if k == 0:
            start.append(nominal_start)
            alpha.append(math.nan)
            beta.append(math.nan)
        else:
            jump_alpha, jump_beta, signal_start = jump_coefficients(1.0 - nominal_start, gamma)
            start.append(1.0 - signal_start)
            alpha.append(jump_alpha)
            beta.append(jump_beta)
    lengths = [s - e for s, e in zip(start, end)]
    total = sum(lengths)
    timeline, tau_max, tau_min = [], [], []
    for k in range(stages):
        lo = 0.0 if k == 0 else sum(lengths[:k]) / total
        hi = 1.0 if k == stages - 1 else sum(lengths[: k + 1]) / total
        timeline.append((lo, hi))
        tau_max.append(timesteps[int(lo * train_timesteps)].item())
        tau_min.append(timesteps[min(int(hi * train_timesteps), train_timesteps - 1)].item())
    return StageTable(
        stages,
        gamma,
        train_timesteps,
        tuple(start),
        tuple(nominal),
        tuple(end),
        tuple(timeline),
        tuple(tau_max),
        tuple(tau_min),
        tuple(alpha),
        tuple(beta),
    )


def block_sqrt(gamma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The symmetric square root of Sigma = (1 + gamma) I - gamma 1 1^T (4 x 4), in closed form:
    Sigma has eigenvalue 1 - 3 gamma on the block mean and 1 + gamma on its 3-dim complement."""
    mean = torch.full((4, 4), 0.25, dtype=dtype)
    return math.sqrt(1 + gamma) * (torch.eye(4, dtype=dtype) - mean) + math.sqrt(max(1 - 3 * gamma, 0.0)) * mean


def block_noise(
    shape: tuple[int, ...], gamma: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Noise of `shape` [..., H, W] whose 2x2 blocks are i.i.d. MVN(0, Sigma), unit variance, within-block
    correlation -gamma; a block's position (p, q) is entry 2p + q (any consistent order: Sigma is symmetric
    under permuting the four)."""
    *lead, height, width = shape
    eps = torch.randn(*lead, height // 2, width // 2, 4, generator=generator, dtype=torch.float64)
    xi = eps @ block_sqrt(gamma)
    xi = xi.reshape(*lead, height // 2, width // 2, 2, 2).movedim(-2, -3)  # [..., H/2, 2, W/2, 2]
    return xi.reshape(*lead, height, width).to(dtype)
