"""Matrix groups G in GL(d), given by Lie-algebra generators and discrete generators (ekan.md §3.1).

A group is data: its generators fix the equivariance constraints, `sample` draws elements for the
equivariance checks the way EMLP does (exp of a random algebra element, boosts scaled by 0.3, then
random powers of the discrete generators in a random order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.linalg import expm

from components.core.errors import ConfigError, did_you_mean


@dataclass(frozen=True, eq=False)
class Group:
    name: str
    lie_algebra: np.ndarray  # (r, d, d)
    discrete: np.ndarray  # (s, d, d)
    z_scale: np.ndarray | None = field(default=None)  # per-generator scale of the random algebra element

    @property
    def d(self) -> int:
        return self.lie_algebra.shape[-1] if len(self.lie_algebra) else self.discrete.shape[-1]

    @cached_property
    def is_orthogonal(self) -> bool:
        """V* = V exactly when every generator is orthogonal (A^T = -A, h^T h = I)."""
        skew = all(np.allclose(A.T, -A) for A in self.lie_algebra)
        unitary = all(np.allclose(h.T @ h, np.eye(self.d)) for h in self.discrete)
        return skew and unitary

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        g = np.eye(self.d)
        if len(self.lie_algebra):
            z = rng.standard_normal(len(self.lie_algebra))
            if self.z_scale is not None:
                z = z * self.z_scale
            g = expm(np.einsum("r,rij->ij", z, self.lie_algebra))
        if len(self.discrete):
            powers = rng.integers(-5, 5, size=(3, len(self.discrete)))
            for round_powers in powers:
                for i in rng.permutation(len(self.discrete)):
                    g = g @ np.linalg.matrix_power(self.discrete[i], int(round_powers[i]))
        return g

    def __repr__(self) -> str:
        return self.name


def _rotations(n: int) -> np.ndarray:
    gens = []
    for i in range(n):
        for j in range(i):
            A = np.zeros((n, n))
            A[i, j], A[j, i] = 1.0, -1.0
            gens.append(A)
    return np.array(gens).reshape(-1, n, n)


def special_orthogonal(n: int) -> Group:
    return Group(f"SO{n}", _rotations(n), np.zeros((0, n, n)))


def orthogonal(n: int) -> Group:
    reflection = np.eye(n)
    reflection[0, 0] = -1.0  # h = diag(-1, 1, ...): O(n) = SO(n) plus one reflection
    return Group(f"O{n}", _rotations(n), reflection[None])


def _lorentz_algebra() -> np.ndarray:
    """3 boosts (entries (0, i) and (i, 0) = 1) and 3 rotations of the spatial block, metric diag(1,-1,-1,-1)."""
    algebra = np.zeros((6, 4, 4))
    for i in range(3):
        algebra[i, 0, i + 1] = algebra[i, i + 1, 0] = 1.0
    algebra[3:, 1:, 1:] = _rotations(3)
    return algebra


BOOST_SCALE = np.array([0.3, 0.3, 0.3, 1.0, 1.0, 1.0])  # EMLP's z_scale: large boosts make float32 checks meaningless


def lorentz(name: str) -> Group:
    time_reversal = np.diag([-1.0, 1.0, 1.0, 1.0])
    discrete = {
        "SO13p": np.zeros((0, 4, 4)),  # proper orthochronous SO+(1,3)
        "SO13": -np.eye(4)[None],  # + PT = -I
        "O13": np.stack([-np.eye(4), time_reversal]),  # the full Lorentz group: -I and time reversal (so parity too)
    }[name]
    return Group(name, _lorentz_algebra(), discrete, BOOST_SCALE)


GROUP_NAMES = ("SO2", "O2", "SO3", "O3", "O5", "SO13p", "SO13", "O13")
_CACHE: dict[str, Group] = {}


def get_group(name: str) -> Group:
    if name not in GROUP_NAMES:
        raise ConfigError(
            f"unknown group '{name}'{did_you_mean(name, GROUP_NAMES)}; choose from {', '.join(GROUP_NAMES)}"
        )
    if name not in _CACHE:
        if name.startswith("SO1") or name == "O13":
            _CACHE[name] = lorentz(name)
        elif name.startswith("SO"):
            _CACHE[name] = special_orthogonal(int(name[2:]))
        else:
            _CACHE[name] = orthogonal(int(name[1:]))
    return _CACHE[name]
