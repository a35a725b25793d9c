"""MNIST (or Fashion-MNIST) from its distributed IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz) as 28 x 28 uint8 .npy image shards.

Train is the official training set less an optional seeded, stratified validation hold-out (none by default: the
continual-learning papers train on all 60k); test is the official test set.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from components.core.errors import ConfigError, DataError
from components.core.shards import encode_npy, write_image_dataset
from pipelines.datasets.images import stratified_split

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root} (option src) has no {stem} or {stem}.gz: point src at the folder of MNIST's IDX files")


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `dims` dimensions (3 for images, 1 for labels), gzipped or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path} ({type(error).__name__}): re-extract it") from None
    if len(data) < 4 + 4 * dims or data[0:2] != b"\0\0" or data[2] != IDX_UBYTE or data[3] != dims:
        raise DataError(f"{path} is not an IDX file of {dims}-d unsigned bytes (bad magic {data[:4].hex()})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {body.size} bytes of data, its header says {shape}: re-extract it")
    return body.reshape(shape)


def _samples(images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[bytes, int]]:
    for image, label in zip(images, labels):
        yield encode_npy(image), int(label)


def prepare_mnist_idx(
    out_dir: Path, *, src: str, val_fraction: float = 0.0, seed: int = 0, samples_per_shard: int = 10000
) -> dict:
    """The IDX files under src at 28 x 28; val_fraction of train (stratified, seeded) held out as val."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"mnist-idx: option val_fraction must be in [0, 1), got {val_fraction}")
    if int(samples_per_shard) != samples_per_shard or samples_per_shard < 1:
        raise ConfigError(f"mnist-idx: option samples_per_shard must be an integer >= 1, got {samples_per_shard}")
    root = Path(src)
    arrays = {}
    for split, (image_stem, label_stem) in FILES.items():
        images, labels = read_idx(_find(root, image_stem), 3), read_idx(_find(root, label_stem), 1)
        if len(images) != len(labels):
            raise DataError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
        if len(labels) and labels.max() > 9:
            raise DataError(f"{root}: {split} label {int(labels.max())} is not a digit 0..9")
        arrays[split] = (images, labels.astype(np.int64))
    train_images, train_labels = arrays["train"]
    split = stratified_split(train_labels, val_fraction, 0.0, np.random.default_rng(seed))
    splits = {
        "train": (train_images[split["train"]], train_labels[split["train"]]),
        "val": (train_images[split["val"]], train_labels[split["val"]]),
        "test": arrays["test"],
    }
    return write_image_dataset(
        out_dir,
        source="mnist-idx",
        options={"src": str(src), "val_fraction": float(val_fraction), "seed": int(seed)}
        | {"samples_per_shard": int(samples_per_shard)},
        generator_version=GENERATOR_VERSION,
        image_format="npy",
        shape=list(train_images.shape[1:]),
        classes=[str(d) for d in range(10)],
        splits={name: (len(labels), _samples(images, labels)) for name, (images, labels) in splits.items()},
        samples_per_shard=int(samples_per_shard),
    )
