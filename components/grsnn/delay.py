"""Delayed spike messages with the trace-based delay gradient (grsnn.md §3.3-3.4).

At step t, edge (u, r, v) of channel j delivers s_u[t - 1 - round(d_{r,j})]: a zero delay still costs one step,
and a delay that reaches before step 0 delivers nothing. Rounding has no gradient, so the backward pass
replaces it: dL/dd_{r,j} = sum over the edges of relation r of dL/dm_v[t] * tr_u[t - 1 - round(d)], with the
trace tr_u[k] = -sum_{k' <= k} s_u[k'] kappa'(k - k') (shifting a spike later by delta changes its
post-synaptic potential by about -kappa' delta). One |E| x B x D tensor (the int32 read positions) lives for a
whole propagation; each step keeps nothing of that size for the backward pass (its positions are a shift of the
propagation's), so the memory a step adds is O(B N D) and T does not multiply the edge term.
"""

from __future__ import annotations

import math

import torch


def kappa(lag: float, tau: float) -> float:
    """The alpha kernel's PSP of one spike `lag` steps ago: (e/tau)(lag + 1) e^(-lag/tau)."""
    return (math.e / tau) * (lag + 1) * math.exp(-lag / tau)


def kappa_derivative(lag: float, tau: float) -> float:
    """kappa'(i) = (e/tau)(1 - (i + 1)/tau) e^(-i/tau), the discrete derivative of the kernel."""
    return (math.e / tau) * (1 - (lag + 1) / tau) * math.exp(-lag / tau)


class DelayTrace:
    """tr[k] = -sum_{k' <= k} s[k'] kappa'(k - k'), updated in O(1) per step from two running sums:
    a[k] = sum s[k'] lam^(k-k') and b[k] = sum s[k'] (k-k') lam^(k-k'), lam = e^(-1/tau), so that
    tr[k] = -(e/tau) ((1 - 1/tau) a[k] - b[k] / tau)."""

    def __init__(self, tau: float):
        self.tau, self.decay = tau, math.exp(-1 / tau)
        self.a: torch.Tensor | None = None
        self.b: torch.Tensor | None = None

    def update(self, spikes: torch.Tensor) -> torch.Tensor:
        spikes = spikes.detach()
        if self.a is None:
            self.a, self.b = spikes.clone(), torch.zeros_like(spikes)
        else:
            self.a, self.b = self.decay * self.a + spikes, self.decay * (self.b + self.a)
        return -(math.e / self.tau) * ((1 - 1 / self.tau) * self.a - self.b / self.tau)


class DelayPlan:
    """What every (batch, edge, channel) reads, computed once per propagation: the flat position of
    s_u[-1 - round(d)] in a history that starts with `pad` frames of zeros (reads before step 0 find zeros, so
    no mask is needed); the step's read moves by one frame per step. int32 positions halve the memory of the
    one |E| x B x D tensor a propagation keeps."""

    def __init__(self, delays: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, rel: torch.Tensor, num_nodes: int):
        batch, _, channels = delays.shape
        self.lag = torch.round(delays.detach()).long()  # [B, R, D]
        self.pad = int(self.lag.max().item()) + 1 if self.lag.numel() else 1
        self.frame = batch * num_nodes * channels
        self.src, self.dst, self.rel, self.num_nodes, self.shape = src, dst, rel, num_nodes, delays.shape
        b = torch.arange(batch, device=delays.device).view(-1, 1, 1)
        j = torch.arange(channels, device=delays.device).view(1, 1, -1)
        # frame index of step L-1 is pad + L - 1; reading lag steps earlier: pad + L - 1 - lag
        base = ((b * num_nodes + src.view(1, -1, 1)) * channels + j) - self.lag[:, rel, :] * self.frame
        self.dtype = torch.int32 if (self.pad + 4096) * self.frame < 2**31 else torch.int64
        self.base = (base + (self.pad - 1) * self.frame).to(self.dtype)  # position at L = 0, before the shift

    def positions(self, length: int) -> torch.Tensor:
        return (self.base + length * self.frame).reshape(-1)

    def padded(self, frames: list[torch.Tensor]) -> torch.Tensor:
        zero = torch.zeros_like(frames[0])
        return torch.stack([zero] * self.pad + list(frames)).reshape(-1)


class _DelayedMessage(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delays, plan, traces, *history):
        gathered = plan.padded(history).index_select(0, plan.positions(len(history)))
        message = torch.zeros_like(history[0]).index_add_(
            1, plan.dst, gathered.view(*plan.shape[:1], -1, plan.shape[2])
        )
        ctx.plan, ctx.traces, ctx.length = plan, traces, len(history)
        return message

    @staticmethod
    def backward(ctx, grad_message):
        plan = ctx.plan
        position = plan.positions(ctx.length)
        grad_edge = grad_message.index_select(1, plan.dst).reshape(-1)  # what each delivered spike receives
        grad_history = torch.zeros(
            (plan.pad + ctx.length) * plan.frame, dtype=grad_message.dtype, device=position.device
        )
        grad_history.index_add_(0, position, grad_edge)
        grad_history = grad_history.view(plan.pad + ctx.length, *grad_message.shape)[plan.pad :]
        grad_delays = None
        if ctx.needs_input_grad[0]:
            if ctx.traces is None:
                raise RuntimeError("delay gradient asked for without traces: build them in training mode")
            trace = plan.padded(ctx.traces).index_select(0, position)
            grad_delays = torch.zeros(plan.shape, dtype=grad_message.dtype, device=position.device)
            grad_delays.index_add_(1, plan.rel, (grad_edge * trace).view(plan.shape[0], -1, plan.shape[2]))
        return (grad_delays, None, None, *grad_history.unbind(0))


def delayed_message(
    delays: torch.Tensor, history: list[torch.Tensor], plan: DelayPlan, traces: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """m_v = sum over edges (u, r, v) of s_u[L - 1 - round(d_r)] per channel, L = len(history).

    delays [B, R, D] (real, >= 0; `plan` holds their rounding and the graph); history: the spikes s[0..L-1],
    each [B, N, D]; traces: the delay traces of the same steps (needed when `delays` requires grad)."""
    return _DelayedMessage.apply(delays, plan, traces, *history)


def latest_message(history: list[torch.Tensor], src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The no-delay ablation (not_delay): every edge delivers the latest spike, m_v = sum s_u[L - 1]."""
    return torch.zeros_like(history[-1]).index_add(1, dst, history[-1][:, src, :])
