"""Behaviour cloning on a chosen feature set (digic.md §3.3): an MLP (hidden x hidden, ReLU) trained full-batch
with Adam on MSE (continuous action) or cross-entropy (discrete action), or ordinary least squares. Inputs are
standardised with the demonstrations' own statistics, which the policy carries to every other domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def build_policy(inputs: int, hidden: int, outputs: int) -> torch.nn.Module:
    """pi_theta: the spec's 2-hidden-layer ReLU MLP (2 x 64 smoke, 2 x 256 full scale)."""
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, outputs),
    )


@dataclass
class Policy:
    """A trained policy over columns `columns` of the feature table."""

    columns: tuple[int, ...]
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]] | None  # the MLP's (weight, bias) pairs; None: least squares
    weights: np.ndarray | None
    discrete: bool

    def inputs(self, features: np.ndarray) -> np.ndarray:
        return (features[:, list(self.columns)] - self.mean) / self.scale

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The action: a real number (continuous) or a class index (discrete)."""
        x = self.inputs(np.atleast_2d(features))
        if self.layers is None:
            return np.column_stack([x, np.ones(len(x))]) @ self.weights
        out = x
        for depth, (weight, bias) in enumerate(self.layers):  # numpy: a closed-loop step is one row, torch's
            out = out @ weight.T + bias  # per-call overhead would dominate the rollouts
            if depth < len(self.layers) - 1:
                out = np.maximum(out, 0.0)
        return out.argmax(axis=1) if self.discrete else out[:, 0]


def fit(
    features: np.ndarray,
    action: np.ndarray,
    columns: Sequence[int],
    *,
    kind: str,
    hidden: int,
    steps: int,
    lr: float,
    discrete: bool,
    seed: int,
) -> Policy:
    """BC of `action` on features[:, columns]; kind "mlp" or "linear" (least squares, continuous actions only)."""
    columns = tuple(columns)
    chosen = features[:, list(columns)]
    mean = chosen.mean(axis=0) if columns else np.zeros(0)
    scale = chosen.std(axis=0) if columns else np.ones(0)
    scale = np.where(scale > 0, scale, 1.0)
    x = (chosen - mean) / scale
    if kind == "linear":
        design = np.column_stack([x, np.ones(len(x))])
        weights, *_ = np.linalg.lstsq(design, action, rcond=None)
        return Policy(columns, mean, scale, None, weights, discrete=False)
    torch.manual_seed(seed)
    model = build_policy(len(columns), hidden, 2 if discrete else 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    inputs = torch.from_numpy(x).float()
    target = torch.from_numpy(action).long() if discrete else torch.from_numpy(action).float()
    for _ in range(steps):
        out = model(inputs)
        loss = F.cross_entropy(out, target) if discrete else F.mse_loss(out[:, 0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    layers = [
        (m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
        for m in model
        if isinstance(m, torch.nn.Linear)
    ]
    return Policy(columns, mean, scale, layers, None, discrete)


def mse(policy: Policy, features: np.ndarray, action: np.ndarray) -> float:
    return float(np.mean((policy.predict(features) - action) ** 2))


def accuracy(policy: Policy, features: np.ndarray, action: np.ndarray) -> float:
    return float(np.mean(policy.predict(features) == action))
