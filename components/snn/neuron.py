"""Multi-step LIF and IF neurons in SpikingJelly's convention.

For each step t of an input current X[t] ([T, batch, ...]):
    charge   H[t] = V_rest + decay (V[t-1] - V_rest) + gain X[t]
             LIF: decay = 1 - 1/tau, gain = 1/tau if decay_input else 1;   IF (tau = inf): decay = gain = 1
    fire     S[t] = Heaviside(H[t] - v_threshold)        (surrogate derivative backward)
    reset    soft: V[t] = H[t] - v_threshold S[t]          hard: V[t] = H[t] (1 - S[t]) + v_reset S[t]
V_rest is v_reset for a hard reset and 0 for a soft one; V[-1] = V_rest. The membrane lives in local
variables of one forward call: two calls on the same input give the same spikes.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from components.snn.surrogate import SURROGATES, spike

Reset = Literal["soft", "hard"]


class LIF(nn.Module):
    """Leaky integrate-and-fire over [T, batch, ...]; returns spikes of the same shape.

    detach_reset: the reset uses S[t].detach() (SpikingJelly's option; hlop, opzo use it).
    detach_state: V[t-1] enters step t detached, so no gradient flows through time (SLTT/OTTT's
    "temporal_grad = detach"; the self-ensemble view of sei_bwsnn is exact only in this mode).
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        reset: Reset = "soft",
        v_reset: float = 0.0,
        decay_input: bool = False,
        detach_reset: bool = False,
        detach_state: bool = False,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        if not tau > 1.0:
            raise ValueError(f"LIF tau must be > 1 (decay 1 - 1/tau in (0, 1]; inf is IF); got {tau}")
        if reset not in ("soft", "hard"):
            raise ValueError(f"reset must be 'soft' or 'hard'; got '{reset}'")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate '{surrogate}': use one of {', '.join(SURROGATES)}")
        self.tau, self.v_threshold, self.reset, self.v_reset = tau, v_threshold, reset, v_reset
        self.decay_input, self.detach_reset, self.detach_state = decay_input, detach_reset, detach_state
        self.surrogate, self.alpha = surrogate, alpha

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau

    @property
    def gain(self) -> float:
        return 1.0 / self.tau if self.decay_input and math.isfinite(self.tau) else 1.0

    def forward(self, x_seq: torch.Tensor, return_membrane: bool = False):
        """Spikes [T, ...]; with return_membrane also H (the pre-spike membrane) [T, ...]."""
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects [T, batch, ...]; got shape {tuple(x_seq.shape)}")
        v_rest = self.v_reset if self.reset == "hard" else 0.0
        v = torch.full_like(x_seq[0], v_rest)
        spikes, membranes = [], []
        for x in x_seq:  # the reference loop; state is local, so nothing survives this call
            if self.detach_state:
                v = v.detach()
            h = v_rest + self.decay * (v - v_rest) + self.gain * x
            s = spike(h - self.v_threshold, self.surrogate, self.alpha)
            s_reset = s.detach() if self.detach_reset else s
            if self.reset == "soft":
                v = h - self.v_threshold * s_reset
            else:
                v = h * (1.0 - s_reset) + self.v_reset * s_reset
            spikes.append(s)
            membranes.append(h)
        out = torch.stack(spikes)
        return (out, torch.stack(membranes)) if return_membrane else out

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, reset={self.reset}, "
            f"detach_reset={self.detach_reset}, detach_state={self.detach_state}, surrogate={self.surrogate}"
        )


def IF(
    v_threshold: float = 1.0,
    reset: Reset = "soft",
    v_reset: float = 0.0,
    detach_reset: bool = False,
    detach_state: bool = False,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
) -> LIF:
    """Integrate-and-fire: an LIF without leak (tau = inf: decay 1, gain 1)."""
    return LIF(
        tau=math.inf,
        v_threshold=v_threshold,
        reset=reset,
        v_reset=v_reset,
        detach_reset=detach_reset,
        detach_state=detach_state,
        surrogate=surrogate,
        alpha=alpha,
    )
