"""Spike-rate statistics for energy estimates, collected by forward hooks (the neurons keep no state)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import nn

from components.snn.neuron import LIF


@dataclass
class SpikeRates:
    """Per neuron layer: spikes emitted and neuron-steps seen, summed over the forward calls recorded."""

    spikes: dict[str, float] = field(default_factory=dict)
    neuron_steps: dict[str, float] = field(default_factory=dict)

    def rates(self) -> dict[str, float]:
        """Mean firing rate per layer: spikes per neuron per time step, in [0, 1]."""
        return {name: self.spikes[name] / self.neuron_steps[name] for name in self.spikes if self.neuron_steps[name]}

    def overall(self) -> float:
        total = sum(self.neuron_steps.values())
        return sum(self.spikes.values()) / total if total else 0.0


@contextmanager
def record_spike_rates(model: nn.Module) -> Iterator[SpikeRates]:
    """`with record_spike_rates(model) as stats: model(x)`, then `stats.rates()`."""
    stats = SpikeRates()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, LIF):

            def hook(module: nn.Module, inputs: tuple, output, name: str = name) -> None:
                spikes = output[0] if isinstance(output, tuple) else output
                stats.spikes[name] = stats.spikes.get(name, 0.0) + float(spikes.detach().sum())
                stats.neuron_steps[name] = stats.neuron_steps.get(name, 0.0) + spikes.numel()

            handles.append(module.register_forward_hook(hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
