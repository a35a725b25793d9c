"""WebDataset shards of images: a deterministic writer and a fast, rank- and worker-aware reader.

A dataset lives in `<data_root>/<kind>/<name>/` as `manifest.json` plus plain WebDataset tars
`<split>-000000.tar`, .... One sample is the key `%08d` (its index within the split) with two
members, `<key>.cls` (the ASCII label) then `<key>.npy` (np.save bytes of a uint8 array) or
`<key>.png` / `<key>.jpg` (encoded bytes). Any WebDataset reader can read the shards; ours parses
the tar headers once into an index and gathers whole batches from memory-mapped shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from components.core.errors import DataError, did_you_mean
from components.core.files import atomic_directory

if TYPE_CHECKING:
    import torch
    import webdataset

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
IMAGE_FORMATS = ("npy", "png", "jpg")
TAR_BLOCK = 512
TAR_USER = "paperzoo"  # fixed owner names: the tar bytes must not depend on who prepared them
_HASH_CHUNK = 1 << 20
CHUNK_BYTES = 1 << 20  # what a loader worker sends at a time: one transfer (~1 ms) per ms of reading
_CHECKSUM_CHUNK = 8192  # headers checked per vectorised step, bounds the temporary (chunk, 512) array


def prepare_command(name: str) -> str:
    """The CLI command that (re)builds dataset `name` ("images/digits" -> `paperzoo prepare images digits`)."""
    return "paperzoo prepare " + " ".join(name.split("/"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# What this process has hashed: a file version (device, inode, size, mtime, ctime) -> its sha256. A reader
# checks a file against its manifest the first time the process opens that version, and trusts it after.
_verified: dict[tuple[int, ...], str] = {}


def file_version(path: Path) -> tuple[int, ...]:
    """What identifies one version of a file without reading it: any write or replacement changes it."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def forget_verified() -> None:
    """Drop this process's record of verified files (the next reader hashes them again; for benchmarks)."""
    _verified.clear()


def verify_file(path: Path, expected_sha256: str | None, name: str, what: str = "shard") -> tuple[int, ...]:
    """Check a file's sha256 against its manifest's, streaming, once per file version per process.

    Raises DataError naming the file and the commands that fix or diagnose it; returns the version checked,
    so a later open (a DataLoader worker mapping the file) can confirm it still reads that version."""
    path = Path(path)
    if not expected_sha256:
        raise DataError(f"the manifest of dataset '{name}' lists no sha256 for {path}: {_fix(name)}")
    version = file_version(path)
    digest = _verified.get(version)
    if digest is None:
        digest = sha256_file(path)
        if file_version(path) == version:  # not cached if it changed while being hashed
            _verified[version] = digest
    if digest != expected_sha256:
        raise DataError(
            f"{what} {path} does not match its sha256 in the manifest (it or the manifest changed since it was "
            f"prepared): re-prepare it with `{prepare_command(name)}` "
            f"(or check the dataset with `paperzoo verify {name}`)"
        )
    return version


def _fix(name: str) -> str:
    return f"re-prepare it with `{prepare_command(name)}`"


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()


def write_split(
    out_dir: Path,
    split: str,
    samples: Iterable[tuple[bytes, int]],
    *,
    extension: str,
    samples_per_shard: int,
    total: int | None = None,
    description: str = "",
) -> dict:
    """Write (payload, label) pairs as `<split>-%06d.tar` shards; returns the manifest's entry for the split."""
    if samples_per_shard < 1:
        raise DataError(f"samples_per_shard must be >= 1, got {samples_per_shard}: fix the dataset's options")
    import webdataset  # its package imports torch (1.5 s): paid by the stages that write shards, no others

    shards: list[dict] = []
    writer: webdataset.TarWriter | None = None
    file = None
    shard_count = 0
    index = 0

    def finish_shard() -> None:
        writer.close()
        file.close()
        path = out_dir / shards[-1]["file"]
        shards[-1].update(bytes=path.stat().st_size, sha256=sha256_file(path), count=shard_count)

    try:
        tqdm.monitor_interval = 0  # no monitor thread (it only retunes miniters): a live thread makes forks unsafe
        with tqdm(total=total, desc=description or split, unit="sample", disable=None) as progress:
            for payload, label in samples:
                if index % samples_per_shard == 0:
                    if writer is not None:
                        finish_shard()
                    shards.append({"file": f"{split}-{len(shards):06d}.tar"})
                    file = open(out_dir / shards[-1]["file"], "wb")
                    writer = webdataset.TarWriter(
                        file, encoder=False, mtime=0, user=TAR_USER, group=TAR_USER, mode=0o444
                    )
                    shard_count = 0
                # TarWriter writes a sample's members in sorted order: .cls before .jpg/.npy/.png
                writer.write({"__key__": f"{index:08d}", "cls": str(int(label)).encode(), extension: payload})
                shard_count += 1
                index += 1
                progress.update(1)
            if writer is not None:
                finish_shard()
    except BaseException:
        # a failed source or write (a full disk): release the half-written shard; its folder is discarded
        for close in (writer.close if writer is not None else None, file.close if file is not None else None):
            try:
                if close is not None:
                    close()
            except (OSError, ValueError):
                pass
        raise
    return {"count": index, "shards": shards}


def write_image_dataset(
    out_dir: Path,
    *,
    source: str,
    options: dict,
    generator_version: int,
    image_format: str,
    shape: list[int],
    classes: list[str],
    splits: dict[str, tuple[int, Iterable[tuple[bytes, int]]]],
    samples_per_shard: int,
) -> dict:
    """Write every split and the manifest into a staging folder, then swap it onto `out_dir`.

    `splits` maps a split name to (sample count, iterable of (payload bytes, label)); the count only
    feeds the progress bar, the manifest records what was written.
    """
    out_dir = Path(out_dir)
    if image_format not in IMAGE_FORMATS:
        raise DataError(f"image format '{image_format}' is not one of {', '.join(IMAGE_FORMATS)}")
    name = f"{out_dir.parent.name}/{out_dir.name}"
    manifest: dict[str, Any] = {
        "name": name,
        "kind": out_dir.parent.name,
        "source": source,
        "options": options,
        "generator_version": generator_version,
        "format": image_format,
        "shape": [int(s) for s in shape],
        "dtype": "uint8",
        "classes": [str(c) for c in classes],
        "splits": {},
    }
    with atomic_directory(out_dir) as staging:
        for split, (count, samples) in splits.items():
            manifest["splits"][split] = write_split(
                staging,
                split,
                samples,
                extension=image_format,
                samples_per_shard=samples_per_shard,
                total=count,
                description=f"{name} {split}",
            )
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest


def dataset_files(manifest: dict) -> list[dict]:
    """Every file a manifest vouches for ({file, bytes, sha256}): image shards per split, plus `files`
    (a series' Parquet table)."""
    shards = [shard for split in manifest["splits"].values() for shard in split["shards"]]
    return shards + list(manifest.get("files", []))


def _not_prepared(name: str, problem: str) -> DataError:
    return DataError(f"dataset '{name}' {problem}: prepare it with `{prepare_command(name)}`")


def check_dataset(data_root: Path, name: str, *, verify: bool = True) -> dict:
    """The start-of-run check: the manifest exists, every file it lists is present at its size, a series'
    Parquet table has the manifest's columns and, with `verify` (the default), every file has the manifest's
    sha256: hashed the first time this process checks that file version (`verify_file`), so the readers the
    run opens next, in the same process, do not hash again. Returns the manifest."""
    dataset_dir = Path(data_root) / name
    manifest_path = dataset_dir / MANIFEST
    if not manifest_path.is_file():
        raise _not_prepared(name, f"not found in {dataset_dir}")
    try:
        manifest = json.loads(manifest_path.read_text())
        shard_entries = [(entry["file"], int(entry["bytes"])) for entry in dataset_files(manifest)]
    except (ValueError, KeyError, TypeError) as error:
        raise _not_prepared(name, f"has a malformed {manifest_path} ({error!r})") from None
    for file_name, expected_bytes in shard_entries:
        shard_path = dataset_dir / file_name
        if not shard_path.is_file():
            raise _not_prepared(name, f"is missing shard {shard_path}")
        actual_bytes = shard_path.stat().st_size
        if actual_bytes != expected_bytes:
            raise _not_prepared(name, f"has shard {shard_path} of {actual_bytes} bytes, manifest says {expected_bytes}")
    if manifest.get("format") == "parquet":
        from components.core.series import check_table  # imported here: series builds on this module

        check_table(dataset_dir, name, manifest)
    if verify:
        for split in manifest["splits"].values():
            for entry in split["shards"]:
                verify_file(dataset_dir / entry["file"], entry.get("sha256"), name)
        for entry in manifest.get("files", []):
            verify_file(dataset_dir / entry["file"], entry.get("sha256"), name, what="file")
    return manifest


def _octal(field: bytes) -> int:
    text = field.strip(b"\0 ")
    if not text:
        return 0
    return int(text, 8)


def first_npy_header(path: Path, data: np.ndarray, members: ShardMembers, fix: str) -> tuple:
    """(shape, fortran_order, dtype, header bytes) of a shard's first .npy member; a corrupt one names the shard."""
    first = int(members.payload_offsets[0])
    stream = io.BytesIO(data[first : first + int(members.payload_sizes[0])].tobytes())
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except (ValueError, SyntaxError):
        raise DataError(f"shard {path} has a corrupt .npy member: {fix}") from None
    return shape, fortran_order, dtype, stream.tell()


class ShardMembers:
    """Payload offsets, payload sizes and labels of one shard, read from its tar headers."""

    def __init__(self, path: Path, name: str, extension: str, first_index: int, expected_count: int, num_classes: int):
        self.path = path
        fix = f"re-prepare it with `{prepare_command(name)}`"
        if path.stat().st_size < TAR_BLOCK:
            raise DataError(f"shard {path} is truncated: {fix}")
        with open(path, "rb") as file:
            buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            header_offsets, stored_checksums, payload_offsets, payload_sizes, labels = self._walk(
                buffer, extension, first_index, fix
            )
        finally:
            buffer.close()
        if len(labels) != expected_count:
            raise DataError(f"shard {path} holds {len(labels)} samples, manifest says {expected_count}: {fix}")
        self._check_header_checksums(np.memmap(path, dtype=np.uint8, mode="r"), header_offsets, stored_checksums, fix)
        self.payload_offsets = np.asarray(payload_offsets, dtype=np.int64)
        self.payload_sizes = np.asarray(payload_sizes, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= num_classes):
            raise DataError(f"shard {path} has a label outside 0..{num_classes - 1}: {fix}")

    def _walk(
        self, buffer: mmap.mmap, extension: str, first_index: int, fix: str
    ) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
        """Walk the headers in one pass; a member must be `<key>.cls` then `<key>.<extension>`."""
        size = len(buffer)
        expected_suffixes = (b"cls", extension.encode())
        header_offsets: list[int] = []
        stored_checksums: list[int] = []
        payload_offsets: list[int] = []
        payload_sizes: list[int] = []
        labels: list[int] = []
        position = 0
        member = 0
        while True:
            if position + TAR_BLOCK > size:
                raise DataError(f"shard {self.path} is truncated (no end-of-archive marker): {fix}")
            header = buffer[position : position + TAR_BLOCK]
            if header == bytes(TAR_BLOCK):
                break
            try:
                member_size = _octal(header[124:136])
                stored_checksums.append(_octal(header[148:156]))
            except ValueError:
                raise DataError(f"shard {self.path} has a corrupt tar header at byte {position}: {fix}") from None
            member_name = header[0:100].rstrip(b"\0")
            key, _, suffix = member_name.partition(b".")
            sample = first_index + member // 2
            if (
                header[257:262] != b"ustar"
                or header[156:157] not in (b"0", b"\0")
                or suffix != expected_suffixes[member % 2]
                or key != b"%08d" % sample
            ):
                raise DataError(
                    f"shard {self.path} has an unexpected or corrupt member {member_name[:40]!r} "
                    f"at byte {position}: {fix}"
                )
            data_start = position + TAR_BLOCK
            if data_start + member_size > size:
                member_text = member_name.decode(errors="replace")
                raise DataError(f"shard {self.path} is truncated inside member {member_text}: {fix}")
            header_offsets.append(position)
            if member % 2 == 0:
                try:
                    labels.append(int(buffer[data_start : data_start + member_size]))
                except ValueError:
                    raise DataError(f"shard {self.path} has a corrupt label in {member_name!r}: {fix}") from None
            else:
                payload_offsets.append(data_start)
                payload_sizes.append(member_size)
            member += 1
            position = data_start + -(-member_size // TAR_BLOCK) * TAR_BLOCK
        if member % 2:
            raise DataError(f"shard {self.path} ends inside a sample: {fix}")
        return header_offsets, stored_checksums, payload_offsets, payload_sizes, labels

    def _check_header_checksums(self, data: np.ndarray, header_offsets: list[int], stored: list[int], fix: str) -> None:
        # tar's checksum: the unsigned byte sum of the header with the checksum field read as 8 spaces
        offsets = np.asarray(header_offsets, dtype=np.int64)
        stored_array = np.asarray(stored, dtype=np.int64)
        block = np.arange(TAR_BLOCK, dtype=np.int64)
        for start in range(0, len(offsets), _CHECKSUM_CHUNK):
            headers = data[offsets[start : start + _CHECKSUM_CHUNK, None] + block]
            sums = headers.sum(axis=1, dtype=np.int64) - headers[:, 148:156].sum(axis=1, dtype=np.int64) + 8 * 32
            bad = np.flatnonzero(sums != stored_array[start : start + _CHECKSUM_CHUNK])
            if len(bad):
                raise DataError(
                    f"shard {self.path} has a corrupt tar header at byte {offsets[start + bad[0]]} "
                    f"(checksum mismatch): {fix}"
                )


class ImageShards:
    """One split of an image dataset: an index over its shards and deterministic batch streams.

    Batches are global: epoch e visits the samples in the order
    `np.random.default_rng([seed, e]).permutation(N)`, batch b (counted across epochs, the data
    position a checkpoint records) takes the next `batch_size` of them, and rank r of `world_size`
    keeps rows `r::world_size`, so every world size sees the same samples for one global batch.
    """

    def __init__(self, data_root: Path, name: str, split: str, *, verify: bool = True):
        """Index the split's shards; with `verify` (the default) each shard's sha256 is checked against the
        manifest before any sample is read, once per shard version per process (`verify_file`)."""
        self.name = name
        self.split = split
        self.verify = verify
        self.dataset_dir = Path(data_root) / name
        manifest = check_dataset(data_root, name, verify=False)  # each shard is hashed after its structure checks
        splits = manifest["splits"]
        if split not in splits:
            raise DataError(
                f"dataset '{name}' has no split '{split}'{did_you_mean(split, splits)}: it has {', '.join(splits)}"
            )
        self.format: str = manifest["format"]
        if self.format not in IMAGE_FORMATS:
            raise _not_prepared(name, f"has unknown image format '{self.format}'")
        self.shape: tuple[int, ...] = tuple(int(s) for s in manifest["shape"])
        self.classes: list[str] = list(manifest["classes"])
        self._shard_paths = [self.dataset_dir / shard["file"] for shard in splits[split]["shards"]]
        self._shard_sha256 = [shard.get("sha256") for shard in splits[split]["shards"]]
        self._shard_versions: list[tuple[int, ...] | None] = [None] * len(self._shard_paths)
        self._mapped: dict[int, np.ndarray] = {}
        self._npy_header_length: int | None = None
        self._build_index(splits[split])

    def _build_index(self, split_entry: dict) -> None:
        shard_ids, offsets, sizes, labels = [], [], [], []
        first_index = 0
        for shard_id, (path, shard) in enumerate(zip(self._shard_paths, split_entry["shards"])):
            members = ShardMembers(path, self.name, self.format, first_index, int(shard["count"]), len(self.classes))
            shard_ids.append(np.full(len(members.labels), shard_id, dtype=np.int32))
            offsets.append(members.payload_offsets)
            sizes.append(members.payload_sizes)
            labels.append(members.labels)
            first_index += len(members.labels)
            if self.format == "npy" and len(members.labels):
                self._check_npy_headers(path, members)
            if self.verify:  # after the structural checks, whose messages say more about a broken shard
                self._shard_versions[shard_id] = verify_file(path, shard.get("sha256"), self.name)
        self._sample_shard = np.concatenate(shard_ids) if shard_ids else np.zeros(0, np.int32)
        self._sample_offset = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        self._sample_size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        self.labels: np.ndarray = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self.num_samples = len(self.labels)
        if self.num_samples != int(split_entry["count"]):
            raise _not_prepared(
                self.name,
                f"split '{self.split}' holds {self.num_samples} samples, manifest says {split_entry['count']}",
            )

    def _check_npy_headers(self, path: Path, members: ShardMembers) -> None:
        """Every .npy member must carry the same header, so a batch is one gather of fixed-size payloads."""
        fix = f"re-prepare it with `{prepare_command(self.name)}`"
        data = np.memmap(path, dtype=np.uint8, mode="r")
        shape, fortran_order, dtype, header_length = first_npy_header(path, data, members, fix)
        payload_bytes = int(np.prod(self.shape))
        if tuple(shape) != self.shape or dtype != np.uint8 or fortran_order:
            raise DataError(
                f"shard {path} stores {dtype} arrays of shape {tuple(shape)}, manifest says uint8 {self.shape}: {fix}"
            )
        if np.any(members.payload_sizes != header_length + payload_bytes):
            raise DataError(f"shard {path} has a .npy member of the wrong size: {fix}")
        if self._npy_header_length not in (None, header_length):
            raise DataError(f"shard {path} has .npy headers unlike the split's other shards: {fix}")
        headers = data[members.payload_offsets[:, None] + np.arange(header_length)]
        if np.any(headers != headers[0]):
            raise DataError(f"shard {path} has a corrupt .npy header: {fix}")
        self._npy_header_length = header_length
        members.payload_offsets += header_length
        members.payload_sizes -= header_length

    def __len__(self) -> int:
        return self.num_samples

    def __getstate__(self) -> dict:
        # memory maps are per process: a DataLoader worker under spawn re-opens them itself
        state = self.__dict__.copy()
        state["_mapped"] = {}
        return state

    def _shard_bytes(self, shard_id: int) -> np.ndarray:
        mapped = self._mapped.get(shard_id)
        if mapped is None:
            path = self._shard_paths[shard_id]
            mapped = np.memmap(path, dtype=np.uint8, mode="r")
            # a process that did not build the index (a DataLoader worker) trusts the version the index checked,
            # and hashes the file again only if it was rewritten since
            if self.verify and file_version(path) != self._shard_versions[shard_id]:
                verify_file(path, self._shard_sha256[shard_id], self.name)
            self._mapped[shard_id] = mapped
        return mapped

    def images(self, indices: np.ndarray) -> np.ndarray:
        """Images of the given sample indices, as uint8 [len(indices), *shape]."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.format == "npy":
            return self._gather_npy(indices)
        return self._decode_encoded(indices)

    def _gather_npy(self, indices: np.ndarray) -> np.ndarray:
        payload_bytes = int(np.prod(self.shape))
        byte_range = np.arange(payload_bytes, dtype=np.int64)
        out = np.empty((len(indices), payload_bytes), dtype=np.uint8)
        shard_ids = self._sample_shard[indices]
        offsets = self._sample_offset[indices]
        for shard_id in np.unique(shard_ids):
            rows = shard_ids == shard_id
            out[rows] = self._shard_bytes(int(shard_id))[offsets[rows, None] + byte_range]
        return out.reshape(len(indices), *self.shape)

    def _decode_encoded(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        mode = "RGB" if len(self.shape) == 3 else "L"
        for row, index in enumerate(indices):
            shard_id = int(self._sample_shard[index])
            start = int(self._sample_offset[index])
            payload = self._shard_bytes(shard_id)[start : start + int(self._sample_size[index])]
            try:
                with Image.open(io.BytesIO(payload.tobytes())) as image:
                    array = np.asarray(image.convert(mode))
            except (OSError, ValueError, Image.DecompressionBombError):
                raise DataError(
                    f"shard {self._shard_paths[shard_id]} has a corrupt image in sample {index:08d}: "
                    f"re-prepare it with `{prepare_command(self.name)}`"
                ) from None
            if array.shape != self.shape:
                raise DataError(
                    f"shard {self._shard_paths[shard_id]} has sample {index:08d} of shape {array.shape}, "
                    f"manifest says {self.shape}: re-prepare it with `{prepare_command(self.name)}`"
                )
            out[row] = array
        return out

    def arrays(self, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels of the split in stored order (for full-batch evaluation)."""
        images = np.empty((self.num_samples, *self.shape), dtype=np.uint8)
        for start in range(0, self.num_samples, chunk):
            stop = min(start + chunk, self.num_samples)
            images[start:stop] = self.images(np.arange(start, stop))
        return images, self.labels.copy()

    def _check_batching(self, batch_size: int, rank: int, world_size: int, start_batch: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in 0..{world_size - 1} for world size {world_size}")
        if batch_size < 1 or batch_size % world_size:
            raise DataError(f"batch_size {batch_size} must be a positive multiple of the world size {world_size}")
        if batch_size > self.num_samples:
            raise DataError(
                f"batch_size {batch_size} exceeds the {self.num_samples} samples of split '{self.split}' of '{self.name}'"
            )
        if start_batch < 0:
            raise DataError(f"start_batch must be >= 0, got {start_batch}")

    def batch_indices(self, batch: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Sample indices of global batch `batch` that rank `rank` reads."""
        return self._batch_indices(batch, batch_size, seed, rank, world_size, {})

    def _batch_indices(
        self, batch: int, batch_size: int, seed: int, rank: int, world_size: int, permutations: dict[int, np.ndarray]
    ) -> np.ndarray:
        batches_per_epoch = self.num_samples // batch_size
        epoch, position = divmod(batch, batches_per_epoch)
        permutation = permutations.get(epoch)
        if permutation is None:
            permutations.clear()  # one epoch at a time: streams move forward
            permutation = permutations[epoch] = np.random.default_rng([seed, epoch]).permutation(self.num_samples)
        return permutation[position * batch_size : (position + 1) * batch_size][rank::world_size]

    def _stream(
        self, first: int, step: int, batch_size: int, seed: int, rank: int, world_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        permutations: dict[int, np.ndarray] = {}
        batch = first
        while True:
            indices = self._batch_indices(batch, batch_size, seed, rank, world_size, permutations)
            yield self.images(indices), self.labels[indices]
            batch += step

    def batches(
        self, batch_size: int, seed: int, start_batch: int = 0, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Infinite stream of this rank's share of global batches start_batch, start_batch + 1, ...."""
        self._check_batching(batch_size, rank, world_size, start_batch)
        return self._stream(start_batch, 1, batch_size, seed, rank, world_size)

    def loader(
        self,
        batch_size: int,
        seed: int,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """`batches()` as torch tensors; the order is the same for any num_workers. With workers, each one sends
        a chunk of consecutive batches at a time (CHUNK_BYTES), so the cost of moving a tensor between processes
        is paid per chunk: a per-batch transfer cost 11-13x the in-process read of small images."""
        from components.core.loader import chunked_loader  # torch: only readers pay its import, not prepare stages

        self._check_batching(batch_size, rank, world_size, start_batch)
        batch_bytes = batch_size // world_size * int(np.prod(self.shape))
        chunk = max(1, CHUNK_BYTES // max(batch_bytes, 1))
        return chunked_loader(self, batch_size, seed, start_batch, rank, world_size, num_workers, chunk)
