"""adamw_l1.md §6 check 4: AdamW with the theorem's horizon-dependent hyper-parameters on a stochastic
diagonal quadratic, where the true gradient is known exactly.

f(x) = 0.5 sum_i lambda_i x_i^2 with lambda log-uniform in [lambda_min, lambda_max]; the optimizer sees
g_k = lambda * x_k + sigma xi_k, xi_k ~ N(0, I). For a horizon K: beta1 = 1 - 1/sqrt(K), beta2 = 1 - 1/K,
eta = eta0 / K^{3/4} (the template of the sister LION analysis). The measured quantity is the averaged
true-gradient l1 norm (1/K) sum_{k=1..K} ||lambda * x_k||_1 over the iterates the optimizer visits.
"""

from __future__ import annotations

import math

import torch


def curvatures(dim: int, low: float, high: float) -> torch.Tensor:
    """The dim quantiles of the log-uniform law on [low, high] (a deterministic grid, float64)."""
    return torch.logspace(math.log10(low), math.log10(high), dim, dtype=torch.float64)


def hyper_parameters(horizon: int, eta0: float) -> dict[str, float]:
    return {"lr": eta0 / horizon**0.75, "beta1": 1.0 - 1.0 / math.sqrt(horizon), "beta2": 1.0 - 1.0 / horizon}


def averaged_l1(
    horizon: int,
    *,
    dim: int,
    low: float,
    high: float,
    noise: float,
    eta0: float,
    x0: float,
    weight_decay: float,
    seed: int,
) -> float:
    """(1/K) sum_{k=1..K} ||grad f(x_k)||_1 for one run of torch.optim.AdamW over K steps."""
    lam = curvatures(dim, low, high)
    x = torch.full((dim,), x0, dtype=torch.float64, requires_grad=True)
    hp = hyper_parameters(horizon, eta0)
    optimizer = torch.optim.AdamW(
        [x], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=1e-8, weight_decay=weight_decay
    )
    generator = torch.Generator().manual_seed(seed * 1_000_003 + horizon)  # one noise stream per (seed, K)
    total = 0.0
    for _ in range(horizon):
        with torch.no_grad():
            true_grad = lam * x
            total += float(true_grad.abs().sum())
            x.grad = true_grad + noise * torch.randn(dim, dtype=torch.float64, generator=generator)
        optimizer.step()
    return total / horizon
