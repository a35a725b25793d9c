"""EKAN's Config. Defaults are the paper's particle-scattering runs (ekan.md §4, run_scripts/ParticleInteraction):
O(1,3), one hidden rep of width 1000, N = 1000, Adan lr 3e-3, batch 500. Presets shrink it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.core.optim import OptimizerName

Task = Literal["particle", "o2_toy", "three_body"]
GroupName = Literal["SO2", "O2", "SO3", "O3", "O5", "SO13p", "SO13", "O13"]
ModelName = Literal["ekan", "kan", "mlp", "emlp"]

TASK_GROUPS = {  # the groups each task's data is equivariant under (the run scripts' choices)
    "particle": ("SO13p", "SO13", "O13"),
    "o2_toy": ("SO2", "O2"),
    "three_body": ("SO2", "O2"),
}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task = "particle"  # the paper's Lorentz-invariant scattering amplitude (procedural, no data stage)
    group: GroupName = "O13"  # the full Lorentz group; SO13p and SO13 are the paper's other two
    model: ModelName = "ekan"  # kan / mlp / emlp are the paper's baselines, on the same task and data
    width: tuple[int, ...] = (1000,)  # hidden widths (dims of uniform_rep); EKAN runs use ONE hidden layer
    grid: int = Field(3, ge=1)  # G_int spline intervals (--grid 3 in every run script)
    k: int = Field(3, ge=0)  # cubic B-splines (pykan's default)
    grid_range: tuple[float, float] = (-1.0, 1.0)  # initial knot range of every gate
    grid_eps: float = Field(1.0, ge=0, le=1)  # EKAN's 1.0: grid updates give a uniform grid over the data range
    update_grid: bool | None = None  # None: the run scripts' choice: off for particles, on for three-body and the toy
    grid_update_num: int = Field(10, ge=1)  # experiment.py's default: refits every 50 / 10 = 5 steps
    stop_grid_update_step: int = Field(50, ge=0)  # no refits after this step
    bilinear: bool = True  # the residual 0.1 W_bi(y) y; off is an ablation (Lorentz invariants then cannot form)
    dataset: str = "tables/three_body"  # read by task three_body only (`paperzoo prepare tables three_body`)
    n_train: int | None = Field(None, ge=1)  # N; None: the task's default (particle 1000, o2_toy 128, three-body all)
    n_test: int | None = Field(None, ge=1)  # None: N for particles (as the scripts), 1000 for the toy, three-body all
    data_seed: int | None = None  # None: the run's seed, which the official scripts also use for the data
    steps: int | None = Field(None, ge=1)  # None: the scripts' budget: particles 7000 (N <= 316) or 15000, 3-body 5000
    batch_size: int = Field(500, ge=1)  # one random mini-batch per step, without replacement; >= N is full batch
    optimizer: OptimizerName = "adan"  # Adan, sail-sg form (core optimizer table); others from core's table
    lr: float = Field(3e-3, gt=0)  # every run script's lr
    weight_decay: float | None = Field(None, ge=0)  # None: 0 for adan (no run decays), the table default otherwise
    augment: bool = False  # kan/mlp: transform each batch by a random group element (the "+aug" baselines)
    eval_every: int = Field(0, ge=0)  # log test MSE every N steps (0: only at the end)
    eval_batch_size: int = Field(1000, ge=1)  # evaluation in chunks bounds memory (the bilinear maps are wide)
    equivariance_samples: int = Field(5, ge=1)  # group elements g per equivariance check (spec §6 check 1)
    equivariance_points: int = Field(1000, ge=2)  # test inputs the check uses
    divergence_limit: float = Field(1e6, gt=0)  # a training loss above this (or non-finite) stops the run
    plots: bool = True  # loss.png; the test preset turns it off

    @field_validator("width", mode="before")
    @classmethod
    def _one_width(cls, value):
        return (value,) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.group not in TASK_GROUPS[self.task]:
            raise ValueError(
                f"group: task {self.task} is equivariant under {', '.join(TASK_GROUPS[self.task])}, not {self.group}"
            )
        if not self.width or any(w < 1 for w in self.width):
            raise ValueError(f"width: one positive width per hidden layer, got {list(self.width)}")
        if self.grid_range[0] >= self.grid_range[1]:
            raise ValueError(f"grid_range: low < high needed, got {list(self.grid_range)}")
        if self.augment and self.model in ("ekan", "emlp"):
            raise ValueError(f"augment: {self.model} is equivariant by construction; augmentation is for kan and mlp")
        return self

    @property
    def train_size(self) -> int | None:
        """N after defaults; None: every training window of the prepared split (three-body)."""
        if self.n_train is not None:
            return self.n_train
        return {"particle": 1000, "o2_toy": 128, "three_body": None}[self.task]

    @property
    def test_size(self) -> int | None:
        if self.n_test is not None:
            return self.n_test
        return {"particle": self.train_size, "o2_toy": 1000, "three_body": None}[self.task]

    @property
    def budget(self) -> int:
        if self.steps is not None:
            return self.steps
        if self.task == "particle":
            return 7000 if self.train_size <= 316 else 15000
        return {"three_body": 5000, "o2_toy": 300}[self.task]

    @property
    def grid_updates(self) -> bool:
        if self.model not in ("ekan", "kan"):
            return False
        return self.update_grid if self.update_grid is not None else self.task != "particle"
