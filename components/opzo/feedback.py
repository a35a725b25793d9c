"""The pseudo-zeroth-order feedback (opzo.md §3.2-3.4) and the baselines' hidden-layer errors.

OPZO: one noisy forward pass gives z_l o~^T / alpha, an estimate of J_l^T (the transposed Jacobian from hidden
layer l to the output); a momentum average over steps is the learned direct feedback matrix M_l, and the output
error e = dL/do~ (closed form) goes to every layer at once: g_l = M_l e. DFA uses a fixed random B_l instead of
M_l; ZOsp correlates the scalar loss with the noise, g_l = z_l L(o~) / alpha.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_noise(
    shape: tuple[int, ...], dist: str, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """z with E[z z^T] = I per sample: N(0, I), Rademacher +-1, or uniform on the sphere of radius sqrt(n)."""
    if dist == "gaussian":
        return torch.randn(shape, generator=generator, device=device)
    if dist == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=device).float() * 2 - 1
    if dist == "sphere":
        z = torch.randn(shape, generator=generator, device=device).flatten(1)
        z = z / z.norm(dim=1, keepdim=True) * math.sqrt(z.shape[1])
        return z.reshape(shape)
    raise ValueError(f"unknown noise distribution '{dist}': use gaussian, rademacher or sphere")


def output_error(out: torch.Tensor, labels: torch.Tensor, mse_weight: float, steps: int) -> torch.Tensor:
    """e[t] = dL[t]/do[t] per sample, L[t] = ((1 - c) CE(o, y) + c MSE(o, onehot y)) / T (MSE averaged over the
    classes, as OTTT's F.mse_loss): (1 - c)(softmax(o) - y) + c 2 (o - y) / m, all over T."""
    onehot = F.one_hot(labels, out.shape[1]).to(out.dtype)
    error = (1 - mse_weight) * (out.softmax(dim=1) - onehot) + mse_weight * 2 * (out - onehot) / out.shape[1]
    return error / steps


def per_sample_loss(out: torch.Tensor, labels: torch.Tensor, mse_weight: float, steps: int) -> torch.Tensor:
    """L[t] per sample, the loss whose gradient output_error is."""
    onehot = F.one_hot(labels, out.shape[1]).to(out.dtype)
    ce = F.cross_entropy(out, labels, reduction="none")
    mse = ((out - onehot) ** 2).mean(dim=1)
    return ((1 - mse_weight) * ce + mse_weight * mse) / steps


def jacobian_estimate(noise: torch.Tensor, noisy_out: torch.Tensor, noise_scale: float) -> torch.Tensor:
    """The single-point estimate (1/B) sum_b z_b o~_b^T / alpha of J^T (n x m): E = J^T to first order."""
    return noise.flatten(1).T @ noisy_out / (noise.shape[0] * noise_scale)


def update_feedback(
    matrix: torch.Tensor, noise: torch.Tensor, noisy_out: torch.Tensor, noise_scale: float, momentum: float
) -> torch.Tensor:
    """M <- lambda M + (1 - lambda) (1/B) sum_b z_b o~_b^T / alpha, in place; returns M."""
    matrix.mul_(momentum).add_(jacobian_estimate(noise, noisy_out, noise_scale), alpha=1 - momentum)
    return matrix


def top_down(matrix: torch.Tensor, error: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """g_l = M_l e for every sample, shaped like the layer's neurons: [B, *shape]."""
    return (error @ matrix.T).reshape(error.shape[0], *shape)


def zo_signal(noise: torch.Tensor, loss: torch.Tensor, noise_scale: float) -> torch.Tensor:
    """ZOsp's g_l = z_l L(o~) / alpha per sample."""
    return noise * loss.reshape(-1, *([1] * (noise.dim() - 1))) / noise_scale


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    denominator = a.norm() * b.norm()
    return float(a @ b / denominator) if denominator > 0 else 0.0
