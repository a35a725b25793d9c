"""LieSD's Config. Defaults are the official code's settings (liesd.md §3.6) for the tensor-data experiment
(moment of inertia, N = 100,000); `auto` fields and an unset `epochs` take the official per-task value, so a
sweep over `task` runs each task as the paper does. Presets shrink it to the spec's smoke setting (§6)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.core.optim import OptimizerName
from components.core.schedules import ScheduleConfig

Task = Literal["two_body", "inertia"]
FormName = Literal["auto", "vector", "multichannel", "channelwise", "tensor"]
Activation = Literal["auto", "tanh", "relu", "silu"]

PAPER_FORM = {"two_body": "channelwise", "inertia": "tensor"}  # the form each experiment's headline uses
PAPER_ACTIVATION = {"two_body": "tanh", "inertia": "relu"}  # main_liesd.py's per-task nonlinearity
PAPER_EPOCHS = {"two_body": 10, "inertia": 100}  # the README commands' --num_epochs
TASK_FORMS = {"two_body": ("vector", "multichannel", "channelwise"), "inertia": ("vector", "multichannel", "tensor")}


class InertiaConfig(BaseModel):
    """EMLP's moment-of-inertia generator as the official code draws it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: int = Field(100_000, ge=8)  # N = 100,000 (README command --N 100000)
    points: int = Field(3, ge=1)  # k = 3 point masses per input (--k 3)
    noise: float = Field(0.0, ge=0, lt=1)  # the noisy variant uses 0.1: x, y times (1 + noise U(-1, 1))
    test_fraction: float = Field(0.2, ge=0, lt=1)  # held-out draws for test error (the official code has none)


class TwoBodyConfig(BaseModel):
    """HNN experiment-orbits' defaults, which the LieGAN/LieSD data pickle was made with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trajectories: int = Field(1000, ge=5)  # 1000 orbits, 20 % of them held out
    time_steps: int = Field(50, ge=3)  # 50 states per orbit over [0, t_end]
    t_end: float = Field(20.0, gt=0)  # t_span = [0, 20]
    orbit_noise: float = Field(0.05, ge=0)  # circular-orbit speed times (1 + 0.05 N(0, 1)): slightly elliptical
    rtol: float = Field(1e-9, gt=0)  # solve_ivp rtol 1e-9, as HNN
    test_fraction: float = Field(0.2, ge=0, lt=1)  # HNN's test split
    non_uniform: bool = False  # True: q1 only in quadrants II and IV (the set where LieGAN fails)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task = "inertia"  # the tensor-data experiment, the paper's new form; two_body is its vector case
    form: FormName = "auto"  # auto: the paper's form for the task (two_body channelwise, inertia tensor)
    inertia: InertiaConfig = InertiaConfig()
    two_body: TwoBodyConfig = TwoBodyConfig()

    width: int = Field(384, ge=1)  # MLP in -> 384 -> 384 -> out, both tasks (main_liesd.py)
    activation: Activation = "auto"  # auto: tanh for two_body, ReLU for inertia, as main_liesd.py
    epochs: int = Field(100, ge=1)  # unset: the README commands' per task, 100 for inertia, 10 for two_body
    batch_size: int = Field(64, ge=1)  # DataLoader batch 64, shuffled every epoch
    optimizer: OptimizerName = "adan"  # Adan at its defaults, as train.py; adamw with weight_decay 0 is Adam
    lr: float | None = Field(None, gt=0)  # None: the optimizer's default (Adan 1e-3)
    weight_decay: float | None = Field(None, ge=0)  # None: the optimizer's default (Adan 0)
    schedule: ScheduleConfig = ScheduleConfig(name="constant")  # the official code has no LR schedule

    discovery_samples: int | None = Field(None, ge=2)  # None: the whole training set, as the official code
    discovery_batch: int = Field(4096, ge=1)  # samples per Jacobian/Gram chunk (memory only, not the result)
    num_bases: int | None = Field(None, ge=1)  # None: the gap rule picks D; an int is the CLI's --D
    gap_max: int = Field(12, ge=2)  # the gap rule looks at the 12 smallest singular values (liesd.md §3.4)
    fit_threshold: float = Field(1e-3, gt=0)  # relative train MSE (above the noise floor) to trust J_f (§6)
    divergence_limit: float = Field(1e6, gt=0)  # a batch loss above this (or non-finite) stops the run

    @model_validator(mode="before")
    @classmethod
    def _task_epochs(cls, data):
        """An unset (or null) epochs takes the task's official count, written into the config itself, so that
        config.yaml holds the number the run uses and a paper run can be shrunk by count."""
        if isinstance(data, dict) and data.get("epochs") is None:
            task = data.get("task", "inertia")
            if isinstance(task, str) and task in PAPER_EPOCHS:
                data = {**data, "epochs": PAPER_EPOCHS[task]}
        return data

    @model_validator(mode="after")
    def _form_fits_task(self) -> Config:
        if self.form != "auto" and self.form not in TASK_FORMS[self.task]:
            raise ValueError(
                f"form '{self.form}' does not apply to task '{self.task}'; "
                f"choose from auto, {', '.join(TASK_FORMS[self.task])}"
            )
        if self.num_bases is not None and self.num_bases > self.unknowns:
            raise ValueError(f"num_bases {self.num_bases} exceeds the {self.unknowns} unknowns of this form")
        return self

    @property
    def resolved_form(self) -> str:
        return PAPER_FORM[self.task] if self.form == "auto" else self.form

    @property
    def resolved_activation(self) -> str:
        return PAPER_ACTIVATION[self.task] if self.activation == "auto" else self.activation

    @property
    def resolved_epochs(self) -> int:
        return self.epochs

    @property
    def shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((c, d) of the input channels, the output's (c', d') or (d1, d2)) as the chosen form reads them."""
        if self.task == "two_body":
            return (4, 2), (4, 2)
        output = (3, 3) if self.resolved_form == "tensor" else (1, 9)
        return (self.inertia.points, 3), output

    @property
    def unknowns(self) -> int:
        from components.liesd.systems import layout

        (c, d), out = self.shapes
        return layout(self.resolved_form, c, d, out).unknowns
