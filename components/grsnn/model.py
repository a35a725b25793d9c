"""GRSNN (grsnn.md §3): a population of D spiking neurons per entity, synapses along every edge with a delay that
depends on the edge relation and the query relation, a constant current into the query's source node, and a
temporal readout of each node's spike train scored by an MLP. One propagation scores every node."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.grsnn.delay import DelayPlan, DelayTrace, delayed_message, latest_message
from components.snn import spike


@dataclass
class Graph:
    """Directed edges (src -> dst, relation rel), inverse edges included, over `num_nodes` nodes."""

    src: torch.Tensor
    dst: torch.Tensor
    rel: torch.Tensor
    num_nodes: int
    num_relations: int  # 2|R|: every relation and its inverse

    @classmethod
    def from_triples(cls, triples: torch.Tensor, num_nodes: int, num_relations: int) -> Graph:
        """The fact graph of (head, relation, tail) rows plus (tail, relation + |R|, head) for each."""
        h, r, t = triples.long().unbind(1)
        return cls(
            src=torch.cat([h, t]),
            dst=torch.cat([t, h]),
            rel=torch.cat([r, r + num_relations]),
            num_nodes=num_nodes,
            num_relations=2 * num_relations,
        )


@dataclass
class Dynamics:
    """The neuron's constants (grsnn.md §3.3)."""

    time_steps: int
    tau: float
    v_threshold: float
    linear_scale: float
    surrogate_alpha: float


@dataclass
class SpikeTrains:
    spikes: torch.Tensor  # [T, B, N, D]
    membrane_abs_mean: float  # mean |u| over steps, for the optional regulariser and diagnostics


def propagate(
    boundary: torch.Tensor,
    delays: torch.Tensor | None,
    graph: Graph,
    synapse: nn.Linear,
    dynamics: Dynamics,
) -> SpikeTrains:
    """Run the current-based LIF network for T steps from the boundary current [B, N, D].

    delays [B, 2|R|, D] (None: the no-delay ablation). The boundary current enters at every step; the
    synaptic current c decays with lambda = e^(-1/tau) and is driven by (e/tau) * linear_scale * W m; the
    membrane resets hard to 0 after a spike. State lives only inside this call."""
    decay = math.exp(-1 / dynamics.tau)
    gain = math.e / dynamics.tau * dynamics.linear_scale
    trace = DelayTrace(dynamics.tau) if delays is not None and delays.requires_grad else None
    plan = DelayPlan(delays, graph.src, graph.dst, graph.rel, graph.num_nodes) if delays is not None else None

    def fire(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = spike(u - dynamics.v_threshold, "sigmoid", dynamics.surrogate_alpha)
        return s, u * (1 - s)  # hard reset, not detached

    u = boundary
    s, u = fire(u)
    history, traces = [s], ([trace.update(s)] if trace is not None else None)
    current = torch.zeros_like(boundary)
    membrane = [u.detach().abs().mean()]
    for _ in range(1, dynamics.time_steps):
        if delays is None:
            message = latest_message(history, graph.src, graph.dst)
        else:
            message = delayed_message(delays, history, plan, traces)
        current = decay * current + gain * synapse(message)
        u = decay * u + current + boundary
        s, u = fire(u)
        history.append(s)
        if trace is not None:
            traces.append(trace.update(s))
        membrane.append(u.detach().abs().mean())
    return SpikeTrains(torch.stack(history), torch.stack(membrane).mean().item())


def readout_kernel(time_steps: int, decay_ratio: float) -> torch.Tensor:
    """kappa_t = gamma^t / sum_t' gamma^t', t counted from the start: early spikes weigh more."""
    weights = decay_ratio ** torch.arange(time_steps, dtype=torch.float64)
    return (weights / weights.sum()).float()


class GRSNN(nn.Module):
    def __init__(
        self,
        num_relations: int,
        *,
        hidden_dim: int,
        input_dim: int,
        dynamics: Dynamics,
        delay_bound: float,
        decay_ratio: float,
        boundary_query: bool = True,
        not_delay: bool = False,
    ):
        """num_relations: 2|R| (inverses included)."""
        super().__init__()
        self.num_relations, self.hidden_dim = num_relations, hidden_dim
        self.dynamics, self.delay_bound, self.boundary_query = dynamics, delay_bound, boundary_query
        self.query = nn.Embedding(num_relations, input_dim)
        # dependent delays: one per (edge relation, channel), generated from the query's embedding
        self.delay = None if not_delay else nn.Linear(input_dim, num_relations * hidden_dim)
        self.synapse = nn.Linear(hidden_dim, hidden_dim)
        width = hidden_dim + input_dim
        self.readout = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        self.register_buffer("kernel", readout_kernel(dynamics.time_steps, decay_ratio), persistent=False)

    def delays(self, embedding: torch.Tensor) -> torch.Tensor | None:
        """d^q_{r,j} = d_max * sigmoid(Delta(e_q))_{r,j}, [B, 2|R|, D]."""
        if self.delay is None:
            return None
        raw = self.delay(embedding).view(len(embedding), self.num_relations, self.hidden_dim)
        return self.delay_bound * torch.sigmoid(raw)

    def boundary(self, sources: torch.Tensor, embedding: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """The source's current (V_th/2) e_q + V_th/2 (or V_th), 0 elsewhere: [B, N, D]."""
        v = self.dynamics.v_threshold
        batch = len(sources)
        current = torch.zeros(batch, num_nodes, self.hidden_dim, device=embedding.device, dtype=embedding.dtype)
        source = v / 2 * embedding + v / 2 if self.boundary_query else torch.full_like(current[:, 0], v)
        return current.index_put((torch.arange(batch, device=sources.device), sources), source)

    def forward(
        self, graph: Graph, sources: torch.Tensor, queries: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, SpikeTrains]:
        """Logits [B, C] of the candidate answers (None: every node) of the queries (sources[b], queries[b], ?)."""
        embedding = self.query(queries)
        trains = propagate(
            self.boundary(sources, embedding, graph.num_nodes),
            self.delays(embedding),
            graph,
            self.synapse,
            self.dynamics,
        )
        features = torch.einsum("t,tbnd->bnd", self.kernel, trains.spikes)  # z_v
        if candidates is not None:
            features = features.gather(1, candidates.unsqueeze(-1).expand(-1, -1, self.hidden_dim))
        query = embedding.unsqueeze(1).expand(-1, features.shape[1], -1)
        return self.readout(torch.cat([features, query], dim=-1)).squeeze(-1), trains


def build_model(num_relations: int, cfg) -> GRSNN:
    """The model of a Config for a graph of `num_relations` relation types (before inverses)."""
    dynamics = Dynamics(cfg.time_steps, cfg.tau, cfg.v_threshold, cfg.linear_scale, cfg.surrogate_alpha)
    return GRSNN(
        2 * num_relations,
        hidden_dim=cfg.hidden_dim,
        input_dim=cfg.input_dim,
        dynamics=dynamics,
        delay_bound=cfg.delay_bound,
        decay_ratio=cfg.decay_ratio,
        boundary_query=cfg.boundary_query,
        not_delay=cfg.not_delay,
    )
