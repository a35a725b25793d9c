"""A plain-numpy float64 LION (lion.md §3.1), independent of torch, to test the core optimizer against.

`order` and `decay` reproduce the two mistakes the spec warns about, so the tests can show that their
checks tell the right algorithm from the wrong ones:
  order="momentum_first": m is updated before c is formed (c uses the NEW momentum);
  decay="coupled": lambda x is added to the gradient before the sign (L2, not decoupled decay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass
class ReferenceLion:
    lr: float
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    order: Literal["spec", "momentum_first"] = "spec"
    decay: Literal["decoupled", "coupled"] = "decoupled"
    state: dict[int, np.ndarray] = field(default_factory=dict)

    def step(self, x: np.ndarray, grad: np.ndarray, key: int = 0, lr: float | None = None) -> np.ndarray:
        """The next iterate; x and grad are float64 arrays, key names the tensor whose momentum is used."""
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        grad = np.asarray(grad, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        if self.decay == "coupled":
            grad = grad + self.weight_decay * x
        m = self.state.get(key, np.zeros_like(x))
        if self.order == "momentum_first":
            m = beta2 * m + (1.0 - beta2) * grad
        c = beta1 * m + (1.0 - beta1) * grad
        if self.decay == "decoupled":
            x_next = x - lr * (np.sign(c) + self.weight_decay * x)
        else:
            x_next = x - lr * np.sign(c)
        if self.order == "spec":
            m = beta2 * m + (1.0 - beta2) * grad
        self.state[key] = m
        return x_next


def two_gradient_trajectory(step) -> list[float]:
    """lion.md §6 check 1: scalar x_0 = 0, eta = 1, lambda = 0, betas (0.9, 0.99), gradients 1.0 then -0.085.

    `step(x, g) -> x_next` is one optimizer step. The spec's LION gives [-1, -2] (c_2 = +0.0005 with the
    old momentum); forming c with the already-updated momentum gives c_2 < 0 and [-1, 0].
    """
    x, path = 0.0, []
    for grad in (1.0, -0.085):
        x = float(step(x, grad))
        path.append(x)
    return path
