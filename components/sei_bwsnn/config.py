"""SEI-BWSNN's Config. Defaults are the paper's headline setting (ImageNet, spiking Transformer with binarised
FFN/MLP layers, T = 2); presets shrink it. Every choice the spec had to assume is a switch here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.optim import OptimizerName
from components.core.schedules import ScheduleConfig


class NeuronConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tau: float = Field(2.0, gt=1.0)  # OTTT's tau = 2 (lambda = 0.5); SLTT uses 1.1 - the paper's value is unknown
    v_threshold: float = Field(1.0, gt=0)  # theta = 1 in the group's convention
    surrogate: Literal["sigmoid", "atan", "triangle"] = "sigmoid"  # sigmoid-4; SLTT's triangle is the alternative
    alpha: float | None = Field(
        None, gt=0
    )  # surrogate width; None: the family's default (sigmoid 4, atan 2, triangle 1)
    temporal_grad: Literal["detach", "bptt"] = "detach"  # detach: the exact self-ensemble of T BNNs (spec 3.2)


class KDConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # "train": fit a full-precision ANN first; "none": no KD; else a run directory holding teacher.safetensors or
    # a .safetensors file: an ANN of this family of any shape (read off its weights), the student's arch or not
    teacher: str = "train"
    teacher_heads: int | None = Field(None, ge=1)  # a loaded Transformer teacher's heads (None: its run's, or ours)
    beta: float = Field(1.0, ge=0, le=1)  # ReActNet's pure distribution loss [assumed]
    tau: float = Field(1.0, gt=0)  # KD temperature; the KL is scaled by tau^2
    target: Literal["mean", "per_step"] = "mean"  # distil the time-averaged logits, or every ensemble member
    teacher_width: int = Field(768, ge=1)  # the in-run teacher's width (same depth and patching as the student)
    teacher_epochs: int = Field(100, ge=1)  # epochs of teacher training when teacher == "train"

    @model_validator(mode="after")
    def _teacher_needed(self) -> KDConfig:
        if self.teacher == "none" and self.beta > 0:
            raise ValueError("kd.beta > 0 needs a teacher: set kd.teacher to 'train' or a run directory, or kd.beta=0")
        return self


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "images/imagenet"  # an ImageNet-layout folder prepared with `paperzoo prepare`
    image_size: int | None = Field(224, ge=1)  # the side the run requires of its dataset (None: any); ImageNet 224
    arch: Literal["mlp", "transformer"] = "transformer"  # the 82.52% model is a spiking Transformer [abs]
    steps: int = Field(2, ge=1)  # T, the number of time steps (= ensemble members); T = 2 for the 82.52%
    binary: bool = True  # binarise the layers named by the arch (off: the full-precision SNN for comparison)
    alpha_grad: Literal["autograd", "detach"] = "detach"  # gradient through the per-channel scale a_o [assumed]
    shortcut: Literal["per_layer", "block", "none"] = (
        "per_layer"  # "multiple shortcuts": one per binary layer [assumed]
    )
    # ImageNet's standard training recipe (the spec names no augmentation; sei_bwsnn.md §3.6 follows SLTT, whose
    # ImageNet loader is torchvision's): random-resized crop + flip on training batches, mean/std everywhere
    augment: Literal["none", "random-resized-crop-flip"] = "random-resized-crop-flip"  # scale (0.08, 1) [assumed]
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of a random-resized crop (torchvision)
    normalise: bool = True  # ImageNet mean/std (RGB); False: pixels / 255
    neuron: NeuronConfig = NeuronConfig()
    kd: KDConfig = KDConfig()
    width: int = Field(512, ge=8)  # model width D (MLP hidden / Transformer embedding); Spikformer-8-512 class
    depth: int = Field(8, ge=1)  # binary MLP layers / Transformer blocks
    heads: int = Field(8, ge=1)  # attention heads (transformer)
    patch: int = Field(16, ge=1)  # patch size in pixels (transformer); 224 / 16 = 14 x 14 tokens
    mlp_ratio: int = Field(4, ge=1)  # FFN expansion; the per-layer shortcut repeats x this many times
    optimizer: OptimizerName = "adamw"  # Adam(W) for latent binary weights, as SLTT [assumed]
    lr: float | None = Field(5e-4, gt=0)  # None: the optimizer table's default
    weight_decay: float = Field(0.0, ge=0)  # 0: decay pulls latent binary weights to 0 and flips signs (spec §8)
    schedule: ScheduleConfig = ScheduleConfig(name="cosine")  # cosine LR [assumed, SLTT]
    epochs: int = Field(300, ge=1)  # ImageNet from scratch (spec §7)
    batch_size: int = Field(256, ge=1)  # global batch, split across ranks
    eval_batch_size: int = Field(512, ge=1)  # evaluation chunks bound memory
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run as diverged

    @model_validator(mode="after")
    def _shapes(self) -> Config:
        if self.crop_scale[0] <= 0 or self.crop_scale[0] > self.crop_scale[1] or self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.arch == "transformer" and self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.kd.teacher == "train" and self.arch == "transformer" and self.kd.teacher_width % self.heads:
            raise ValueError(f"kd.teacher_width {self.kd.teacher_width} must be divisible by heads {self.heads}")
        return self
