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
    update_grid: bool = False  # unset: the run scripts' choice: off for particles, on for three-body and the toy
    grid_update_num: int = Field(10, ge=1)  # experiment.py's default: refits every 50 / 10 = 5 steps
    stop_grid_update_step: int = Field(50, ge=0)  # no refits after this step
    bilinear: bool = True  # the residual 0.1 W_bi(y) y; off is an ablation (Lorentz invariants then cannot form)
    dataset: str = "tables/three_body"  # read by task three_body only (`paperzoo prepare tables three_body`)
    n_train: int | None = Field(None, ge=1)  # N; unset: the task's (particle 1000, o2_toy 128, three-body None = all)
    n_test: int | None = Field(None, ge=1)  # unset: N for particles (as the scripts), 1000 for the toy, three-body all
    data_seed: int | None = None  # None: the run's seed, which the official scripts also use for the data
    steps: int = Field(15000, ge=1)  # unset: the scripts' budget: particles 7000 (N <= 316) or 15000, 3-body 5000
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

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data):
        """Fill what the run scripts derive from the task and N into the config itself, so config.yaml holds the
        numbers the run uses (and a paper run can be shrunk by count): keys left unset (or null) only."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        task = data.get("task", "particle")
        if not isinstance(task, str) or task not in TASK_GROUPS:
            return data  # the Literal check names the key
        if data.get("n_train") is None:
            data["n_train"] = {"particle": 1000, "o2_toy": 128, "three_body": None}[task]
        if data.get("n_test") is None:
            data["n_test"] = {"particle": data["n_train"], "o2_toy": 1000, "three_body": None}[task]
        if data.get("steps") is None:
            if task == "particle":  # run_scripts/ParticleInteraction: 7000 steps for N <= 316, 15000 above
                n = data["n_train"]
                data["steps"] = 7000 if isinstance(n, int) and n <= 316 else 15000
            else:
                data["steps"] = {"three_body": 5000, "o2_toy": 300}[task]
        if data.get("update_grid") is None:
            data["update_grid"] = task != "particle"  # the scripts' --update_grid: on except for particles
        return data

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
        """N; None: every training window of the prepared split (three-body)."""
        return self.n_train

    @property
    def test_size(self) -> int | None:
        return self.n_test

    @property
    def budget(self) -> int:
        return self.steps

    @property
    def grid_updates(self) -> bool:
        return self.update_grid and self.model in ("ekan", "kan")
