"""Fields on a periodic 1-D grid, u[trajectory, time, x], as versioned .npy arrays plus a manifest, and the reader.

A dataset lives in `<data_root>/fields/<name>/`: `x.npy` (n_x,), `t.npy` (n_t,), `train.npy` and `test.npy`
(trajectories, n_t, n_x), float64, and `manifest.json` (source, options, generator version, the PDE and its
coefficients when known, the grid, each file's size and sha256). The arrays are clean: measurement noise is
applied when a run reads a trajectory (`FieldDataset.trajectory(..., noise=...)`), seeded by (seed, split,
index), so one prepared dataset serves every noise level of a sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.core.errors import DataError
from components.core.files import atomic_directory
from components.core.shards import MANIFEST, check_dataset, encode_npy, manifest_bytes, prepare_command, sha256_file

FIELD_SPLITS = ("train", "test")
GRID_TOLERANCE = 1e-9  # relative spacing deviation allowed before a grid is called non-uniform


def check_grid(x: np.ndarray, t: np.ndarray, where: str) -> tuple[float, float]:
    """(length of the periodic x-domain, dt) of uniform, increasing grids, else a DataError naming `where`."""
    for name, axis in (("x", x), ("t", t)):
        if axis.ndim != 1 or len(axis) < 2 or not np.all(np.isfinite(axis)):
            raise DataError(f"{where}: {name} must be a finite 1-D array of at least 2 points, got shape {axis.shape}")
        steps = np.diff(axis)
        if np.any(steps <= 0) or np.max(np.abs(steps - steps.mean())) > GRID_TOLERANCE * abs(steps.mean()) + 1e-15:
            raise DataError(f"{where}: {name} must be uniform and increasing (steps {steps.min():g}..{steps.max():g})")
    dx = float(np.mean(np.diff(x)))
    return dx * len(x), float(np.mean(np.diff(t)))


def write_field_dataset(
    out_dir: Path,
    *,
    source: str,
    options: dict,
    generator_version: int,
    x: np.ndarray,
    t: np.ndarray,
    splits: dict[str, np.ndarray],
    pde: dict[str, Any],
    notes: dict[str, Any] | None = None,
) -> dict:
    """Write x, t and each split's (trajectories, n_t, n_x) array and the manifest, atomically."""
    out_dir = Path(out_dir)
    where = f"{source} -> {out_dir}"
    length, dt = check_grid(np.asarray(x, float), np.asarray(t, float), where)
    for split, array in splits.items():
        if split not in FIELD_SPLITS:
            raise DataError(f"{where}: unknown split '{split}' (use {', '.join(FIELD_SPLITS)})")
        if array.ndim != 3 or array.shape[1:] != (len(t), len(x)):
            raise DataError(
                f"{where}: split {split} has shape {array.shape}, expected (trajectories, {len(t)}, {len(x)})"
            )
        if not np.all(np.isfinite(array)):
            raise DataError(f"{where}: split {split} has non-finite values (a blown-up simulation or a bad file)")
    arrays = {"x": np.asarray(x, np.float64), "t": np.asarray(t, np.float64)}
    arrays.update({split: np.asarray(a, np.float64) for split, a in splits.items()})
    with atomic_directory(out_dir) as staging:
        files = []
        for name, array in arrays.items():
            path = staging / f"{name}.npy"
            path.write_bytes(encode_npy(array))
            files.append({"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        manifest = {
            "name": f"{out_dir.parent.name}/{out_dir.name}",
            "kind": "fields",
            "source": source,
            "options": options,
            "generator_version": generator_version,
            "format": "npy",
            "layout": ["trajectory", "time", "x"],
            "dtype": "float64",
            "grid": {"n_x": len(x), "n_t": len(t), "length": length, "dt": dt, "periodic": True},
            "pde": pde,
            "splits": {
                split: {"trajectories": int(a.shape[0]), "shape": list(a.shape), "shards": []}
                for split, a in splits.items()
            },
            "files": files,
            **(notes or {}),
        }
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest


class FieldDataset:
    """A prepared fields dataset: the grid, the clean arrays, and noisy reads."""

    def __init__(self, data_root: Path, name: str):
        self.name = name
        self.root = Path(data_root) / name
        self.manifest = check_dataset(data_root, name)
        if self.manifest.get("kind") != "fields":
            raise DataError(
                f"dataset '{name}' is {self.manifest.get('kind')!r} data, not fields: "
                f"prepare fields with `{prepare_command(name)}`"
            )
        self.x = self._load("x")
        self.t = self._load("t")
        self.length, self.dt = check_grid(self.x, self.t, str(self.root))
        self.arrays = {split: self._load(split) for split in self.manifest["splits"]}
        for split, entry in self.manifest["splits"].items():
            if list(self.arrays[split].shape) != entry["shape"]:
                raise DataError(
                    f"{self.root / f'{split}.npy'} has shape {list(self.arrays[split].shape)}, the manifest says "
                    f"{entry['shape']}: re-prepare it with `{prepare_command(name)}`"
                )

    def _load(self, stem: str) -> np.ndarray:
        return np.load(self.root / f"{stem}.npy", allow_pickle=False)

    @property
    def pde(self) -> dict[str, Any]:
        return self.manifest.get("pde", {})

    def count(self, split: str) -> int:
        return int(self.arrays[split].shape[0]) if split in self.arrays else 0

    def trajectory(self, split: str, index: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
        """u[t, x] of one trajectory plus noise * std(u) * N(0, 1), drawn from default_rng([seed, split, index])."""
        if split not in self.arrays:
            raise DataError(f"dataset '{self.name}' has no {split} split (it has {', '.join(self.arrays)})")
        if not 0 <= index < self.count(split):
            raise DataError(f"dataset '{self.name}': {split} trajectory {index} of {self.count(split)} requested")
        clean = self.arrays[split][index]
        if noise == 0:
            return clean.copy()
        rng = np.random.default_rng([seed, FIELD_SPLITS.index(split), index])
        return clean + noise * clean.std() * rng.standard_normal(clean.shape)
