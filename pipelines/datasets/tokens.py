"""Token datasets: the NUPA number-task generator (nupa.md §3.1-3.3) as a prepare source.

`prepare_nupa` writes `data/tokens/<name>/` with WebDataset shards `<split>-%06d.tar` (train, val, test) and a
`manifest.json` (task, representation, length ranges, seeds, counts per length, decontamination counts). One
sample is `<key>.cls` (its length L, as text) and `<key>.json` ({task, representation, length, a, b, answer}):
the number strings in their canonical form, one character per one-digit token. The tokenizer (digits per
token, split direction, reversal, padding, index hints) is applied by the component, because it is a sweep
axis of the paper; the data stays one dataset for every tokenizer. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from components.core import numbers
from components.core.errors import ConfigError
from components.core.files import atomic_directory
from components.core.shards import MANIFEST, manifest_bytes, write_split

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options
BASE_SEED = 208171  # the official base seed (benchmark_generate.py)
Task = Literal[
    "add", "sub", "multiply", "truediv", "floordiv", "mod", "max", "min", "digit_max", "digit_min", "digit_add",
    "get_digit", "length", "count", "to_float", "to_scientific", "sig_fig",
]  # fmt: skip
RepresentationName = Literal["integer", "float", "fraction", "scientific"]
Rounding = Literal["official", "exact"]


def prepare_nupa(
    out_dir: Path,
    *,
    task: Task,
    representation: RepresentationName,
    train_min: int | None = None,
    train_max: int | None = None,
    test_min: int | None = None,
    test_max: int | None = None,
    train_per_length: int = 100_000,
    valid_per_length: int = 1000,
    test_per_length: int = 1000,
    seed: int = BASE_SEED,
    rounding: Rounding = "official",
    samples_per_shard: int = 50_000,
) -> dict:
    """One (task, representation) of NUPA: train/val/test, decontaminated (val drops train's pairs, test drops
    both); length ranges default to the official regime of the task (add-like: train 1-8, test 3-20; compare-
    like: train 1-20, test 5-100; see components/core/numbers.py:regime)."""
    where = f"nupa source ({task}, {representation})"
    if task not in numbers.VALID[representation]:
        valid = ", ".join(numbers.VALID[representation])
        raise ConfigError(f"{where}: task {task} is not one of the 41 valid combinations; {representation} has {valid}")
    official = numbers.regime(task, representation)
    train = (train_min or official["train"][0], train_max or official["train"][1])
    test = (test_min or official["test"][0], test_max or official["test"][1])
    for label, (low, high) in (("train", train), ("test", test)):
        if not 1 <= low <= high:
            raise ConfigError(f"{where}: {label}_min/{label}_max must satisfy 1 <= min <= max, got {low}..{high}")
    for key, count in (("train_per_length", train_per_length), ("valid_per_length", valid_per_length),
                       ("test_per_length", test_per_length)):  # fmt: skip
        if count < 1:
            raise ConfigError(f"{where}: option {key} must be >= 1, got {count}")
    max_length = max(official["max"], train[1], test[1])
    samples, dropped = numbers.splits(
        task, representation, train_lengths=train, test_lengths=test, train_per_length=train_per_length,
        test_per_length=test_per_length, valid_per_length=valid_per_length, seed=seed, rounding=rounding,
    )  # fmt: skip
    out_dir = Path(out_dir)
    options = {
        "task": task, "representation": representation, "train_min": train_min, "train_max": train_max,
        "test_min": test_min, "test_max": test_max, "train_per_length": train_per_length,
        "valid_per_length": valid_per_length, "test_per_length": test_per_length, "seed": seed,
        "rounding": rounding, "samples_per_shard": samples_per_shard,
    }  # fmt: skip
    manifest = {
        "name": f"{out_dir.parent.name}/{out_dir.name}",
        "kind": out_dir.parent.name,
        "source": "nupa",
        "options": options,
        "generator_version": GENERATOR_VERSION,
        "format": "nupa-json",
        "task": task,
        "representation": representation,
        "output_representation": numbers.output_representation(task, representation),
        "lengths": {"train": list(train), "val": list(test), "test": list(test)},
        "max_length": max_length,
        "seeds": {"train": seed, "val": seed + 1, "test": seed + 2},
        "decontamination": {split: {"dropped": count} for split, count in dropped.items()},
        "per_length": {
            split: {str(k): v for k, v in sorted(per_length_counts(rows).items())} for split, rows in samples.items()
        },
        "splits": {},
    }
    with atomic_directory(out_dir) as staging:
        for split, rows in samples.items():
            payloads = ((record_bytes(row), row.length) for row in rows)
            manifest["splits"][split] = write_split(
                staging, split, payloads, extension="json", samples_per_shard=samples_per_shard, total=len(rows),
                description=f"{manifest['name']} {split}",
            )  # fmt: skip
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest


def record_bytes(sample: numbers.Sample) -> bytes:
    record = {
        "task": sample.task, "representation": sample.representation, "length": sample.length,
        "a": sample.a, "b": sample.b, "answer": sample.answer,
    }  # fmt: skip
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def per_length_counts(rows: list[numbers.Sample]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for row in rows:
        counts[row.length] = counts.get(row.length, 0) + 1
    return counts
