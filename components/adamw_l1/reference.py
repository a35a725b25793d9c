"""AdamW written out step by step (adamw_l1.md §3.2): the naive reference the optimizer table's `adamw`
(torch.optim.AdamW) is checked against.

PyTorch's order, which the measurement runs use:
    x <- (1 - eta lambda) x                              decoupled decay on the pre-step x
    m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2
    x <- x - eta m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^k),  v_hat = v / (1 - beta2^k)
With bias_correction=False it is the update as the theorem writes it up to the O(eta^2 lambda) ordering
(whether the paper's theorem keeps bias correction is not verified).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class ReferenceAdamW:
    def __init__(
        self,
        groups: Iterable[dict],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        bias_correction: bool = True,
    ):
        self.groups = [
            {"params": list(group["params"]), "weight_decay": float(group["weight_decay"])} for group in groups
        ]
        self.lr, self.betas, self.eps, self.bias_correction = lr, betas, eps, bias_correction
        self.steps = 0
        self.m: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        first = 1.0 - beta1**self.steps if self.bias_correction else 1.0
        second = 1.0 - beta2**self.steps if self.bias_correction else 1.0
        for group in self.groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                m = self.m.setdefault(id(param), torch.zeros_like(param))
                v = self.v.setdefault(id(param), torch.zeros_like(param))
                param.mul_(1.0 - self.lr * group["weight_decay"])
                m.mul_(beta1).add_((1.0 - beta1) * grad)
                v.mul_(beta2).add_((1.0 - beta2) * grad * grad)
                param.sub_(self.lr * (m / first) / ((v / second).sqrt() + self.eps))

    def zero_grad(self) -> None:
        for group in self.groups:
            for param in group["params"]:
                param.grad = None
