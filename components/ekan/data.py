"""The datasets EKAN trains on: procedural particle scattering and the O(2) toy (generated in the run,
seeded) and the prepared three-body orbits (`tables/three_body`, written by the `three-body` source)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.core.errors import DataError
from components.core.shards import check_dataset

INPUT_STEPS = 4  # the paper's windows: 4 past states predict the next one


class ThreeBodyTable:
    """A prepared three-body dataset: per split an array (trajectories, time, 3 bodies, (q_x, q_y, v_x, v_y))."""

    def __init__(self, data_root: Path, name: str):
        self.name = name
        self.manifest = check_dataset(data_root, name)
        if self.manifest.get("kind") != "tables" or self.manifest.get("source") != "three-body":
            raise DataError(
                f"dataset '{name}' is {self.manifest.get('kind')!r} data from "
                f"{self.manifest.get('source')!r}, not three-body orbits"
            )
        self.arrays = {}
        for split, entry in self.manifest["splits"].items():
            array = np.load(Path(data_root) / name / f"{split}.npy", allow_pickle=False)
            if list(array.shape) != entry["shape"]:
                raise DataError(
                    f"{Path(data_root) / name / f'{split}.npy'} has shape {list(array.shape)}, "
                    f"the manifest says {entry['shape']}: re-prepare it"
                )
            self.arrays[split] = array

    def windows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """X (N, 48) = 4 states of 3 bodies as 24 vectors of R^2, Y (N, 12) = the next state, 6 vectors.

        As the official reader, t runs over timesteps - 5 windows per trajectory (45 of 50), trajectory-major."""
        orbits = self.arrays[split]
        starts = orbits.shape[1] - INPUT_STEPS - 1
        inputs = np.stack([orbits[:, t : t + INPUT_STEPS] for t in range(starts)], axis=1)
        targets = orbits[:, INPUT_STEPS : INPUT_STEPS + starts]
        return inputs.reshape(-1, INPUT_STEPS * 12), targets.reshape(-1, 12)


def particle_scattering(x: np.ndarray) -> np.ndarray:
    """EMLP's electron-muon scattering amplitude of four 4-momenta (x: (N, 16) -> (N, 1)), metric (+,-,-,-).

    L_e = p1 p3^T - (<p1,p3> - <p1,p1>) eta, L_mu = (eta p2)(eta p4)^T - (<p2,p4> - <p2,p2>) eta,
    y = 4 sum_{mu nu} L_e L_mu."""
    eta = np.diag([1.0, -1.0, -1.0, -1.0])
    p1, p2, p3, p4 = np.moveaxis(x.reshape(-1, 4, 4), 1, 0)

    def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ni,ij,nj->n", a, eta, b)

    electron = p1[:, :, None] * p3[:, None, :] - (dot(p1, p3) - dot(p1, p1))[:, None, None] * eta
    muon = (p2 @ eta)[:, :, None] * (p4 @ eta)[:, None, :] - (dot(p2, p4) - dot(p2, p2))[:, None, None] * eta
    return 4 * np.sum(electron * muon, axis=(1, 2))[:, None]


def o2_toy(x: np.ndarray) -> np.ndarray:
    """ekan.md §6 setting B: x1, x2 in R^2 (x: (N, 4)) -> |x1|^2 x2 + (x1 . x2) x1 (N, 2), O(2)-equivariant."""
    x1, x2 = x[:, :2], x[:, 2:]
    return np.sum(x1**2, axis=1, keepdims=True) * x2 + np.sum(x1 * x2, axis=1, keepdims=True) * x1


PROCEDURAL = {  # task -> (input dim, input std, target function)
    "particle": (16, 0.25, particle_scattering),  # q, p, q', p' ~ N(0, 1/4^2) per entry
    "o2_toy": (4, 0.7, o2_toy),
}


def procedural(task: str, n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Train and test inputs drawn in that order from one seeded generator; targets exact (float64)."""
    dim, scale, target = PROCEDURAL[task]
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n_train, dim)) * scale
    test = rng.standard_normal((n_test, dim)) * scale
    return {"train_x": train, "train_y": target(train), "test_x": test, "test_y": target(test)}
