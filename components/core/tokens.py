"""Reader of token datasets (pipelines/datasets/tokens.py): the JSON records of one split, checked against the
manifest (sizes, tar structure, sha256 once per file version) before any record is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.core.errors import DataError, did_you_mean
from components.core.shards import ShardMembers, check_dataset, prepare_command, verify_file


def read_records(data_root: Path, name: str, split: str) -> tuple[dict, list[dict]]:
    """(manifest, records) of one split; a missing split, corrupt shard or record is a DataError naming it."""
    manifest = check_dataset(data_root, name, verify=False)
    if manifest.get("format") != "nupa-json":
        raise DataError(f"dataset '{name}' is not a token dataset of number tasks (format {manifest.get('format')})")
    splits = manifest["splits"]
    if split not in splits:
        raise DataError(
            f"dataset '{name}' has no split '{split}'{did_you_mean(split, splits)}: it has {', '.join(splits)}"
        )
    records: list[dict] = []
    classes = int(manifest["max_length"]) + 1
    for shard in splits[split]["shards"]:
        path = Path(data_root) / name / shard["file"]
        members = ShardMembers(path, name, "json", len(records), int(shard["count"]), classes)
        verify_file(path, shard.get("sha256"), name)
        data = np.memmap(path, dtype=np.uint8, mode="r")
        for offset, size, length in zip(members.payload_offsets, members.payload_sizes, members.labels):
            try:
                record = json.loads(data[offset : offset + size].tobytes())
            except ValueError:
                raise DataError(
                    f"shard {path} has a corrupt record: re-prepare it with `{prepare_command(name)}`"
                ) from None
            if record.get("length") != int(length):
                raise DataError(f"shard {path} has a record whose length disagrees with its label: re-prepare it")
            records.append(record)
    if len(records) != int(splits[split]["count"]):
        raise DataError(
            f"dataset '{name}' split '{split}' holds {len(records)} records, manifest says {splits[split]['count']}"
        )
    return manifest, records
