"""The online SNN core (components/snn/online.py): parity of the per-step LIF with the multi-step LIF in OTTT's
mode, and of the trace-based weight gradient with BPTT through the leak (reset detached), for linear and conv
synapses; traces, and no state between batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from components.snn import LIF
from components.snn.online import OnlineLIF, OnlineState, traced_conv2d, traced_linear

T = 6


def test_online_lif_matches_multistep_lif_forward_and_input_gradient():
    # the per-step neuron is the multi-step LIF with detached state and reset, step by step: same spikes, same
    # membranes, and the gradient reaching each step's current is psi(H[t]) times the gradient at its spikes
    torch.manual_seed(0)
    currents = (torch.rand(T, 8, 20, dtype=torch.float64) * 1.6).requires_grad_(True)
    weights = torch.randn(T, 8, 20, dtype=torch.float64)
    reference = LIF(tau=2.0, reset="soft", detach_reset=True, detach_state=True, surrogate="sigmoid", alpha=4.0)
    spikes_ref, membranes_ref = reference(currents, return_membrane=True)
    (spikes_ref * weights).sum().backward()
    grad_ref = currents.grad.clone()
    currents.grad = None

    neuron, state = OnlineLIF(tau=2.0, v_threshold=1.0, surrogate="sigmoid", alpha=4.0), OnlineState()
    spikes, membranes = zip(*(neuron.step(state, "l", currents[t]) for t in range(T)))
    spikes, membranes = torch.stack(spikes), torch.stack(membranes)
    (spikes * weights).sum().backward()
    assert torch.equal(spikes.detach(), spikes_ref.detach()) and 0.1 < spikes.mean() < 0.9
    torch.testing.assert_close(membranes.detach(), membranes_ref.detach())
    torch.testing.assert_close(currents.grad, grad_ref)
    torch.testing.assert_close(currents.grad, weights * neuron.surrogate_derivative(membranes.detach()))


def test_trace_is_the_leaky_sum_of_inputs():
    torch.manual_seed(1)
    inputs, state = torch.rand(T, 3, 4), OnlineState()
    traces = [state.trace("x", inputs[t], 0.5) for t in range(T)]
    for t in range(T):
        expected = sum(0.5 ** (t - k) * inputs[k] for k in range(t + 1))
        torch.testing.assert_close(traces[t], expected)


def bptt_reference_grad(synapse, weight: torch.Tensor, inputs: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
    """dL/dW by autograd through time: LIF with the membrane kept in the graph, the reset detached (OTTT's
    exactness condition for one layer), L = sum_t <s[t], r[t]>."""
    weight = weight.detach().clone().requires_grad_(True)
    currents = torch.stack([synapse(inputs[t], weight) for t in range(T)])
    lif = LIF(tau=2.0, reset="soft", detach_reset=True, detach_state=False, surrogate="sigmoid", alpha=4.0)
    (lif(currents) * readout).sum().backward()
    return weight.grad


def online_grad(traced, weight: torch.Tensor, inputs: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
    weight = weight.detach().clone().requires_grad_(True)
    neuron, state = OnlineLIF(tau=2.0), OnlineState()
    for t in range(T):
        trace = state.trace("in", inputs[t], neuron.decay)
        s, _ = neuron.step(state, "lif", traced(inputs[t], trace, weight))
        (s * readout[t]).sum().backward()  # one backward per step: nothing is kept across time
    return weight.grad


def test_traced_linear_gradient_equals_bptt_through_the_leak():
    torch.manual_seed(2)
    inputs = (torch.rand(T, 5, 12) < 0.4).double()
    weight = torch.randn(9, 12, dtype=torch.float64) * 0.6
    readout = torch.randn(T, 5, 9, dtype=torch.float64)
    expected = bptt_reference_grad(lambda x, w: F.linear(x, w), weight, inputs, readout)
    got = online_grad(lambda x, trace, w: traced_linear(x, trace, w), weight, inputs, readout)
    torch.testing.assert_close(got, expected)
    # negative control: the plain synapse (input instead of trace) gives another gradient
    plain = online_grad(lambda x, trace, w: F.linear(x, w), weight, inputs, readout)
    assert (plain - expected).abs().max() > 1e-3


def test_traced_conv2d_gradient_equals_bptt_through_the_leak():
    torch.manual_seed(3)
    inputs = (torch.rand(T, 2, 3, 6, 6) < 0.4).double()
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64) * 0.5
    readout = torch.randn(T, 2, 4, 6, 6, dtype=torch.float64)
    expected = bptt_reference_grad(lambda x, w: F.conv2d(x, w, padding=1), weight, inputs, readout)
    got = online_grad(lambda x, trace, w: traced_conv2d(x, trace, w, padding=1), weight, inputs, readout)
    torch.testing.assert_close(got, expected)


def test_traced_synapses_pass_the_ordinary_input_gradient_and_bias_gradient():
    torch.manual_seed(4)
    x = torch.rand(3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    trace = torch.rand(3, 2, 5, 5, dtype=torch.float64)
    weight = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    out = traced_conv2d(x, trace, weight, bias, padding=1)
    torch.testing.assert_close(out, F.conv2d(x, weight, bias, padding=1))
    out.backward(grad_out)
    x_ref = x.detach().clone().requires_grad_(True)
    bias_ref = bias.detach().clone().requires_grad_(True)
    F.conv2d(x_ref, weight.detach(), bias_ref, padding=1).backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(bias.grad, bias_ref.grad)
    with pytest.raises(ValueError, match="trace shape"):
        traced_linear(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(5, 3))


def test_state_is_per_batch():
    # a fresh OnlineState starts from rest: the same input gives the same spikes whatever ran before
    torch.manual_seed(5)
    neuron = OnlineLIF()
    x = torch.rand(4, 10) * 2
    first = [neuron.step(state, "l", x)[0] for state in [OnlineState()] for _ in range(3)]
    busy = OnlineState()
    for _ in range(5):
        neuron.step(busy, "l", torch.rand(4, 10) * 3)
    again = [neuron.step(state, "l", x)[0] for state in [OnlineState()] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="tau"):
        OnlineLIF(tau=1.0)
