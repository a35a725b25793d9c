"""The official code's MLP (in -> width -> width -> out), on flattened inputs and outputs."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}


def mlp(inputs: int, outputs: int, width: int, activation: str) -> nn.Module:
    act = ACTIVATIONS[activation]
    return nn.Sequential(nn.Linear(inputs, width), act(), nn.Linear(width, width), act(), nn.Linear(width, outputs))
