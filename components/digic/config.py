"""DIGIC's Config. Defaults are the full-scale setting (digic.md §7: a Gymnasium control task with expert
demonstrations, 2 x 256 policies); presets shrink counts, and the smoke preset runs the spec's SCM (§6)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScmConfig(BaseModel):
    """digic.md §6: the linear-Gaussian SCM with a spurious effect cue whose sign flips between domains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_train: int = Field(4000, ge=50)  # demonstration rows of the training domain (spec §6 run)
    n_test: int = Field(2000, ge=10)  # held-out rows per domain (train domain and shifted domain)
    beta_train: float = 1.0  # sign of the cue Z1 = beta A + noise in the training domain
    beta_shift: float = -1.0  # flipped in the shifted domain: the cue's relation to A reverses


class CartpoleConfig(BaseModel):
    """digic.md §7 on CartPole-v1: LQR expert with decision noise, an action-echo cue with a flipped sign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    demo_episodes: int = Field(50, ge=1)  # expert episodes of the training domain (spec §7: 10-100)
    test_episodes: int = Field(10, ge=1)  # held-out expert episodes per domain, for action accuracy
    eval_episodes: int = Field(10, ge=1)  # closed-loop episodes per policy and domain, for the mean return
    stride: int = Field(2, ge=1)  # discovery reads every k-th step: pooled steps are autocorrelated (spec §8)
    expert_noise: float = Field(3.0, ge=0)  # std of the expert's decision noise (force units): a = pi(s, eps)
    cue_noise: float = Field(0.6, gt=0)  # the cue's noise, as the SCM's Z1: a near-copy of A breaks faithfulness
    beta_train: float = 1.0  # cue = beta (2 a_E - 1) + noise: echoes the command in the training domain
    beta_shift: float = -1.0  # and is wired the other way round in the shifted domain


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["cartpole", "scm"] = "cartpole"  # spec §7 full scale; "scm" is the §6 synthetic check
    backend: Literal["pc", "mb"] = "pc"  # PC (DIGIC) or the Markov blanket by nodewise LassoCV (BC-MB)
    ci_test: Literal["fisherz", "kci"] = "fisherz"  # spec §3.2 default; kci is cubic in n (subsample first)
    alpha: float = Field(0.01, gt=0, lt=1)  # spec §3.2 default significance level of the CI tests
    depth: int = Field(-1, ge=-1)  # cap on PC's conditioning-set size; -1: none (10 variables need none)
    keep_undirected: bool = True  # conservative rule S = parents ∪ undirected (spec §3.2)
    tiers: bool = True  # cartpole: the state is measured before the action, so PC forbids A -> state
    policy: Literal["mlp", "linear"] = "mlp"  # MLP BC (spec §3.3); linear = ordinary least squares (SCM only)
    hidden: int = Field(256, ge=1)  # width of both hidden layers: 2 x 256 at full scale (spec §3.3)
    steps: int = Field(1000, ge=1)  # full-batch Adam steps of each policy (the tables are small)
    lr: float = Field(3e-3, gt=0)  # Adam step size of the spec's prototype
    scm: ScmConfig = ScmConfig()
    cartpole: CartpoleConfig = CartpoleConfig()

    @model_validator(mode="after")
    def linear_needs_continuous_actions(self) -> Config:
        if self.policy == "linear" and self.task == "cartpole":
            raise ValueError("policy 'linear' (least squares) needs a continuous action; cartpole's is discrete")
        return self
