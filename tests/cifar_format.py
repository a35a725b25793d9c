"""Write CIFAR's python-batch format (the layout of the official cifar-10-batches-py / cifar-100-python tarballs)
with random pixels, for the tests of the cifar-python source and of the components that train on CIFAR."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """data_batch_1..5 (per_batch images each), test_batch and batches.meta; returns the train images [N, 32, 32, 3]
    and labels in file order. Each pixel row is stored as the format does: 1024 R, then G, then B values."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    all_images, all_labels = [], []
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in np.arange(count) % 10]
        planes = images.transpose(0, 3, 1, 2).reshape(count, 3072)
        with open(root / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": planes}, handle)
        if name != "test_batch":
            all_images.append(images)
            all_labels.extend(labels)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, handle)
    return np.concatenate(all_images), np.asarray(all_labels)


def prepared_cifar10(root: Path, per_batch: int = 20) -> Path:
    """CIFAR-10 python batches written under root and prepared as images/cifar10 through the cifar-python source."""
    from pipelines.datasets import prepare

    write_cifar10(root / "cifar-10-batches-py", per_batch=per_batch)
    prepare("images/cifar10", {"source": "cifar-python", "src": str(root / "cifar-10-batches-py")}, root)
    return root


def write_cifar100(root: Path, train: int = 200, test: int = 100, seed: int = 0) -> dict[str, tuple]:
    """cifar-100-python/: train, test (b'fine_labels', b'coarse_labels', b'data') and meta (b'fine_label_names');
    labels cycle over the 100 fine classes. Returns {"train": (images, labels), "test": ...} in file order."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, count in (("train", train), ("test", test)):
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        fine = [int(v) for v in np.arange(count) % 100]
        planes = images.transpose(0, 3, 1, 2).reshape(count, 3072)
        batch = {b"filenames": [b"x.png"] * count, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
        with open(root / name, "wb") as handle:
            pickle.dump(batch | {b"batch_label": name.encode(), b"data": planes}, handle)
        arrays[name] = (images, np.asarray(fine))
    with open(root / "meta", "wb") as handle:
        fine_names = [f"class{i:02d}".encode() for i in range(100)]
        pickle.dump({b"fine_label_names": fine_names, b"coarse_label_names": [b"c"] * 20}, handle)
    return arrays
