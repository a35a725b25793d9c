"""CIFAR-10 and CIFAR-100 in the python-batch format of the official tarballs (`cifar-10-batches-py/`:
data_batch_1..5, test_batch, batches.meta; `cifar-100-python/`: train, test, meta), as PNG image shards.

Train is the official training set less a seeded, stratified validation hold-out; test is the official test
set. The batches are Python pickles, as the dataset is distributed: only point `src` at a folder you trust.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from components.core.errors import ConfigError, DataError
from components.core.shards import write_image_dataset
from pipelines.datasets.images import stratified_split

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options
LAYOUTS = {  # which files make each split, and where the class names are
    "cifar-10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "meta": "batches.meta"},
    "cifar-100": {"train": ["train"], "test": ["test"], "meta": "meta"},
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"cannot read CIFAR batch {path} ({type(error).__name__}): re-extract the tarball") from None


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: images uint8 [N, 32, 32, 3] (stored as R, G, B planes of 1024) and labels."""
    batch = _unpickle(path)
    labels = batch.get(b"labels", batch.get(b"fine_labels"))
    if b"data" not in batch or labels is None:
        raise DataError(
            f"CIFAR batch {path} has no data/labels: is src a cifar-10-batches-py or cifar-100-python folder?"
        )
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR batch {path}: data of shape {data.shape}, expected [N, 3072]")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, dtype=np.int64)


def _layout(root: Path) -> str:
    for name, layout in LAYOUTS.items():
        if all((root / f).is_file() for f in [*layout["train"], *layout["test"], layout["meta"]]):
            return name
    raise DataError(
        f"{root} (option src) is not an extracted CIFAR python folder: expected data_batch_1..5, test_batch and "
        "batches.meta (CIFAR-10) or train, test and meta (CIFAR-100)"
    )


def _png_samples(images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[bytes, int]]:
    for image, label in zip(images, labels):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=6)  # lossless: CIFAR's pixels as given
        yield buffer.getvalue(), int(label)


def prepare_cifar_python(
    out_dir: Path, *, src: str, val_fraction: float = 0.1, seed: int = 0, samples_per_shard: int = 10000
) -> dict:
    """The official python batches at 32 x 32: val_fraction of train (stratified, seeded) held out as val."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"cifar-python: option val_fraction must be in [0, 1), got {val_fraction}")
    if int(samples_per_shard) != samples_per_shard or samples_per_shard < 1:
        raise ConfigError(f"cifar-python: option samples_per_shard must be an integer >= 1, got {samples_per_shard}")
    root = Path(src)
    layout = LAYOUTS[_layout(root)]
    meta = _unpickle(root / layout["meta"])
    names = meta.get(b"label_names", meta.get(b"fine_label_names"))
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    parts = [_batch(root / f) for f in layout["train"]]
    train_images, train_labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test_images, test_labels = _batch(root / layout["test"][0])
    split = stratified_split(train_labels, val_fraction, 0.0, np.random.default_rng(seed))
    arrays = {
        "train": (train_images[split["train"]], train_labels[split["train"]]),
        "val": (train_images[split["val"]], train_labels[split["val"]]),
        "test": (test_images, test_labels),
    }
    return write_image_dataset(
        out_dir,
        source="cifar-python",
        options={"src": str(src), "val_fraction": float(val_fraction), "seed": int(seed)}
        | {"samples_per_shard": int(samples_per_shard)},
        generator_version=GENERATOR_VERSION,
        image_format="png",
        shape=[32, 32, 3],
        classes=classes,
        splits={name: (len(labels), _png_samples(images, labels)) for name, (images, labels) in arrays.items()},
        samples_per_shard=int(samples_per_shard),
    )
