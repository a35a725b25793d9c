"""LDHD's Config (ldhd.md). The paper's model sizes, training lengths and steps were not available (§4, §7): the
defaults are the spec's full-scale ranges (a 6-layer d 256 decoder, train lengths <= 10, test to 3x), labelled as
assumed in the README. Presets shrink the counts; the smoke preset is ldhd.md §6's optional check 5 shrunk."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.transformer import PositionEncoding


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: int = Field(256, ge=8)  # §7: d 128-768 [assumed: the paper's size is not in the spec]
    layers: int = Field(6, ge=1)  # §7: 2-12 layers [assumed]
    heads: int = Field(8, ge=1)
    position: PositionEncoding = "rpe_square_hard"  # the paper's proposal; the ldhd_pe sweep compares the rest
    rpe_clip: int = Field(64, ge=1)  # R: offsets up to the longest test sequence stay distinct
    max_positions: int = Field(256, ge=16)  # > the longest URF test sequence (2 x 30 digits + carry + 4 tokens)


class BooleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # the Boolean checks 1-4 (numpy, seconds) ride along with every run
    n: int = Field(10, ge=2, le=16)  # §6: N = 10 (enumerated exactly; N <= 16)
    n0: int = Field(6, ge=1)  # §6: N0 = 6 free coordinates in training
    features: int = Field(20000, ge=1)  # §6 / §8: m >= 10x the 2^N0 training points
    plaa_n: int = Field(12, ge=2)  # §6 check 3: u in {0,1}^12, zero beyond N0 in training
    plaa_steps: int = Field(2000, ge=1)  # §6: 2000 GD steps, batch 64, lr 0.05, zero init
    copy_sequences: int = Field(3000, ge=16)  # §6 check 4: 3000 sequences, Adam lr 0.05

    @model_validator(mode="after")
    def _n0_inside(self) -> BooleanConfig:
        if self.n0 >= self.n or self.n0 >= self.plaa_n:
            raise ValueError(f"boolean.n0={self.n0} must be smaller than boolean.n and boolean.plaa_n")
        return self


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = "urf_addition"  # the unaligned reversed-format addition of §3.5; unaligned_copy is the other
    train_max_length: int = Field(10, ge=1)  # §7: train on lengths <= 10-20 [assumed 10]
    test_max_length: int = Field(30, ge=1)  # §7: test to 2-4x the training length [assumed 3x]
    eval_per_length: int = Field(100, ge=1)  # test instances per length
    model: ModelConfig = ModelConfig()
    lr: float = Field(3e-4, gt=0)  # AdamW [assumed: the paper's recipe is not in the spec]
    weight_decay: float = Field(0.01, ge=0)
    warmup: int = Field(500, ge=0)  # linear warm-up, then cosine
    batch_size: int = Field(64, ge=1)
    steps: int = Field(20000, ge=1)  # §7: ~1e4-1e5 steps
    eval_batch_size: int = Field(256, ge=1)
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run
    boolean: BooleanConfig = BooleanConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        from components.ldhd.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.test_max_length < self.train_max_length:
            raise ValueError(
                f"test_max_length {self.test_max_length} is below train_max_length {self.train_max_length}"
            )
        longest = 2 * self.test_max_length + 5
        if self.model.max_positions < longest:
            raise ValueError(f"model.max_positions {self.model.max_positions} < {longest}, the longest test sequence")
        return self
