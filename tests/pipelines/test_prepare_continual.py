"""The continual data stage: permuted-tasks (PMNIST-style) and split-classes (split CIFAR-100) derive one split set
per task from a prepared image dataset, with a task manifest and the parent's digest (pipelines/datasets/continual.py)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from components.core.errors import ConfigError, DataError
from components.core.shards import ImageShards
from pipelines.datasets import prepare, verify
from pipelines.datasets.continual import permutation

DIGITS = {"source": "sklearn-digits", "repeat": 1}
PERMUTED = {"source": "permuted-tasks", "parent": "images/digits", "tasks": 3, "seed": 0}


@pytest.fixture
def permuted(tmp_path):
    prepare("images/digits", DIGITS, tmp_path)
    prepare("continual/permuted_digits", PERMUTED, tmp_path)
    return tmp_path


def manifest_of(root, name="continual/permuted_digits") -> dict:
    return json.loads((root / name / "manifest.json").read_text())


def test_each_task_is_its_parents_splits_under_its_own_fixed_permutation(permuted):
    manifest = manifest_of(permuted)
    assert [t["task"] for t in manifest["tasks"]] == [0, 1, 2]
    orders = [permutation(task, 0, 64, identity_first=True) for task in range(3)]
    assert np.array_equal(orders[0], np.arange(64))  # task 0 is the digits themselves
    assert not np.array_equal(orders[1], orders[2]) and not np.array_equal(orders[1], orders[0])
    for task, entry in enumerate(manifest["tasks"]):
        assert entry["permutation_sha256"] == hashlib.sha256(orders[task].astype("<i8").tobytes()).hexdigest()
        assert entry["classes"] == list(range(10))
        for split in ("train", "val", "test"):
            assert entry["splits"][split] == f"task{task}-{split}"
            parent_images, parent_labels = ImageShards(permuted, "images/digits", split).arrays()
            images, labels = ImageShards(permuted, "continual/permuted_digits", f"task{task}-{split}").arrays()
            # the same samples of the same split (no test image reaches a train split), pixels moved by the order
            assert np.array_equal(labels, parent_labels)
            assert np.array_equal(
                images.reshape(len(images), -1), parent_images.reshape(len(images), -1)[:, orders[task]]
            )


def test_manifest_records_the_parents_digest_and_prepare_is_byte_stable(permuted, tmp_path):
    manifest = manifest_of(permuted)
    parent_bytes = (permuted / "images/digits/manifest.json").read_bytes()
    assert manifest["parent"] == {"name": "images/digits", "manifest_sha256": hashlib.sha256(parent_bytes).hexdigest()}
    assert manifest["source"] == "permuted-tasks" and manifest["options"]["tasks"] == 3
    prepare("continual/permuted_digits", PERMUTED, permuted)
    assert manifest_of(permuted) == manifest  # same parent and options: the same bytes, so DVC hashes are stable
    assert set(verify(permuted)) == {"images/digits", "continual/permuted_digits"}
    # a different parent version changes the derived manifest
    prepare("images/digits", DIGITS | {"seed": 1}, permuted)
    prepare("continual/permuted_digits", PERMUTED, permuted)
    assert manifest_of(permuted)["parent"]["manifest_sha256"] != manifest["parent"]["manifest_sha256"]


def test_missing_parent_and_bad_options_fail_before_writing(tmp_path):
    with pytest.raises(DataError, match="paperzoo prepare images digits"):
        prepare("continual/permuted_digits", PERMUTED, tmp_path)
    prepare("images/digits", DIGITS, tmp_path)
    with pytest.raises(ConfigError, match="option tasks"):
        prepare("continual/permuted_digits", PERMUTED | {"tasks": 0}, tmp_path)
    with pytest.raises(ConfigError, match="does not divide the 10 classes"):
        prepare("continual/split", {"source": "split-classes", "parent": "images/digits", "tasks": 3}, tmp_path)
    assert not (tmp_path / "continual").exists() or not any((tmp_path / "continual").iterdir())


def test_split_cifar100_from_its_python_batches(tmp_path):
    from tests.cifar_format import write_cifar100

    arrays = write_cifar100(tmp_path / "cifar-100-python")
    prepare("images/cifar100", {"source": "cifar-python", "src": str(tmp_path / "cifar-100-python")}, tmp_path)
    prepare("continual/cifar100", {"source": "split-classes", "parent": "images/cifar100", "tasks": 10}, tmp_path)
    manifest = manifest_of(tmp_path, "continual/cifar100")
    assert manifest["shape"] == [32, 32, 3] and manifest["format"] == "png" and len(manifest["classes"]) == 100
    assert [t["classes"] for t in manifest["tasks"]] == [list(range(10 * t, 10 * t + 10)) for t in range(10)]
    test_images, test_labels = ImageShards(tmp_path, "continual/cifar100", "task3-test").arrays()
    keep = (arrays["test"][1] >= 30) & (arrays["test"][1] < 40)
    assert np.array_equal(test_labels, arrays["test"][1][keep])  # the official test set's task-3 classes, in order
    assert np.array_equal(test_images, arrays["test"][0][keep])  # lossless PNG: CIFAR's pixels as given
    train_labels = np.concatenate(
        [ImageShards(tmp_path, "continual/cifar100", f"task{t}-train").labels for t in range(10)]
    )
    assert len(train_labels) == len(ImageShards(tmp_path, "images/cifar100", "train"))  # every train image, once
