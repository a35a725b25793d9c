"""HLOP's Config. Defaults are the paper's PMNIST setting trained with BPTT + surrogate gradients (hlop.md §3.5-3.7,
the spiking_train_pmnist_bptt.py defaults: MLP 784-800-800-10, T = 6, one epoch per task, SGD 0.1); presets shrink
counts. The paired controls (plain sequential fine-tuning, the SVD subspace) run in the same run, same seed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["hlop", "baseline", "svd"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "continual/pmnist"  # permuted-tasks over images/mnist (paperzoo prepare continual pmnist)
    tasks: int = Field(10, ge=1)  # tasks of the sequence that are trained (PMNIST: 10 permutations)
    # what runs, in this order, from the same seed, init and batches: HLOP, then its paired controls
    methods: tuple[Method, ...] = ("hlop", "baseline", "svd")
    train_method: Literal["bptt"] = "bptt"  # BPTT + sigmoid surrogate (the paper's Table 1 row); DSR/OTTT: not here
    steps: int = Field(6, ge=1)  # T, SNN time steps: 6 for BPTT on PMNIST
    tau: float = Field(2.0, gt=1.0)  # SpikingJelly LIF tau = 2, decay_input False, soft reset, detach_reset
    v_threshold: float = Field(1.0, gt=0)  # SpikingJelly's default threshold
    surrogate_alpha: float = Field(4.0, gt=0)  # sigmoid surrogate width 4
    input_gain: float = Field(1.0, gt=0)  # pixels in [0, 1] times this are the direct-coded input current
    hidden: tuple[int, ...] = (800, 800)  # hidden widths of the MLP (no biases)
    k0: tuple[int, ...] = (80, 200, 100)  # subspace neurons per HLOP layer for task 0 (input, hidden 1, classifier in)
    k_inc: tuple[int, ...] = (70, 70, 70)  # neurons added per later task
    k_decay: int = Field(20, ge=0)  # k_inc shrinks by this ...
    k_decay_every: int = Field(3, ge=1)  # ... at tasks 3, 6, 9 (70 -> 50, 30, 10), as the official script
    k_scale: float = Field(1.0, gt=0)  # sweep knob: every subspace size times this (rounded)
    hlop_lr: tuple[float, ...] = (0.001, 0.01, 0.01)  # eta: 0.001 on the raw 784-d pixels, 0.01 elsewhere
    hlop_iters: int = Field(5, ge=1)  # Hebbian iterations per minibatch (hlop_iteration)
    hlop_momentum: float = Field(0.9, ge=0, lt=1)  # m = 0.9 m + 0.1 dH
    hlop_clamp: float = Field(10.0, gt=0)  # dH clipped to +-10 (divergence guard on raw inputs)
    spiking_lateral: bool = False  # rate-coded lateral neurons (hlop.md §3.4) instead of linear ones
    lateral_steps: int = Field(40, ge=1)  # T_h of the spiking lateral neurons (README example 40)
    lateral_scale: float = Field(20.0, gt=0)  # their clip scale s
    projection: Literal["input", "weight"] = "input"  # project x (proj_type='input') or grad W (equivalent)
    svd_samples: int = Field(125, ge=1)  # the SVD control's activity sample per task (GPM's 125 for the MLP)
    epochs: int = Field(1, ge=1)  # epochs per task (PMNIST: 1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.1, gt=0)  # SGD on task 0
    lr_later: float = Field(0.1, gt=0)  # SGD on tasks >= 1 (PMNIST: the same 0.1)
    momentum: float = Field(0.0, ge=0, lt=1)  # PMNIST: plain SGD
    eval_split: Literal["test", "val"] = "test"  # the split every accuracy of the task matrix is measured on
    eval_batch_size: int = Field(1000, ge=1)
    divergence_limit: float = Field(1e4, gt=0)  # a loss above this (or non-finite) stops the run

    @model_validator(mode="after")
    def _layer_lists(self) -> Config:
        layers = len(self.hidden) + 1
        for key in ("k0", "k_inc", "hlop_lr"):
            if len(getattr(self, key)) != layers:
                raise ValueError(f"{key} needs one entry per HLOP layer ({layers}: the input and each hidden layer)")
        if len(set(self.methods)) != len(self.methods) or not self.methods:
            raise ValueError(f"methods must be distinct and non-empty; got {list(self.methods)}")
        return self

    def subspace_sizes(self, task: int) -> list[int]:
        """Neurons each layer adds at the start of `task` (hlop.md §3.6, scaled by k_scale)."""
        if task == 0:
            sizes = self.k0
        else:
            sizes = tuple(max(0, k - self.k_decay * (task // self.k_decay_every)) for k in self.k_inc)
        return [round(k * self.k_scale) for k in sizes]
