"""NUPA's Config. Defaults are the official from-scratch setting (number_model/train.py, nupa.md §3.6): a ~0.1B
Llama-style decoder on Integer addition, one-digit tokens, RoPE, AdamW 5e-5, cosine, 500 warm-up steps, batch
64, one epoch. Presets shrink the counts; the smoke preset is nupa.md §6."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.transformer import PositionEncoding


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: int = Field(768, ge=8)  # ~0.1B with 12 layers: the smallest of the paper's Llama-style models [recalled]
    layers: int = Field(12, ge=1)  # Llama-style depth at that width
    heads: int = Field(12, ge=1)  # head size 64, Llama's
    position: PositionEncoding = "rope"  # the Llama default; nope / alibi are the PE knob
    max_positions: int = Field(1024, ge=16)  # random_position draws ids from [0, 1024), as the official trainer
    rpe_clip: int = Field(64, ge=1)  # R for rpe / rpe_square_* (LDHD's encodings, available to the sweep)


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = ""  # a local Hugging Face causal-LM folder (mode=llm); no download at run time
    batch_size: int = Field(16, ge=1)  # prompts per generate() call, left-padded
    new_tokens_per_digit: int = Field(2, ge=1)  # max_new_tokens = 2 x the batch's longest operand (nupa.md §3.5)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # the checkpoint's own dtype by default


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["train", "llm"] = "train"  # train a number model from scratch, or score a pretrained LM
    dataset: str = "tokens/nupa_add_int"  # a `nupa` prepare of one (task, representation) at the official ranges
    digits_per_token: int = Field(1, ge=1, le=3)  # k: the one-digit tokenizer is the paper's best
    direction: Literal["right", "left", "random"] = "right"  # integers grouped from the units, fractions from the point
    reverse: Literal["no", "int", "dec", "each", "total"] = "no"  # the official default number format
    pad: bool = False  # zero padding of the operands' parts
    index_hint: bool = False  # Zhou et al. hints before every operand digit
    random_position: bool = False  # position ids = a sorted random subset of [0, max_positions) in training
    random_shifted_start: bool = False  # with prob 0.7 shift training position ids by U{0..63}
    model: ModelConfig = ModelConfig()
    lr: float = Field(5e-5, gt=0)  # the official HF-Trainer learning rate
    weight_decay: float = Field(0.01, ge=0)  # the official AdamW decay
    warmup: int = Field(500, ge=0)  # linear warm-up steps, then cosine to 0
    batch_size: int = Field(64, ge=1)  # per device in the official run (one device here: the global batch)
    epochs: int = Field(1, ge=1)  # one pass over the training pairs
    steps: int | None = Field(None, ge=1)  # None: epochs x (training pairs // batch_size)
    eval_per_length: int | None = Field(None, ge=1)  # test samples scored per length (None: all, 1000 officially)
    eval_batch_size: int = Field(256, ge=1)  # prompts per greedy batch
    eval_every: int = Field(0, ge=0)  # in-run evaluation every N steps on the val split (0: only at the end)
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run
    llm: LLMConfig = LLMConfig()

    @model_validator(mode="after")
    def _llm_needs_a_model(self) -> Config:
        if self.mode == "llm" and not self.llm.model:
            raise ValueError(
                "mode=llm needs llm.model: the folder of a Hugging Face causal LM (config, weights, tokenizer)"
            )
        return self
