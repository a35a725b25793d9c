"""GRSNN's Config. Defaults are the official FB15k-237 setting (grsnn.md §3.7); presets shrink the counts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "graphs/fb15k237"  # FB15k-237's release, prepared with the kg-tsv source
    hidden_dim: int = Field(32, ge=1)  # D: spiking neurons per entity node
    input_dim: int = Field(32, ge=1)  # d_in: query-relation embedding size (= D: it is the source's current)
    time_steps: int = Field(10, ge=2)  # T: simulation steps of one propagation
    tau: float = Field(4.0, gt=0)  # membrane and synaptic-current time constant (tau_c = tau)
    v_threshold: float = Field(2.0, gt=0)  # V_th: spike threshold, reset to 0 (hard reset)
    delay_bound: float = Field(4.0, ge=0)  # d_max: delays are d_max * sigmoid(.), rounded in the forward pass
    decay_ratio: float = Field(0.95, gt=0, le=1)  # gamma of the readout kernel gamma^t: early spikes count more
    linear_scale: float = Field(0.1, gt=0)  # synaptic weight scale: 0.1 on FB15k-237, 1.0 elsewhere
    surrogate_alpha: float = Field(4.0, gt=0)  # width of the sigmoid surrogate derivative
    boundary_query: bool = True  # source current (V_th/2) e_q + V_th/2; False: a constant V_th
    not_delay: bool = False  # the ablation: every edge delivers the latest spike (no relation-specific delay)
    remove_one_hop: bool = True  # FB15k-237: drop every h-t edge of a training query (False: the triple only)
    num_negative: int = Field(256, ge=1)  # K strict negatives per training triple
    adversarial_temperature: float = Field(0.5, ge=0)  # T_adv of the self-adversarial weights (0: uniform 1/K)
    lr: float = Field(2e-3, gt=0)  # Adam
    batch_size: int = Field(5, ge=1)  # training triples per backward pass (global, split across ranks)
    grad_accumulation: int = Field(6, ge=1)  # backward passes per optimizer step: 5 x 6 = 30 triples a step
    epochs: int = Field(20, ge=1)  # passes over the training triples; the best epoch on val MRR is tested
    steps_per_epoch: int | None = Field(None, ge=1)  # None: the whole training split every epoch
    eval_triples: int | None = Field(None, ge=1)  # None: every val/test triple (both directions)
    eval_batch_size: int = Field(8, ge=1)  # queries per propagation when ranking
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run

    @model_validator(mode="after")
    def _query_current_fits(self) -> Config:
        if self.boundary_query and self.input_dim != self.hidden_dim:
            raise ValueError(
                f"input_dim ({self.input_dim}) must equal hidden_dim ({self.hidden_dim}) with boundary_query: "
                "the query embedding is the source node's input current"
            )
        return self
