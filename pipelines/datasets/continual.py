"""Continual-learning datasets derived from a prepared image dataset: one split set per task plus a task manifest.

`permuted-tasks` (PMNIST-style): task t holds every image of the parent with its pixel positions shuffled by a
fixed permutation (task 0 the identity unless identity_first is false); every task uses every class (one shared
head, domain-incremental). `split-classes` (split CIFAR-100): task t holds the images of its block of classes
(labels stay the parent's, so the manifest's task -> classes table names the task's head).

Splits are named `task<t>-<split>` (`task0-train`, `task0-val`, `task0-test`, ...), written like every prepared
dataset (deterministic tar shards, sha256 per shard, a staging folder swapped in at the end). The manifest records
the parent's name and the sha256 of its manifest, so the derived data's lineage names the exact parent version,
and per task its classes and the permutation's seed and digest.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from components.core.errors import ConfigError
from components.core.files import atomic_directory
from components.core.shards import (
    MANIFEST,
    ImageShards,
    check_dataset,
    encode_npy,
    manifest_bytes,
    sha256_file,
    write_split,
)

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options and parent


def _parent(out_dir: Path, parent: str, source: str) -> tuple[Path, dict]:
    """The data root (two levels above out_dir) and the parent's manifest, verified in full."""
    parts = parent.split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{source}: option parent must be a prepared dataset '<kind>/<name>', got '{parent}'")
    root = Path(out_dir).parent.parent
    if f"{Path(out_dir).parent.name}/{Path(out_dir).name}" == parent:
        raise ConfigError(f"{source}: option parent names the dataset being prepared ({parent})")
    manifest = check_dataset(root, parent)  # a missing parent is a DataError naming its prepare command
    if manifest.get("format") not in ("npy", "png"):
        raise ConfigError(
            f"{source}: parent {parent} holds '{manifest.get('format')}' data; it needs npy or png images"
        )
    return root, manifest


def _encode(image: np.ndarray, image_format: str) -> bytes:
    if image_format == "npy":
        return encode_npy(image)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _samples(images: np.ndarray, labels: np.ndarray, image_format: str) -> Iterator[tuple[bytes, int]]:
    for image, label in zip(images, labels):
        yield _encode(image, image_format), int(label)


def _write(
    out_dir: Path,
    *,
    source: str,
    options: dict,
    parent: str,
    parent_manifest_sha256: str,
    parent_manifest: dict,
    tasks: list[dict[str, Any]],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    samples_per_shard: int,
) -> dict:
    out_dir = Path(out_dir)
    name = f"{out_dir.parent.name}/{out_dir.name}"
    manifest: dict[str, Any] = {
        "name": name,
        "kind": out_dir.parent.name,
        "source": source,
        "options": options,
        "generator_version": GENERATOR_VERSION,
        "parent": {"name": parent, "manifest_sha256": parent_manifest_sha256},
        "format": parent_manifest["format"],
        "shape": parent_manifest["shape"],
        "dtype": "uint8",
        "classes": parent_manifest["classes"],
        "tasks": tasks,
        "splits": {},
    }
    with atomic_directory(out_dir) as staging:
        for split, (images, labels) in splits.items():
            manifest["splits"][split] = write_split(
                staging,
                split,
                _samples(images, labels, manifest["format"]),
                extension=manifest["format"],
                samples_per_shard=samples_per_shard,
                total=len(labels),
                description=f"{name} {split}",
            )
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest


def _check_common(source: str, tasks: int, samples_per_shard: int) -> None:
    if int(tasks) != tasks or tasks < 1:
        raise ConfigError(f"{source}: option tasks must be an integer >= 1, got {tasks}")
    if int(samples_per_shard) != samples_per_shard or samples_per_shard < 1:
        raise ConfigError(f"{source}: option samples_per_shard must be an integer >= 1, got {samples_per_shard}")


def permutation(task: int, seed: int, pixels: int, identity_first: bool) -> np.ndarray:
    """Task t's pixel-position permutation: np.random.default_rng([seed, t]); task 0 the identity if asked."""
    if task == 0 and identity_first:
        return np.arange(pixels)
    return np.random.default_rng([seed, task]).permutation(pixels)


def prepare_permuted_tasks(
    out_dir: Path,
    *,
    parent: str,
    tasks: int = 10,
    seed: int = 0,
    identity_first: bool = True,
    samples_per_shard: int = 10000,
) -> dict:
    """`tasks` pixel-permuted copies of every split of `parent` (a prepared image dataset)."""
    _check_common("permuted-tasks", tasks, samples_per_shard)
    root, parent_manifest = _parent(out_dir, parent, "permuted-tasks")
    shape = [int(s) for s in parent_manifest["shape"]]
    pixels = shape[0] * shape[1]  # positions are shuffled; the channels of one pixel move together
    originals = {
        split: ImageShards(root, parent, split).arrays()
        for split, entry in parent_manifest["splits"].items()
        if entry["count"]
    }
    entries, splits = [], {}
    for task in range(int(tasks)):
        order = permutation(task, int(seed), pixels, identity_first)
        names = {}
        for split, (images, labels) in originals.items():
            flat = images.reshape(len(images), pixels, -1)
            splits[f"task{task}-{split}"] = (flat[:, order].reshape(images.shape), labels)
            names[split] = f"task{task}-{split}"
        entries.append(
            {
                "task": task,
                "splits": names,
                "classes": list(range(len(parent_manifest["classes"]))),
                "permutation_seed": None if task == 0 and identity_first else [int(seed), task],
                "permutation_sha256": hashlib.sha256(order.astype("<i8").tobytes()).hexdigest(),
            }
        )
    return _write(
        out_dir,
        source="permuted-tasks",
        options={"parent": parent, "tasks": int(tasks), "seed": int(seed), "identity_first": bool(identity_first)}
        | {"samples_per_shard": int(samples_per_shard)},
        parent=parent,
        parent_manifest_sha256=sha256_file(root / parent / MANIFEST),
        parent_manifest=parent_manifest,
        tasks=entries,
        splits=splits,
        samples_per_shard=int(samples_per_shard),
    )


def prepare_split_classes(
    out_dir: Path,
    *,
    parent: str,
    tasks: int = 10,
    seed: int = 0,
    shuffle_classes: bool = False,
    samples_per_shard: int = 10000,
) -> dict:
    """`parent`'s classes in `tasks` equal blocks (in class order, or a seeded shuffle), one split set per block."""
    _check_common("split-classes", tasks, samples_per_shard)
    root, parent_manifest = _parent(out_dir, parent, "split-classes")
    count = len(parent_manifest["classes"])
    if count % int(tasks):
        raise ConfigError(f"split-classes: option tasks={tasks} does not divide the {count} classes of {parent}")
    order = np.random.default_rng(int(seed)).permutation(count) if shuffle_classes else np.arange(count)
    blocks = order.reshape(int(tasks), -1)
    originals = {
        split: ImageShards(root, parent, split).arrays()
        for split, entry in parent_manifest["splits"].items()
        if entry["count"]
    }
    entries, splits = [], {}
    for task, block in enumerate(blocks):
        names = {}
        for split, (images, labels) in originals.items():
            keep = np.isin(labels, block)
            splits[f"task{task}-{split}"] = (images[keep], labels[keep])
            names[split] = f"task{task}-{split}"
        entries.append({"task": task, "splits": names, "classes": sorted(int(c) for c in block)})
    return _write(
        out_dir,
        source="split-classes",
        options={"parent": parent, "tasks": int(tasks), "seed": int(seed), "shuffle_classes": bool(shuffle_classes)}
        | {"samples_per_shard": int(samples_per_shard)},
        parent=parent,
        parent_manifest_sha256=sha256_file(root / parent / MANIFEST),
        parent_manifest=parent_manifest,
        tasks=entries,
        splits=splits,
        samples_per_shard=int(samples_per_shard),
    )
