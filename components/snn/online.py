"""Online (per-step) spiking layers with OTTT semantics, for learning rules that update at every time step
(OTTT, OPZO, HLOP-style local rules).

The multi-step LIF of neuron.py runs a whole [T, batch, ...] sequence in one call. Online training instead
runs one step at a time and never backpropagates through time:

    H[t] = decay V[t-1] + I[t]              (V[t-1] detached: no gradient through time)
    S[t] = Heaviside(H[t] - v_threshold)    (surrogate derivative backward)
    V[t] = H[t] - v_threshold S[t]          (soft reset, detached)

and the temporal credit that BPTT would carry through the leak is carried forward instead by the presynaptic
trace a[t] = decay a[t-1] + x[t] (OTTT, Xiao et al. 2022): a synapse's weight gradient at step t is
delta[t] a[t]^T, where delta[t] is the gradient at its output current. `traced_linear` / `traced_conv2d` compute
the synapse on the actual input x[t] forward and use the trace for the weight gradient backward; with a single
layer this is exactly BPTT through the leak with the reset detached (tests/components/snn/test_online.py).

State lives in an explicit `OnlineState` that the caller creates per batch: nothing survives between batches
unless the caller keeps it on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from components.snn.surrogate import SURROGATES, spike


@dataclass
class OnlineState:
    """Per-batch state of an online network: membranes (after reset) and traces, by layer name."""

    membranes: dict[str, torch.Tensor] = field(default_factory=dict)
    traces: dict[str, torch.Tensor] = field(default_factory=dict)

    def membrane(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """V[t-1] of layer `name` (zeros at the first step), always detached."""
        previous = self.membranes.get(name)
        return torch.zeros_like(like) if previous is None else previous.detach()

    def trace(self, name: str, x: torch.Tensor, decay: float) -> torch.Tensor:
        """a[t] = decay a[t-1] + x[t] (a[-1] = 0), stored detached, returned."""
        previous = self.traces.get(name)
        value = x.detach() if previous is None else decay * previous + x.detach()
        self.traces[name] = value
        return value


class OnlineLIF:
    """One LIF step with OTTT semantics (tau = 2, soft reset, detached state and reset; sigmoid-4 surrogate).

    `step(state, name, current)` returns (spikes, H): H is the pre-spike membrane whose surrogate derivative
    psi(H - v_threshold) a local learning rule needs."""

    def __init__(
        self, tau: float = 2.0, v_threshold: float = 1.0, surrogate: str = "sigmoid", alpha: float | None = None
    ) -> None:
        if not tau > 1.0:
            raise ValueError(f"LIF tau must be > 1 (decay 1 - 1/tau in (0, 1)); got {tau}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate '{surrogate}': use one of {', '.join(SURROGATES)}")
        self.tau, self.v_threshold, self.surrogate = tau, v_threshold, surrogate
        self.alpha = SURROGATES[surrogate][1] if alpha is None else alpha

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau

    def step(self, state: OnlineState, name: str, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.decay * state.membrane(name, current) + current
        s = spike(h - self.v_threshold, self.surrogate, self.alpha)
        state.membranes[name] = (h - self.v_threshold * s).detach()
        return s, h

    def surrogate_derivative(self, h: torch.Tensor) -> torch.Tensor:
        """psi(H) = d spike / d H at the pre-spike membrane H."""
        derivative, _ = SURROGATES[self.surrogate]
        return derivative(h - self.v_threshold, self.alpha)


class _TracedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, trace, weight, bias):
        ctx.save_for_backward(trace, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        trace, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad.flatten(0, -2).T @ trace.flatten(0, -2)  # delta a^T: the trace replaces the input
        grad_bias = grad.flatten(0, -2).sum(0) if ctx.has_bias else None
        return grad_x, None, grad_weight, grad_bias


class _TracedConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, trace, weight, bias, stride, padding):
        ctx.save_for_backward(trace, weight)
        ctx.has_bias, ctx.stride, ctx.padding, ctx.input_shape = bias is not None, stride, padding, x.shape
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad):
        trace, weight = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(ctx.input_shape, weight, grad, ctx.stride, ctx.padding)
        grad_weight = torch.nn.grad.conv2d_weight(trace, weight.shape, grad, ctx.stride, ctx.padding)
        grad_bias = grad.sum((0, 2, 3)) if ctx.has_bias else None
        return grad_x, None, grad_weight, grad_bias, None, None


def traced_linear(
    x: torch.Tensor, trace: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x W^T + b forward; backward the weight gradient is delta trace^T (OTTT) and the input gradient W^T delta."""
    if trace.shape != x.shape:
        raise ValueError(f"trace shape {tuple(trace.shape)} differs from input shape {tuple(x.shape)}")
    return _TracedLinear.apply(x, trace.detach(), weight, bias)


def traced_conv2d(
    x: torch.Tensor,
    trace: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """conv2d(x) forward; backward the weight gradient correlates delta with the trace instead of x."""
    if trace.shape != x.shape:
        raise ValueError(f"trace shape {tuple(trace.shape)} differs from input shape {tuple(x.shape)}")
    return _TracedConv2d.apply(x, trace.detach(), weight, bias, stride, padding)
