"""The spiking MLP of HLOP's PMNIST setting (hlop.md §3.5-3.6): bias-free linear layers, multi-step LIF neurons
(BPTT + sigmoid surrogate, soft reset, detached reset), direct coding, readout = the last layer's output averaged
over T. Every linear layer goes through the projected-gradient op with its layer's old subspace."""

from __future__ import annotations

import torch
from torch import nn

from components.hlop.config import Config
from components.hlop.projection import projected_linear
from components.snn import LIF, direct


class SpikingMLP(nn.Module):
    def __init__(self, cfg: Config, inputs: int, classes: int) -> None:
        super().__init__()
        widths = [inputs, *cfg.hidden, classes]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        self.neuron = LIF(
            tau=cfg.tau,
            v_threshold=cfg.v_threshold,
            reset="soft",
            decay_input=False,
            detach_reset=True,
            surrogate="sigmoid",
            alpha=cfg.surrogate_alpha,
        )
        self.steps, self.input_gain, self.projection = cfg.steps, cfg.input_gain, cfg.projection
        self.bases: list[torch.Tensor | None] = [None] * len(self.layers)  # each layer's frozen old subspace

    @property
    def input_dims(self) -> list[int]:
        """The presynaptic width of each layer: one HLOP module per layer."""
        return [layer.in_features for layer in self.layers]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """images [B, ...] in [0, 1] -> (logits [B, classes], each layer's presynaptic activity [T, B, n_in]).

        The forward is the plain network: the bases only change the weight gradients."""
        x = direct(images.flatten(1) * self.input_gain, self.steps)
        activities = []
        for index, layer in enumerate(self.layers):
            activities.append(x.detach())
            current = projected_linear(x, layer.weight, self.bases[index], self.projection)
            x = self.neuron(current) if index < len(self.layers) - 1 else current
        return x.mean(dim=0), activities


def build_model(cfg: Config, inputs: int, classes: int) -> SpikingMLP:
    return SpikingMLP(cfg, inputs, classes)
