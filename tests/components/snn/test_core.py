"""The shared SNN core: parity with SpikingJelly's neurons, no state between calls, encodings, statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from components.snn import IF, LIF, MultiStep, direct, rate, record_spike_rates, spike

try:  # a test-only dependency: `make setup` installs it with --no-deps (it declares torchvision, tensorboard ...)
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError(
        "spikingjelly is needed for the parity tests: run `make setup` (pip install --no-deps "
        "spikingjelly==2.0.0 loguru)"
    ) from err

SJ_SURROGATES = {
    "sigmoid": sj_surrogate.Sigmoid,
    "atan": sj_surrogate.ATan,
    "triangle": sj_surrogate.PiecewiseQuadratic,
}


def spikes_and_input_grad(node: nn.Module, x: torch.Tensor, weights: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    out = node(x)
    (out * weights).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("decay_input", [False, True])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan", "triangle"])
def test_lif_matches_spikingjelly_forward_and_backward(reset, detach_reset, decay_input, surrogate):
    # catches: a reset one step late (snnTorch's default), a leak applied to the input, wrong surrogate width
    generator = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(6, 8, 32, generator=generator, dtype=torch.float64)
    weights = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    alpha = {"sigmoid": 4.0, "atan": 2.0, "triangle": 1.0}[surrogate]
    ours = LIF(
        tau=2.0, reset=reset, decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, alpha=alpha
    )
    theirs = sj_neuron.LIFNode(
        tau=2.0,
        decay_input=decay_input,
        v_reset=None if reset == "soft" else 0.0,
        detach_reset=detach_reset,
        surrogate_function=SJ_SURROGATES[surrogate](alpha=alpha),
        step_mode="m",
    )
    s_ours, g_ours = spikes_and_input_grad(ours, x, weights)
    s_theirs, g_theirs = spikes_and_input_grad(theirs, x, weights)
    assert 0.05 < s_ours.mean() < 0.95  # both regimes (firing and silent) are exercised
    torch.testing.assert_close(s_ours, s_theirs, rtol=0, atol=0)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)


def test_if_matches_spikingjelly():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, 16, generator=generator, dtype=torch.float64)
    weights = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    theirs = sj_neuron.IFNode(v_reset=0.0, surrogate_function=sj_surrogate.Sigmoid(alpha=4.0), step_mode="m")
    s_ours, g_ours = spikes_and_input_grad(IF(reset="hard"), x, weights)
    s_theirs, g_theirs = spikes_and_input_grad(theirs, x, weights)
    torch.testing.assert_close(s_ours, s_theirs, rtol=0, atol=0)
    torch.testing.assert_close(g_ours, g_theirs)


def test_no_state_survives_a_call():
    # catches the most common SNN bug: a membrane kept on the module and carried into the next batch
    node = LIF()
    a, b = torch.randn(4, 3, 10), torch.randn(4, 3, 10)
    alone = node(b)
    node(a)
    torch.testing.assert_close(node(b), alone, rtol=0, atol=0)
    assert not list(node.buffers())


def test_soft_reset_subtracts_threshold_and_hard_reset_sets_v_reset():
    x = torch.tensor([[1.5], [0.0], [0.0]])  # one spike at t=0, then only leak
    _, h_soft = LIF(tau=2.0, reset="soft")(x, return_membrane=True)
    _, h_hard = LIF(tau=2.0, reset="hard", v_reset=-0.2)(x, return_membrane=True)
    assert torch.allclose(h_soft[:, 0], torch.tensor([1.5, 0.25, 0.125]))  # (1.5 - 1) * 0.5, then * 0.5
    # hard: V starts at v_reset, the leak pulls towards it, and after the spike V is v_reset exactly
    assert torch.allclose(h_hard[:, 0], torch.tensor([-0.2 + 1.5, -0.2, -0.2]))


def test_detach_state_cuts_gradients_through_time():
    # step t's spikes depend on x[t'<t] only through V[t-1]; detached, that gradient must vanish
    x = torch.full((3, 1, 1), 0.8, requires_grad=True)
    LIF(detach_state=True)(x)[2].sum().backward()
    assert x.grad[0].abs().sum() == 0 and x.grad[1].abs().sum() == 0 and x.grad[2].abs().sum() > 0
    x.grad = None
    LIF(detach_state=False)(x)[2].sum().backward()
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize(
    "surrogate,primitive,alpha",
    [
        ("sigmoid", lambda x, a: torch.sigmoid(a * x), 4.0),
        ("atan", lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5, 2.0),
    ],
)
def test_surrogate_is_the_derivative_of_its_primitive(surrogate, primitive, alpha):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    spike(x, surrogate, alpha).sum().backward()
    expected = torch.autograd.functional.jacobian(lambda v: primitive(v, alpha).sum(), x.detach())
    torch.testing.assert_close(x.grad, expected)
    assert torch.equal(spike(x.detach(), surrogate, alpha), (x.detach() >= 0).double())


def test_encodings():
    x = torch.rand(5, 7)
    assert torch.equal(direct(x, 3), x.expand(3, 5, 7))
    generator = torch.Generator().manual_seed(0)
    coded = rate(torch.full((20000,), 0.3), 4, generator)
    assert set(coded.unique().tolist()) == {0.0, 1.0} and abs(coded.mean().item() - 0.3) < 0.01
    again = rate(torch.full((20000,), 0.3), 4, torch.Generator().manual_seed(0))
    assert torch.equal(coded, again)
    with pytest.raises(ValueError, match="rate coding needs intensities"):
        rate(torch.tensor([1.5]), 2)


def test_spike_rates_are_counted_per_layer_and_hooks_leave():
    model = nn.Sequential(MultiStep(nn.Identity()), LIF(tau=2.0))
    x = torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]]])  # neuron 0 fires every step, neuron 1 never
    with record_spike_rates(model) as stats:
        model(x)
    assert stats.rates() == {"1": 0.5} and stats.overall() == 0.5
    assert not model[1]._forward_hooks


def test_multistep_equals_per_step_application():
    torch.manual_seed(0)
    linear = nn.Linear(6, 3)
    x = torch.randn(4, 5, 6)
    torch.testing.assert_close(MultiStep(linear)(x), torch.stack([linear(step) for step in x]))
