"""hypergraph's Config. Defaults are the full-scale synthetic grid (hypergraph.md §7: 10^3 entities, up to 10^5
hyperedges, up to 10^7 samples); the smoke preset is the spec's §6 Configs A and B."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_LIMIT = 2**62  # a token set is one int64 key in base (n + 1): it must fit with room to spare


def check_fits(entities: int, sizes: list[int], what: str) -> None:
    if (entities + 1) ** max(sizes) >= KEY_LIMIT:
        raise ValueError(f"{what}: {entities} entities with hyperedges of size {max(sizes)} overflow int64 keys")


class AlignmentConfig(BaseModel):
    """hypergraph.md §3.5 and §6 Config B: two modalities of one hypergraph, matched by node signatures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entities: int = Field(20, ge=3)  # n of Config B
    hyperedges: int = Field(60, ge=1)  # M of Config B
    edge_size: int = Field(3, ge=2)  # k of Config B
    sample_sizes: list[int] = [300, 1000, 3000, 10000, 30000, 100000]  # N1 = N2 per modality (Config B's grid)
    repetitions: int = Field(10, ge=1)  # fresh bijections and corpora per N (Config B: 10 reps)
    signature_top: int = Field(4, ge=0)  # L of §3.5 step 2: top-L incident weights beside the weighted degree
    refine: bool = False  # §3.5 step 4 is optional; the spec's Config B numbers are without it
    refine_neighbours: int = Field(5, ge=1)  # swap candidates per node: its nearest signatures (keeps it O(n))
    refine_passes: int = Field(3, ge=1)  # sweeps of the swap search (it stops early when no swap helps)
    control_entities: int = Field(20, ge=3)  # the symmetric control: an equal-weight cycle of this length
    control_samples: int = Field(100000, ge=1)  # N of the symmetric control (§6: even at N = 10^5)

    @model_validator(mode="after")
    def consistent(self) -> AlignmentConfig:
        if self.edge_size > self.entities:
            raise ValueError(f"alignment.edge_size {self.edge_size} exceeds alignment.entities {self.entities}")
        if self.hyperedges > math.comb(self.entities, self.edge_size):
            raise ValueError(f"alignment.hyperedges {self.hyperedges}: only C(n, k) distinct sets exist")
        if not self.sample_sizes or any(n < 1 for n in self.sample_sizes):
            raise ValueError(f"alignment.sample_sizes must be positive counts, got {self.sample_sizes}")
        check_fits(self.entities, [self.edge_size], "alignment")
        return self


class MaskedModelConfig(BaseModel):
    """hypergraph.md §6 Config C: a learned masked model on a graph (k = 2), read out by the chain rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entities: int = Field(30, ge=3)  # n of Config C
    hyperedges: int = Field(60, ge=1)  # M of Config C
    edge_size: int = Field(2, ge=2, le=4)  # k (read-out enumerates n^k ordered tuples: small k only)
    sample_sizes: list[int] = [500, 5000]  # Config C's N; [] skips the learned estimator (the smoke preset)
    repetitions: int = Field(3, ge=1)  # seeds averaged per N ("average 3 seeds": optimisation noise)
    width: int = Field(32, ge=1)  # embedding width d = 32 (Config C)
    hidden: int = Field(256, ge=1)  # the scorer MLP's hidden width
    steps: int = Field(1500, ge=1)  # Adam steps (Config C)
    batch_size: int = Field(256, ge=1)  # corpus rows per step, drawn with replacement
    lr: float = Field(3e-3, gt=0)  # Adam 3e-3 (Config C), cosine-decayed to 0

    @model_validator(mode="after")
    def consistent(self) -> MaskedModelConfig:
        if self.hyperedges > math.comb(self.entities, self.edge_size):
            raise ValueError(f"mm.hyperedges {self.hyperedges}: only C(n, k) distinct sets exist")
        if self.entities**self.edge_size > 10**6:
            raise ValueError(f"mm: the read-out enumerates n^k = {self.entities**self.edge_size} tuples (max 10^6)")
        if any(n < 1 for n in self.sample_sizes):
            raise ValueError(f"mm.sample_sizes must be positive counts, got {self.sample_sizes}")
        return self


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_entities: int = Field(1000, ge=3)  # |V0|: §7 full scale (10^3 - 10^4 entities)
    edge_sizes: list[int] = [3]  # hyperedge sizes, drawn uniformly per hyperedge (k = 3: §6; [2]: a graph)
    hyperedge_counts: list[int] = [1000, 10000, 100000]  # M grid: §7 "M up to 10^5"; the rate's sqrt(M) axis
    sample_sizes: list[int] = [1000, 10000, 100000, 1000000, 10000000]  # N grid: §7 "N up to 10^7", 4x..10x steps
    repetitions: int = Field(20, ge=1)  # corpora per (M, N): §6 Config A's 20
    exact_draws: int = Field(200, ge=1)  # cheap multinomial draws per (M, N) for the exact-recovery frequency
    weight_prior: Literal["dirichlet", "zipf"] = "dirichlet"  # w0 ~ Dirichlet(alpha) (§6) or w_i ∝ i^-s, shuffled
    dirichlet_alpha: float = Field(1.0, gt=0)  # Dirichlet(1,...,1): uniform on the simplex (§6)
    zipf_exponent: float = Field(1.0, gt=0)  # s of the Zipf prior (§3.6 sweep knob)
    f1_threshold: float = Field(0.5, gt=0)  # tau = f1_threshold * w_min for the edge-set F1 (§3.3: w_min / 2)
    alignment: AlignmentConfig = AlignmentConfig()
    mm: MaskedModelConfig = MaskedModelConfig()

    @model_validator(mode="after")
    def consistent(self) -> Config:
        if not self.edge_sizes or min(self.edge_sizes) < 2 or max(self.edge_sizes) > self.n_entities:
            raise ValueError(f"edge_sizes {self.edge_sizes}: each size must be in [2, n_entities]")
        possible = sum(math.comb(self.n_entities, k) for k in set(self.edge_sizes))
        if not self.hyperedge_counts or any(m < 1 or m > possible for m in self.hyperedge_counts):
            raise ValueError(f"hyperedge_counts {self.hyperedge_counts}: each must be in [1, {possible}]")
        if not self.sample_sizes or any(n < 1 for n in self.sample_sizes):
            raise ValueError(f"sample_sizes must be positive counts, got {self.sample_sizes}")
        check_fits(self.n_entities, self.edge_sizes, "edge_sizes")
        return self
