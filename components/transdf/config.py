"""TransDF (Time-o1)'s Config. Defaults are the official ETTh1 long-term recipe at horizon 96 (transdf.md §3.6)
with the one backbone family we implement at paper scale: DLinear (decomposition, weights at 1/L); presets shrink it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.optim import OptimizerName


class LossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["tmse", "transdf"] = "transdf"  # tmse: the plain temporal MSE baseline (DF)
    rank_ratio: float = Field(1.0, gt=0)  # gamma: K = int(P * ratio) if <= 1, else min(int(ratio), P) components
    rec_lambda: float = Field(0.0, ge=0, le=1)  # TMSE weight; the paper's alpha = 1 - rec_lambda (ETTh1-96: 0)
    distance: Literal["l1", "l2"] = "l1"  # L1 in the transformed domain: component variances span decades
    pca_dim: Literal["T"] = "T"  # per-channel PCA over the time axis, the default of every official script


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "series/etth1"  # an ETT-style CSV prepared with `paperzoo prepare series etth1`
    seq_len: int = Field(96, ge=1)  # L = 96 everywhere in the paper
    pred_len: int = Field(96, ge=1)  # P; the paper reports {96, 192, 336, 720}
    backbone: Literal["linear", "mlp"] = "linear"  # DLinear-style linear map over time, channel-independent
    hidden: int = Field(64, ge=1)  # MLP hidden units (backbone = mlp)
    decomposition: bool = True  # DLinear's series_decomp: moving-average trend + seasonal rest, each its own map
    moving_avg: int = Field(25, ge=1)  # the trend's moving-average kernel (odd), DLinear's default 25
    init: Literal["dlinear", "zero"] = "dlinear"  # linear weights at 1/L (DLinear) or all zero (the co2 presets)
    loss: LossConfig = LossConfig()
    optimizer: OptimizerName = "adamw"  # Adam, as run.py (weight decay 0 below makes AdamW plain Adam)
    lr: float | None = Field(5e-4, gt=0)  # ETTh1-96's official lr; None: the optimizer table's default
    weight_decay: float = Field(0.0, ge=0)  # the official runs use none
    lradj: Literal["constant", "type1", "type3"] = "type3"  # TSLib epoch schedules, timed as the official loop
    epochs: int = Field(100, ge=1)  # with early stopping on val MSE
    patience: int = Field(10, ge=0)  # epochs without val improvement before stopping; 0: never stop early
    batch_size: int = Field(128, ge=1)  # the Fredformer ETTh1 scripts' batch
    eval_batch_size: int = Field(1024, ge=1)  # evaluation chunks bound memory (no batch statistics involved)
    seasonal_period: int | None = Field(None, ge=1)  # season of the seasonal-naive baseline (co2: 52 weeks)
    divergence_limit: float = Field(1e6, gt=0)  # a loss above this (or non-finite) stops the run as diverged

    @model_validator(mode="after")
    def _rank(self) -> Config:
        if self.loss.rank_ratio > 1 and self.loss.rank_ratio != int(self.loss.rank_ratio):
            raise ValueError(f"loss.rank_ratio {self.loss.rank_ratio}: a ratio in (0, 1] or a whole component count")
        if self.decomposition and self.moving_avg % 2 == 0:
            raise ValueError(f"moving_avg {self.moving_avg}: an odd kernel keeps the trend as long as the input")
        return self
