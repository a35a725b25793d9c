"""The cifar-python source: CIFAR's official python batches, decoded pixel for pixel, a stratified seeded val
hold-out from train, the official test set, and one-line errors for a folder that is not CIFAR."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from components.core.errors import DataError
from components.core.shards import ImageShards
from pipelines.datasets import prepare
from tests.cifar_format import write_cifar10


def test_batches_become_the_same_pixels_with_a_stratified_val_hold_out(tmp_path):
    train_images, train_labels = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=20)
    prepare("images/cifar10", {"source": "cifar-python", "src": str(tmp_path / "cifar-10-batches-py")}, tmp_path)
    manifest = json.loads((tmp_path / "images/cifar10/manifest.json").read_text())
    assert manifest["shape"] == [32, 32, 3] and manifest["classes"][:2] == ["airplane", "automobile"]
    splits = {s: ImageShards(tmp_path, "images/cifar10", s).arrays() for s in ("train", "val", "test")}
    assert [len(splits[s][1]) for s in ("train", "val", "test")] == [90, 10, 20]
    assert sorted(splits["val"][1].tolist()) == list(range(10))  # one of each class: stratified
    by_bytes = {image.tobytes(): label for image, label in zip(train_images, train_labels)}
    for split in ("train", "val"):  # every stored image is an official training image, with its label
        assert all(by_bytes.get(image.tobytes()) == label for image, label in zip(*splits[split]))
    seen = {image.tobytes() for image in splits["train"][0]}
    assert not any(image.tobytes() in seen for image in splits["val"][0])
    # control: reading the planes as HWC directly (the classic layout bug) gives other images
    assert train_images[0].tobytes() != train_images[0].transpose(2, 0, 1).reshape(32, 32, 3).tobytes()


def test_not_a_cifar_folder_is_one_line(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DataError, match=r"not an extracted CIFAR python folder: expected data_batch_1\.\.5"):
        prepare("images/cifar10", {"source": "cifar-python", "src": str(tmp_path / "src")}, tmp_path / "out")
    write_cifar10(tmp_path / "bad")
    with open(tmp_path / "bad" / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(DataError, match=r"test_batch: data of shape \(2, 100\), expected \[N, 3072\]"):
        prepare("images/cifar10", {"source": "cifar-python", "src": str(tmp_path / "bad")}, tmp_path / "out")
    assert not (tmp_path / "out" / "images" / "cifar10").exists()
