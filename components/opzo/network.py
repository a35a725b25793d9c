"""The online spiking network every method shares (opzo.md §3.1): per-step LIF layers with OTTT semantics,
presynaptic traces on every synapse, a non-spiking linear readout whose per-step output o[t] is summed over T
for the prediction, and noise injected into the hidden layers in the same forward pass (§3.2).

FC: input -> [Linear -> LIF] x N -> Linear. Conv (OTTT's VGG style): [weight-standardised 3x3 conv -> LIF ->
x spike_scale (-> 2x2 max-pool)] x N -> global average pool -> Linear. The feedback matrices of OPZO (M_l) and
DFA (B_l) are buffers of the network, so checkpoints and model.safetensors carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from components.snn.online import OnlineLIF, OnlineState, traced_conv2d, traced_linear


def standardise(weight: torch.Tensor, gain: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Scaled weight standardisation (OTTT's ScaledWSConv2d): zero mean, unit fan-in-scaled variance per output."""
    fan_in = weight[0].numel()
    mean = weight.mean(dim=(1, 2, 3), keepdim=True)
    var = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return gain * (weight - mean) / torch.sqrt(var * fan_in + eps)


@dataclass
class Probe:
    """What one step of one hidden layer exposes to a learning rule."""

    current: torch.Tensor  # I_l[t], the synaptic input current (noise included for pre-neuron placement)
    spikes: torch.Tensor  # s_l[t] (clean), differentiable through the surrogate
    membrane: torch.Tensor  # H_l[t], the pre-spike membrane
    noise: torch.Tensor | None  # z_l[t] as injected (shape of the perturbed quantity), None when clean


class OnlineNet(nn.Module):
    def __init__(
        self,
        arch: str,
        input_shape: tuple[int, ...],
        widths: tuple[int, ...],
        classes: int,
        pool_after: tuple[int, ...] = (),
        spike_scale: float = 1.0,
        neuron: OnlineLIF | None = None,
        learned_feedback: bool = False,
    ) -> None:
        super().__init__()
        self.arch, self.classes = arch, classes
        self.neuron = neuron or OnlineLIF()
        self.pool_after = set(pool_after) if arch == "conv" else set()
        self.spike_scale = spike_scale if arch == "conv" else 1.0
        self.weights, self.biases, self.gains = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        self.neuron_shapes: list[tuple[int, ...]] = []  # per-sample shape of s_l
        if arch == "fc":
            fan_in = int(torch.tensor(input_shape).prod())
            for width in widths:
                layer = nn.Linear(fan_in, width)
                nn.init.kaiming_normal_(layer.weight)  # opzo.md §6: Kaiming-normal hidden layers
                self.weights.append(layer.weight)
                self.biases.append(layer.bias)
                self.neuron_shapes.append((width,))
                fan_in = width
            features = fan_in
        elif arch == "conv":
            channels, height, width_px = input_shape
            for index, width in enumerate(widths):
                weight = nn.Parameter(torch.empty(width, channels, 3, 3))
                nn.init.kaiming_normal_(weight)
                self.weights.append(weight)
                self.biases.append(nn.Parameter(torch.zeros(width)))
                self.gains.append(nn.Parameter(torch.ones(width, 1, 1, 1)))
                self.neuron_shapes.append((width, height, width_px))
                if index in self.pool_after:
                    height, width_px = height // 2, width_px // 2
                channels = width
            features = channels
        else:
            raise ValueError(f"unknown arch '{arch}': use fc or conv")
        self.readout = nn.Linear(features, classes)
        for index, shape in enumerate(self.neuron_shapes):  # M_l (OPZO, starts at 0) and B_l (DFA, fixed random)
            size = int(torch.tensor(shape).prod())
            self.register_buffer(f"feedback_{index}", torch.zeros(size, classes))
            self.register_buffer(f"random_feedback_{index}", torch.randn(size, classes) / size**0.5)
            if learned_feedback:  # DKP's B_l: starts as DFA's, then trained by the optimizer (Kolen-Pollack)
                self.register_parameter(f"learned_feedback_{index}", nn.Parameter(self.random_feedback(index).clone()))

    @property
    def depth(self) -> int:
        return len(self.weights)

    def feedback(self, index: int) -> torch.Tensor:
        return getattr(self, f"feedback_{index}")

    def random_feedback(self, index: int) -> torch.Tensor:
        return getattr(self, f"random_feedback_{index}")

    def learned_feedback(self, index: int) -> torch.Tensor:
        return getattr(self, f"learned_feedback_{index}")

    def layer_weight(self, index: int) -> torch.Tensor:
        if self.arch == "conv":
            return standardise(self.weights[index], self.gains[index])
        return self.weights[index]

    def synapse(self, index: int, x: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
        if self.arch == "conv":
            return traced_conv2d(x, trace, self.layer_weight(index), self.biases[index], padding=1)
        return traced_linear(x, trace, self.weights[index], self.biases[index])

    def after_neuron(self, index: int, s: torch.Tensor) -> torch.Tensor:
        """What layer index's output becomes before the next synapse: the spike scale and pooling (conv)."""
        out = s * self.spike_scale if self.spike_scale != 1.0 else s
        return F.max_pool2d(out, 2) if index in self.pool_after else out

    def features(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=(2, 3)) if self.arch == "conv" else h

    def step(
        self,
        x: torch.Tensor,
        state: OnlineState,
        noise: list[torch.Tensor] | None = None,
        noise_scale: float = 0.0,
        noise_pos: str = "post",
        detach_inputs: bool = False,
    ) -> tuple[torch.Tensor, list[Probe]]:
        """One time step: the readout o[t] and each hidden layer's probe. With `noise`, z_l is injected into
        layer l (post: s~ = s + alpha z feeds the next layer; pre: alpha z is added to the input current); the
        traces always see the clean signal. `detach_inputs` cuts every synapse's input from the graph, so a
        backward reaches each layer's own weights only (no spatial backprop)."""
        decay = self.neuron.decay
        h, clean = x, x
        probes = []
        for index in range(self.depth):
            trace = state.trace(f"in{index}", clean, decay)
            current = self.synapse(index, h.detach() if detach_inputs else h, trace)
            z = noise[index] if noise is not None else None
            if z is not None and noise_pos == "pre":
                current = current + noise_scale * z
            s, membrane = self.neuron.step(state, f"lif{index}", current)
            probes.append(Probe(current, s, membrane, z))
            noisy = s + noise_scale * z if z is not None and noise_pos == "post" else s
            h, clean = self.after_neuron(index, noisy), self.after_neuron(index, s.detach())
        h, clean = self.features(h), self.features(clean)
        trace = state.trace("readout", clean, decay)
        out = traced_linear(h.detach() if detach_inputs else h, trace, self.readout.weight, self.readout.bias)
        return out, probes

    def readout_jacobian_t(self) -> torch.Tensor:
        """J^T of o with respect to the last hidden layer's spikes (n_N x m): what M_N estimates. The map from
        s_N to o is linear (scale, pool, average, readout), so its Jacobian is exact and input-independent
        except through max-pooling, which the conv net has after the last layer only if pool_after says so."""
        last = self.depth - 1
        shape = self.neuron_shapes[last]
        s = torch.zeros(1, *shape, device=self.readout.weight.device, requires_grad=True)
        with torch.enable_grad():
            out = self.readout(self.features(self.after_neuron(last, s)))
            rows = [torch.autograd.grad(out[0, k], s, retain_graph=True)[0].flatten() for k in range(self.classes)]
        return torch.stack(rows, dim=1).detach()
