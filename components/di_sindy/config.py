"""di_sindy's Config. The paper's settings are not retrievable (di_sindy.md §1, §4): defaults are the spec's
reconstruction (§3.4 regression, §4 data, §7 trial counts), each assumption a switch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PdeName = Literal["kdv", "burgers", "ks", "mkdv"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pde: PdeName = "kdv"  # the equation to discover; mkdv is the spec's labelled guess for the unresolved nKdV
    dataset: str = "fields/{pde}_paper"  # the prepared fields ({pde} is filled in); smoke reads fields/{pde}
    n_trials: int = Field(50, ge=1)  # >= 50 trials per (PDE, noise) cell at full scale (§7): one train trajectory each
    noise: float = Field(
        0.0, ge=0
    )  # relative Gaussian noise std (x std(u)), drawn at read time (§4: 0, 0.1 %, 1 %, 5 %)

    route: Literal["A", "B"] = "A"  # A: closed-form invariants; B: sympy null space of the prolonged generators
    lib_order: int = Field(4, ge=1, le=4)  # invariants up to u_xxxx (§3.3 table)
    lib_degree: int = Field(2, ge=1, le=3)  # degree <= 2 in the invariants (§3.3; mkdv needs 3 for u^2 u_x)
    use_scaling: bool = False  # the optional "full group" mode: keep features of the target's scaling weight
    projective: bool = False  # Burgers' projective generator too (route B; removes nothing further, §3.3)
    galilean_c: float | None = None  # None: the PDE's boost t d_x + c d_u (c = 1/a); a number overrides it (§8)

    diff_method: Literal["spectral", "lowpass", "savgol"] = "spectral"  # spectral on clean periodic data (§3.4)
    cutoff: float = Field(0.5, gt=0, le=1)  # lowpass: keep modes up to this fraction of Nyquist
    savgol_window: int = Field(9, ge=7)  # savgol: odd window in grid points (polynomial order 5)
    trim: int = Field(2, ge=1)  # time slices dropped at each end (§3.4 step 2)

    tau: float = Field(0.05, gt=0)  # STLSQ threshold in original units (§3.4: sweep {0.01 .. 0.2}; check 3 at 0.05)
    alpha: float = Field(1e-5, ge=0)  # ridge (§3.4)
    max_iter: int = Field(20, ge=1)  # thresholding rounds (§3.4)
    solver: Literal["own", "pysindy"] = "own"  # own STLSQ (no dependency) or pysindy 2.x's (parity-tested)
    raw_power: int = Field(2, ge=0, le=3)  # PDE-FIND baseline library u^p d_x^q u, p <= 2 ...
    raw_order: int = Field(4, ge=1, le=4)  # ... q <= 4: 15 terms (§3.4)
    baseline: bool = True  # fit PDE-FIND on the identical derivatives

    rollout_trials: int = Field(1, ge=0)  # discovered equations simulated from held-out initial conditions
    rollout_horizons: tuple[float, ...] = (0.25, 1.0)  # fractions of the held-out trajectory's time span
    rollout_cap: float = Field(10.0, gt=0)  # a blown-up rollout is reported as this relative error

    @model_validator(mode="after")
    def _check(self):
        try:
            self.dataset.format(pde=self.pde)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"dataset '{self.dataset}': only the placeholder {{pde}} is allowed") from None
        if self.projective and self.route != "B":
            raise ValueError("projective: the projective generator needs route B (set route=B)")
        if self.savgol_window % 2 == 0:
            raise ValueError(f"savgol_window must be odd, got {self.savgol_window}")
        if any(not 0 < h <= 1 for h in self.rollout_horizons):
            raise ValueError(f"rollout_horizons are fractions in (0, 1], got {self.rollout_horizons}")
        return self

    @property
    def dataset_name(self) -> str:
        return self.dataset.format(pde=self.pde)
