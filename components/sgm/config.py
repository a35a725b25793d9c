"""SGM's Config. Defaults are the paper's ImageNet setting (sgm.md §3.2, §4): a ResNet-152 source with gamma 0.2,
PGD with eps 16/255, 10 steps of 2/255, no random start, ground-truth labels; presets shrink counts or, for the
digits smoke run (sgm.md §6), switch to the in-process residual-MLP source and MLP targets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.errors import ConfigError


class TrainConfig(BaseModel):
    """The in-process training of source and targets when no weights are given (sgm.md §6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(20, ge=1)  # sgm.md §6: 20 epochs each
    batch_size: int = Field(128, ge=1)  # sgm.md §6
    lr: float = Field(3e-3, gt=0)  # Adam, sgm.md §6
    weight_decay: float = Field(1e-4, ge=0)  # Adam's L2 term, sgm.md §6


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "images/imagenet"  # ImageNet-layout folder prepared by imagefolder at size 224, resize 256
    split: Literal["train", "val", "test"] = "val"  # the paper attacks ImageNet validation images
    image_size: int = Field(224, ge=1)  # the paper's input side; the dataset must hold exactly this
    max_samples: int = Field(5000, ge=1)  # the paper's 5000-image subset (the first N of the split's stored order)
    num_classes: int = Field(1000, ge=2)  # ImageNet-1k heads; the dataset's classes must be these, in order
    source: str = "resnet152"  # the paper's headline source (sgm.md §4 table)
    targets: tuple[str, ...] = ("vgg19", "densenet201")  # the table's targets we can build (SE-154: not here)
    width: int = Field(64, ge=1)  # base width of the ImageNet families (64 is torchvision's)
    weights: str | None = "weights/imagenet"  # folder of <arch>.safetensors (relative to the data root); None: train
    gamma: float = Field(0.2, gt=0, le=1)  # the ResNet default (0.5 for DenseNet sources, sgm.md §3.3)
    mechanism: Literal["explicit", "official_hooks"] = "explicit"  # GS on branch outputs, or the ReLU hooks
    eps: float = Field(16 / 255, gt=0)  # L_inf budget in [0, 1] pixels
    steps: int = Field(10, ge=1)  # T
    step_size: float = Field(2 / 255, gt=0)  # alpha
    momentum: float = Field(0.0, ge=0)  # 0: PGD / I-FGSM (the table's SGM rows); 1.0 is MI-FGSM's usual mu
    rand_init: bool = False  # the ICLR code starts at x; the extension's starts at x + U(-eps, eps)
    labels: Literal["truth", "prediction"] = "truth"  # attack_sgm.py uses ground truth; attack_iter.py the source's
    only_correct: bool = False  # keep only images every model classifies correctly (sgm.md §6); paper: all images
    quantise: bool = True  # evaluate on 8-bit images, as the paper's saved PNGs
    batch_size: int = Field(50, ge=1)  # images per attack batch (summed CE: the per-image gradient is batch-free)
    save_adversarial: bool = True  # adversarial.npz (uint8 images, labels) in the run directory
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _targets_differ_from_source(self) -> Config:
        if not self.targets:
            raise ConfigError("targets: give at least one black-box target model")
        if self.source in self.targets:
            raise ConfigError(f"targets: '{self.source}' is the source (its white-box rate is white_box_asr)")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"targets: {list(self.targets)} names a model twice")
        return self
