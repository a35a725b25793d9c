"""The shard writer and reader against naive references: stored content, batch order, ranks, workers, errors."""

import io
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset
from PIL import Image

from components.core.errors import DataError
from components.core.shards import (
    ImageShards,
    check_dataset,
    encode_npy,
    sha256_file,
    write_image_dataset,
)

NAME = "images/toy"
NUM_TRAIN = 300
SHAPE = (4, 5)
PER_SHARD = 64  # several shards, so batches gather across files


def toy_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *SHAPE), dtype=np.uint8), rng.integers(0, 3, size=count)


def write_toy(data_root: Path, name: str = NAME) -> dict:
    train, val = toy_arrays(NUM_TRAIN, 1), toy_arrays(20, 2)
    return write_image_dataset(
        data_root / name,
        source="test",
        options={},
        generator_version=1,
        image_format="npy",
        shape=list(SHAPE),
        classes=["a", "b", "c"],
        splits={
            split: (len(labels), ((encode_npy(image), label) for image, label in zip(images, labels)))
            for split, (images, labels) in {"train": train, "val": val}.items()
        },
        samples_per_shard=PER_SHARD,
    )


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_toy(root)
    return root


@pytest.fixture
def fresh_root(tmp_path) -> Path:
    write_toy(tmp_path)
    return tmp_path


def take(iterator, count: int) -> list:
    return list(itertools.islice(iterator, count))


def test_writer_is_byte_identical_and_manifest_matches_files(tmp_path):
    first = write_toy(tmp_path / "one")
    second = write_toy(tmp_path / "two")
    assert first == second
    for split in first["splits"].values():
        for shard in split["shards"]:
            one = tmp_path / "one" / NAME / shard["file"]
            assert one.read_bytes() == (tmp_path / "two" / NAME / shard["file"]).read_bytes()
            assert sha256_file(one) == shard["sha256"]
            assert one.stat().st_size == shard["bytes"]
    assert first["splits"]["train"]["count"] == NUM_TRAIN
    assert [s["count"] for s in first["splits"]["train"]["shards"]] == [64, 64, 64, 64, 44]
    text = (tmp_path / "one" / NAME / "manifest.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == first


def test_arrays_round_trip_in_stored_order(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    images, labels = shards.arrays()
    expected_images, expected_labels = toy_arrays(NUM_TRAIN, 1)
    assert shards.num_samples == NUM_TRAIN and shards.shape == SHAPE and shards.classes == ["a", "b", "c"]
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(shards.labels, expected_labels)


def test_batches_follow_the_seeded_permutation_across_epochs(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    expected_images, expected_labels = toy_arrays(NUM_TRAIN, 1)
    batch_size = 64
    per_epoch = NUM_TRAIN // batch_size  # 4: the last 44 samples of an epoch are dropped
    stream = take(shards.batches(batch_size, seed=7), 2 * per_epoch + 1)
    for batch, (images, labels) in enumerate(stream):
        epoch, position = divmod(batch, per_epoch)
        indices = np.random.default_rng([7, epoch]).permutation(NUM_TRAIN)[position * batch_size :][:batch_size]
        np.testing.assert_array_equal(images, expected_images[indices])
        np.testing.assert_array_equal(labels, expected_labels[indices])


def test_batches_are_deterministic_per_seed(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    again = ImageShards(toy_root, NAME, "train")
    first = take(shards.batches(32, seed=0), 3)
    for (a, la), (b, lb) in zip(first, take(again.batches(32, seed=0), 3)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    other = take(shards.batches(32, seed=1), 1)[0][0]
    assert not np.array_equal(first[0][0], other)


def test_start_batch_resumes_exactly(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    full = take(shards.batches(50, seed=3), 14)  # 6 batches per epoch: crosses two epoch boundaries
    resumed = take(shards.batches(50, seed=3, start_batch=5), 9)
    for (a, la), (b, lb) in zip(full[5:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_ranks_split_each_global_batch_per_sample(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    single = take(shards.batches(32, seed=5), 12)
    rank0 = take(shards.batches(32, seed=5, rank=0, world_size=2), 12)
    rank1 = take(shards.batches(32, seed=5, rank=1, world_size=2), 12)
    for (images, labels), (images0, _labels0), (images1, labels1) in zip(single, rank0, rank1):
        assert len(images0) == len(images1) == 16
        np.testing.assert_array_equal(images0, images[0::2])
        np.testing.assert_array_equal(images1, images[1::2])
        np.testing.assert_array_equal(labels1, labels[1::2])
        as_set = lambda arrays: sorted(map(bytes, arrays))  # noqa: E731
        assert as_set(np.concatenate([images0, images1])) == as_set(images)


def test_batch_size_must_divide_by_world_size(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    with pytest.raises(DataError, match="multiple of the world size 2"):
        shards.batches(33, seed=0, world_size=2)
    with pytest.raises(DataError, match="exceeds"):
        shards.loader(NUM_TRAIN + 1, seed=0)


@pytest.mark.parametrize("world_size", [1, 2])
def test_loader_order_is_independent_of_num_workers(toy_root, world_size):
    shards = ImageShards(toy_root, NAME, "train")
    reference = take(shards.batches(32, seed=2, start_batch=3, rank=world_size - 1, world_size=world_size), 7)
    for num_workers in (0, 1, 2):
        loader = shards.loader(
            32, seed=2, start_batch=3, rank=world_size - 1, world_size=world_size, num_workers=num_workers
        )
        got = take(iter(loader), 7)
        assert len(got) == 7
        for (images, labels), (ref_images, ref_labels) in zip(got, reference):
            assert images.dtype == torch.uint8 and labels.dtype == torch.int64
            np.testing.assert_array_equal(images.numpy(), ref_images)
            np.testing.assert_array_equal(labels.numpy(), ref_labels)


def test_shards_are_standard_webdataset(toy_root):
    shards = ImageShards(toy_root, NAME, "train")
    images, labels = shards.arrays()
    urls = sorted(str(path) for path in (toy_root / NAME).glob("train-*.tar"))
    samples = list(webdataset.WebDataset(urls, shardshuffle=False))
    assert [sample["__key__"] for sample in samples] == [f"{i:08d}" for i in range(NUM_TRAIN)]
    np.testing.assert_array_equal(np.stack([np.load(io.BytesIO(s["npy"])) for s in samples]), images)
    np.testing.assert_array_equal([int(s["cls"]) for s in samples], labels)


def test_encoded_png_dataset_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 6, 6, 3), dtype=np.uint8)

    def png(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    write_image_dataset(
        tmp_path / "images/encoded",
        source="test",
        options={},
        generator_version=1,
        image_format="png",
        shape=[6, 6, 3],
        classes=["x", "y"],
        splits={"train": (10, ((png(image), i % 2) for i, image in enumerate(images)))},
        samples_per_shard=4,
    )
    shards = ImageShards(tmp_path, "images/encoded", "train")
    got, labels = shards.arrays()
    np.testing.assert_array_equal(got, images)  # PNG is lossless
    np.testing.assert_array_equal(labels, np.arange(10) % 2)
    batch, _ = next(shards.batches(4, seed=0))
    assert batch.shape == (4, 6, 6, 3)


def test_missing_dataset_names_the_prepare_command(tmp_path):
    with pytest.raises(
        DataError, match=r"not found in .*images/digits: prepare it with `paperzoo prepare images digits`"
    ):
        ImageShards(tmp_path, "images/digits", "train")


def test_unknown_split_is_named(toy_root):
    with pytest.raises(DataError, match="no split 'trian' \\(did you mean 'train'\\?\\)"):
        ImageShards(toy_root, NAME, "trian")


def test_missing_shard_is_named(fresh_root):
    (fresh_root / NAME / "train-000002.tar").unlink()
    with pytest.raises(
        DataError, match=r"missing shard .*train-000002\.tar: prepare it with `paperzoo prepare images toy`"
    ):
        check_dataset(fresh_root, NAME)


def test_shard_of_wrong_size_is_named(fresh_root):
    shard = fresh_root / NAME / "val-000000.tar"
    shard.write_bytes(shard.read_bytes() + bytes(512))
    with pytest.raises(DataError, match=r"val-000000\.tar of \d+ bytes, manifest says \d+"):
        ImageShards(fresh_root, NAME, "train")


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


def member_header_offset(member: int) -> int:
    """Byte offset of the header of the member-th tar member: every toy member fits in one 512-byte block."""
    return member * 2 * 512


@pytest.mark.parametrize(
    "offset, data",
    [
        (member_header_offset(5) + 140, b"7"),  # an mtime digit: only the header checksum can tell
        (member_header_offset(6) + 130, b"9"),  # a size digit: the walk would go astray
        (member_header_offset(8) + 148, b"7"),  # the stored checksum itself
    ],
)
def test_corrupt_tar_header_is_named(fresh_root, offset, data):
    shard = fresh_root / NAME / "train-000001.tar"
    size = shard.stat().st_size
    overwrite(shard, offset, data)
    assert shard.stat().st_size == size  # passes the cheap size check; only the index build (or the hash) can tell
    check_dataset(fresh_root, NAME, verify=False)
    with pytest.raises(DataError, match=r"shard .*train-000001\.tar .*corrupt"):
        ImageShards(fresh_root, NAME, "train")


def test_corrupt_npy_header_is_named(fresh_root):
    shard = fresh_root / NAME / "train-000000.tar"
    # member 3 is sample 1's .npy; its payload starts one block after its tar header
    overwrite(shard, member_header_offset(3) + 512 + 60, b"!")
    with pytest.raises(DataError, match=r"train-000000\.tar has a corrupt \.npy header"):
        ImageShards(fresh_root, NAME, "train")


def test_truncated_shard_is_named_even_when_the_manifest_agrees(fresh_root):
    shard = fresh_root / NAME / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[: 512 * 11])  # mid-sample, no end-of-archive marker
    manifest_path = fresh_root / NAME / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["train"]["shards"][0]["bytes"] = shard.stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"shard .*train-000000\.tar is truncated"):
        ImageShards(fresh_root, NAME, "train")


def test_failed_write_keeps_the_previous_version(fresh_root):
    before = (fresh_root / NAME / "manifest.json").read_bytes()

    def failing_samples():
        yield encode_npy(np.zeros(SHAPE, np.uint8)), 0
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_image_dataset(
            fresh_root / NAME,
            source="test",
            options={},
            generator_version=1,
            image_format="npy",
            shape=list(SHAPE),
            classes=["a"],
            splits={"train": (2, failing_samples())},
            samples_per_shard=PER_SHARD,
        )
    assert (fresh_root / NAME / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (fresh_root / "images").iterdir()) == ["toy"]  # no staging folder left
    ImageShards(fresh_root, NAME, "train")


def test_copied_dataset_is_readable_from_a_new_root(fresh_root, tmp_path_factory):
    moved = tmp_path_factory.mktemp("moved")
    shutil.copytree(fresh_root / "images", moved / "images")
    np.testing.assert_array_equal(ImageShards(moved, NAME, "val").arrays()[0], toy_arrays(20, 2)[0])


def flip_payload_byte(shard: Path) -> None:
    """Change one pixel of sample 1 (member 3's payload, past its .npy header) in place: size, inode and headers
    stay; the modification time moves on as it would a moment later (file times tick in milliseconds)."""
    import os

    data = bytearray(shard.read_bytes())
    data[member_header_offset(3) + 512 + 128 + 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_reader_checks_each_shard_sha256_before_use(fresh_root):
    shard = fresh_root / NAME / "train-000002.tar"
    flip_payload_byte(shard)
    ImageShards(fresh_root, NAME, "train", verify=False)  # the structural checks cannot see it
    with pytest.raises(
        DataError,
        match=r"shard .*train-000002\.tar does not match its sha256 in the manifest.*"
        r"`paperzoo prepare images toy`.*`paperzoo verify images/toy`",
    ):
        ImageShards(fresh_root, NAME, "train")
    ImageShards(fresh_root, NAME, "val")
    with pytest.raises(DataError, match=r"train-000002\.tar does not match its sha256"):
        check_dataset(fresh_root, NAME)  # the start-of-run check hashes every split's shards too
    check_dataset(fresh_root, NAME, verify=False)


def test_a_wrong_sha256_in_the_manifest_is_named(fresh_root):
    manifest_path = fresh_root / NAME / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["val"]["shards"][0]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"val-000000\.tar does not match its sha256"):
        ImageShards(fresh_root, NAME, "val")
    del manifest["splits"]["val"]["shards"][0]["sha256"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"lists no sha256 for .*val-000000\.tar"):
        ImageShards(fresh_root, NAME, "val")


@pytest.fixture
def hashed(monkeypatch) -> list[Path]:
    """The files this process hashes from now on (verify_file's streaming sha256)."""
    import components.core.shards as shards

    calls: list[Path] = []
    original = shards.sha256_file
    monkeypatch.setattr(shards, "sha256_file", lambda path: calls.append(Path(path)) or original(path))
    return calls


def test_each_shard_version_is_hashed_once_per_process(fresh_root, hashed):
    ImageShards(fresh_root, NAME, "train")
    ImageShards(fresh_root, NAME, "train")
    assert sorted(path.name for path in hashed) == [f"train-{i:06d}.tar" for i in range(5)]
    shard = fresh_root / NAME / "train-000001.tar"
    copy = shard.with_name("copy.tar")
    copy.write_bytes(shard.read_bytes())
    copy.replace(shard)  # the same bytes, a new version (as a re-prepare or `dvc checkout` makes): hashed again
    ImageShards(fresh_root, NAME, "train")
    assert [path.name for path in hashed[5:]] == ["train-000001.tar"]
    check_dataset(fresh_root, NAME)  # the start-of-run check and the readers share the record: only val is new
    assert [path.name for path in hashed[6:]] == ["val-000000.tar"]


def test_a_shard_rewritten_after_the_index_is_checked_when_mapped(fresh_root, hashed):
    import pickle

    shards = ImageShards(fresh_root, NAME, "train")
    worker = pickle.loads(pickle.dumps(shards))  # what a spawned DataLoader worker gets: no maps, the versions
    del hashed[:]
    worker.arrays()
    assert hashed == []  # the versions the index checked: mapped without hashing again
    flip_payload_byte(fresh_root / NAME / "train-000000.tar")
    late = pickle.loads(pickle.dumps(shards))
    with pytest.raises(DataError, match=r"train-000000\.tar does not match its sha256"):
        late.arrays()


def test_loader_workers_read_verified_shards(fresh_root):
    shards = ImageShards(fresh_root, NAME, "train")
    reference = take(shards.batches(32, seed=1), 3)
    got = take(iter(shards.loader(32, seed=1, num_workers=2)), 3)
    for (images, labels), (ref_images, ref_labels) in zip(got, reference):
        np.testing.assert_array_equal(images.numpy(), ref_images)
        np.testing.assert_array_equal(labels.numpy(), ref_labels)


def dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_write_removes_what_killed_writers_of_the_same_target_left(tmp_path):
    import os
    import time

    from components.core.files import _HOST, atomic_directory

    target = tmp_path / "images" / "toy"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    gone, parent = dead_pid(), target.parent
    stale = [f".toy.tmp-{gone}.{_HOST}-abcdefgh", f".toy.old-{gone}.{_HOST}-ijklmnop", ".toy.tmp-legacy12"]
    kept = [
        f".toy.tmp-1.{_HOST}-livewrtr",  # pid 1 runs: a concurrent writer's staging folder
        f".toy.tmp-{gone}.0badhost-elsewhr",  # another host's: its pid means nothing here, and it is recent
        ".toy.tmp-fresh123",  # older code's, recent
        f".other.tmp-{gone}.{_HOST}-notmine0",  # another target's
    ]
    for name in stale + kept:
        (parent / name).mkdir()
        (parent / name / "half").write_text("half")
    two_days_ago = time.time() - 2 * 86400
    os.utime(parent / ".toy.tmp-legacy12", (two_days_ago, two_days_ago))
    with atomic_directory(target) as staging:
        assert staging.name.startswith(f".toy.tmp-{os.getpid()}.{_HOST}-")
        (staging / "new.txt").write_text("new")
    assert sorted(path.name for path in parent.iterdir()) == sorted(kept + ["toy"])
    assert [path.name for path in target.iterdir()] == ["new.txt"]


def test_a_writer_killed_between_the_two_renames_leaves_the_old_version_restorable(tmp_path, monkeypatch):
    import components.core.files as files

    target = tmp_path / "toy"
    retired = tmp_path / f".toy.old-{dead_pid()}.{files._HOST}-abcdefgh"
    (retired / "toy").mkdir(parents=True)
    (retired / "toy" / "old.txt").write_text("old")  # moved aside, and the writer died before moving the new in
    assert files.remove_stale_leftovers(target) == [retired]
    assert (target / "old.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    monkeypatch.setattr(files, "_exchange", lambda first, second: False)  # a system without an atomic exchange
    with files.atomic_directory(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"] and [p.name for p in tmp_path.iterdir()] == ["toy"]
