"""The `nupa` prepare source (pipelines/datasets/tokens.py) and its reader (components/core/tokens.py)."""

from __future__ import annotations

import pytest

from components.core.errors import ConfigError, DataError
from components.core.tokens import read_records
from pipelines.datasets import check_spec, prepare, verify

SPEC = {
    "source": "nupa", "task": "add", "representation": "integer", "train_min": 1, "train_max": 3, "test_min": 2,
    "test_max": 5, "train_per_length": 300, "valid_per_length": 20, "test_per_length": 30, "samples_per_shard": 200,
}  # fmt: skip


def test_prepare_is_byte_identical_decontaminated_and_readable(tmp_path):
    first = prepare("tokens/add", dict(SPEC), tmp_path / "a")
    second = prepare("tokens/add", dict(SPEC), tmp_path / "b")
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(p.name for p in second.iterdir()) and "manifest.json" in files
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert len([f for f in files if f.startswith("train-")]) >= 2  # 300 x 3 before dedup, 200 per shard
    assert verify(tmp_path / "a", "tokens/add") == ["tokens/add"]
    manifest, train = read_records(tmp_path / "a", "tokens/add", "train")
    _, val = read_records(tmp_path / "a", "tokens/add", "val")
    _, test = read_records(tmp_path / "a", "tokens/add", "test")
    keys = {split: {(r["a"], r["b"]) for r in rows} for split, rows in (("train", train), ("val", val), ("test", test))}
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"] and not keys["train"] & keys["val"]
    assert manifest["decontamination"]["test"]["dropped"] > 0  # short lengths collide: the drop is real
    assert {r["length"] for r in train} == {1, 2, 3} and {r["length"] for r in test} == {2, 3, 4, 5}
    assert all(int(r["a"]) + int(r["b"]) == int(r["answer"]) for r in train + test)
    assert manifest["per_length"]["test"]["5"] == 30 and manifest["output_representation"] == "integer"


def test_a_corrupt_shard_is_a_data_error(tmp_path):
    out = prepare("tokens/add", dict(SPEC), tmp_path)
    shard = out / "test-000000.tar"
    data = bytearray(shard.read_bytes())
    index = data.index(b'"answer":"') + 10
    data[index] = ord("9") if data[index] != ord("9") else ord("8")  # one digit of one answer
    shard.chmod(0o644)
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its sha256"):
        read_records(tmp_path, "tokens/add", "test")


def test_bad_options_are_config_errors_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="not one of the 41 valid combinations"):
        prepare("tokens/bad", {"source": "nupa", "task": "floordiv", "representation": "float"}, tmp_path)
    with pytest.raises(ConfigError, match="unknown option 'lengths'"):
        check_spec("tokens/bad", {"source": "nupa", "task": "add", "representation": "integer", "lengths": 3})
    with pytest.raises(ConfigError, match="must be one of"):
        check_spec("tokens/bad", {"source": "nupa", "task": "add", "representation": "decimal"})
    with pytest.raises(ConfigError, match="1 <= min <= max"):
        prepare("tokens/bad", {**SPEC, "test_min": 6}, tmp_path)
    assert not (tmp_path / "tokens/bad").exists()
