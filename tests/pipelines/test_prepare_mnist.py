"""The mnist-idx source: MNIST's distributed IDX files (raw or gzipped) become 28 x 28 uint8 image shards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from components.core.errors import ConfigError, DataError
from components.core.shards import ImageShards
from pipelines.datasets import prepare, verify


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (ubyte), the number of dimensions, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_files(root: Path, train: int = 60, test: int = 30, seed: int = 0, gz: bool = True) -> dict:
    """train-/t10k- images and labels with random 28 x 28 pixels, labels cycling over the digits."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        arrays[prefix] = (images, labels)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                with gzip.GzipFile(root / f"{name}.gz", "wb", mtime=0) as handle:
                    handle.write(idx_bytes(array))
            else:
                (root / name).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_become_28x28_shards_with_their_labels(tmp_path, gz):
    arrays = write_idx_files(tmp_path / "raw", gz=gz)
    prepare("images/mnist", {"source": "mnist-idx", "src": str(tmp_path / "raw")}, tmp_path / "data")
    manifest = json.loads((tmp_path / "data/images/mnist/manifest.json").read_text())
    assert manifest["shape"] == [28, 28] and manifest["classes"] == [str(d) for d in range(10)]
    assert manifest["splits"]["val"]["count"] == 0  # all 60k train images train, as the papers do
    test_images, test_labels = ImageShards(tmp_path / "data", "images/mnist", "test").arrays()
    assert np.array_equal(test_images, arrays["t10k"][0]) and np.array_equal(test_labels, arrays["t10k"][1])
    train_images, train_labels = ImageShards(tmp_path / "data", "images/mnist", "train").arrays()
    order = np.lexsort(train_images.reshape(len(train_images), -1).T)
    expected = np.lexsort(arrays["train"][0].reshape(60, -1).T)
    assert np.array_equal(train_images[order], arrays["train"][0][expected])
    assert np.array_equal(train_labels[order], arrays["train"][1][expected])
    assert verify(tmp_path / "data") == ["images/mnist"]


def test_val_hold_out_is_stratified_and_prepare_is_byte_stable(tmp_path):
    write_idx_files(tmp_path / "raw", train=100)
    spec = {"source": "mnist-idx", "src": str(tmp_path / "raw"), "val_fraction": 0.2}
    prepare("images/mnist", spec, tmp_path / "a")
    prepare("images/mnist", spec, tmp_path / "b")
    first = (tmp_path / "a/images/mnist/manifest.json").read_text()
    assert first == (tmp_path / "b/images/mnist/manifest.json").read_text()
    val = ImageShards(tmp_path / "a", "images/mnist", "val")
    assert len(val) == 20 and np.bincount(val.labels).tolist() == [2] * 10


def test_bad_files_are_one_line_data_errors(tmp_path):
    write_idx_files(tmp_path / "raw", gz=False)
    (tmp_path / "raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"):
        prepare("images/mnist", {"source": "mnist-idx", "src": str(tmp_path / "raw")}, tmp_path / "data")
    write_idx_files(tmp_path / "raw", gz=False)
    (tmp_path / "raw/train-images-idx3-ubyte").write_bytes(b"\0\0\x0d\x03" + bytes(12))
    with pytest.raises(DataError, match="not an IDX file"):
        prepare("images/mnist", {"source": "mnist-idx", "src": str(tmp_path / "raw")}, tmp_path / "data")
    with pytest.raises(ConfigError, match="val_fraction"):
        prepare("images/mnist", {"source": "mnist-idx", "src": str(tmp_path / "raw"), "val_fraction": 1.0}, tmp_path)
    assert not (tmp_path / "data/images/mnist").exists()
