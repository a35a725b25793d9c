"""Video latents as WebDataset shards: the latent-encoder interface, a deterministic writer and the reader.

A dataset lives in `<data_root>/video/<name>/` as `manifest.json` plus plain WebDataset tars
`<split>-000000.tar`, ... written by `components.core.shards.write_split`. One sample is one clip: the key
`%08d` (its index within the split) with `<key>.cls` (always 0: clips carry no label or caption yet) then
`<key>.npy` (np.save bytes of a float array [T', C, h, w], the clip's latents). The manifest records the
clip counts, the latent and pixel shapes, the dtype, the encoder (name, version and everything needed to
interpret or invert it) and every shard's size and sha256.

An encoder turns pixel clips into latents. `UnshuffleEncoder` is the fixed invertible stand-in of
pyramid_flow.md §6 (pixel_unshuffle then one dataset-wide standardisation); a real video VAE plugs in
through the same interface (pipelines/datasets/video.py wraps user-provided VAE code and weights).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from components.core.errors import DataError, did_you_mean
from components.core.files import atomic_directory
from components.core.shards import (
    MANIFEST,
    ShardMembers,
    check_dataset,
    encode_npy,
    file_version,
    first_npy_header,
    manifest_bytes,
    prepare_command,
    verify_file,
    write_split,
)

KIND = "video"
LATENT_DTYPES = ("float32", "float16")


class LatentEncoder(Protocol):
    """Pixel clips [N, T, C, H, W] (float, values in [0, 1]) -> latents [N, T', C', h, w] (float32)."""

    name: str
    version: int

    def latent_shape(self, pixel_shape: tuple[int, ...]) -> tuple[int, ...]: ...

    def encode(self, clips: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        """JSON-able facts a reader needs (name, version, parameters); stored in the manifest."""
        ...


class UnshuffleEncoder:
    """pixel_unshuffle by `patch` (C x H x W -> C p^2 x H/p x W/p), then (x - mean) / std with one scalar pair
    measured on the train split: a fixed, exactly invertible stand-in for a VAE (pyramid_flow.md §6)."""

    name = "unshuffle-standardise"
    version = 1

    def __init__(self, patch: int = 2, mean: float = 0.0, std: float = 1.0):
        if patch < 1 or std <= 0:
            raise DataError(f"unshuffle encoder: patch must be >= 1 and std > 0, got patch {patch}, std {std}")
        self.patch = int(patch)
        self.mean = float(mean)
        self.std = float(std)

    @classmethod
    def fitted(cls, clips: np.ndarray, patch: int = 2) -> UnshuffleEncoder:
        """Mean and population std of the clips (float64); unshuffling permutes pixels, so they are the pixels'."""
        values = np.asarray(clips, dtype=np.float64)
        return cls(patch, float(values.mean()), float(values.std()))

    def latent_shape(self, pixel_shape: tuple[int, ...]) -> tuple[int, ...]:
        frames, channels, height, width = pixel_shape
        if height % self.patch or width % self.patch:
            raise DataError(f"unshuffle encoder: frames of {height}x{width} are not divisible by patch {self.patch}")
        return (frames, channels * self.patch**2, height // self.patch, width // self.patch)

    def encode(self, clips: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(clips, dtype=np.float64))
        n, t = x.shape[:2]
        z = F.pixel_unshuffle(x.reshape(n * t, *x.shape[2:]), self.patch)
        z = (z - self.mean) / self.std
        return z.reshape(n, t, *z.shape[1:]).to(torch.float32).numpy()

    def decode(self, latents: np.ndarray | torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(latents, dtype=torch.float64)
        lead = z.shape[:-3]
        x = F.pixel_shuffle(z.reshape(-1, *z.shape[-3:]) * self.std + self.mean, self.patch)
        return x.reshape(*lead, *x.shape[1:]).to(torch.float32)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "patch": self.patch, "mean": self.mean, "std": self.std}


def decoder_for(encoder: dict[str, Any]) -> UnshuffleEncoder | None:
    """The manifest encoder's exact inverse where we have one (the stand-in); None for a VAE (decoding a VAE
    needs its weights: consumers then show latent channels instead of pixels)."""
    if encoder.get("name") == UnshuffleEncoder.name:
        return UnshuffleEncoder(encoder["patch"], encoder["mean"], encoder["std"])
    return None


def _npy_samples(latents: Iterable[np.ndarray], dtype: str) -> Iterator[tuple[bytes, int]]:
    for clip in latents:
        yield encode_npy(np.asarray(clip, dtype=dtype)), 0


def write_latent_dataset(
    out_dir: Path,
    *,
    source: str,
    options: dict,
    generator_version: int,
    encoder: dict[str, Any],
    pixel_shape: list[int],
    latent_shape: list[int],
    splits: dict[str, tuple[int, Iterable[np.ndarray]]],
    samples_per_shard: int,
    dtype: str = "float32",
    notes: dict[str, Any] | None = None,
) -> dict:
    """Write every split's latents and the manifest into a staging folder, then swap it onto `out_dir`.

    `splits` maps a split name to (clip count, iterable of latent arrays of shape `latent_shape`); the
    count only feeds the progress bar, the manifest records what was written."""
    out_dir = Path(out_dir)
    if dtype not in LATENT_DTYPES:
        raise DataError(f"latent dtype '{dtype}' is not one of {', '.join(LATENT_DTYPES)}")
    name = f"{out_dir.parent.name}/{out_dir.name}"
    manifest: dict[str, Any] = {
        "name": name,
        "kind": KIND,
        "source": source,
        "options": options,
        "generator_version": generator_version,
        "format": "npy",
        "dtype": dtype,
        "latent_shape": [int(s) for s in latent_shape],
        "pixel_shape": [int(s) for s in pixel_shape],
        "encoder": encoder,
        "classes": ["clip"],
        "splits": {},
        **(notes or {}),
    }
    expected = tuple(manifest["latent_shape"])

    def checked(split: str, latents: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for index, clip in enumerate(latents):
            if tuple(np.shape(clip)) != expected:
                raise DataError(f"{name} {split} clip {index}: latents of shape {np.shape(clip)}, expected {expected}")
            if not np.isfinite(clip).all():
                raise DataError(f"{name} {split} clip {index}: the encoder produced non-finite latents")
            yield clip

    with atomic_directory(out_dir) as staging:
        for split, (count, latents) in splits.items():
            manifest["splits"][split] = write_split(
                staging,
                split,
                _npy_samples(checked(split, latents), dtype),
                extension="npy",
                samples_per_shard=samples_per_shard,
                total=count,
                description=f"{name} {split}",
            )
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest


class LatentShards:
    """One split of a latents dataset: clips gathered from memory-mapped shards, and deterministic batches.

    Batches follow `ImageShards`' rule: epoch e visits clips in `np.random.default_rng([seed, e]).permutation(N)`
    order, global batch b (counted across epochs, the data position a checkpoint records) takes the next
    `batch_size`, and rank r of `world_size` keeps rows `r::world_size`."""

    def __init__(self, data_root: Path, name: str, split: str, *, verify: bool = True):
        """Index the split's shards; with `verify` (the default) each shard's sha256 is checked against the
        manifest before any clip is read, once per shard version per process (`verify_file`)."""
        self.name = name
        self.split = split
        self.verify = verify
        manifest = check_dataset(data_root, name, verify=False)  # each shard is hashed after its structure checks
        if manifest.get("kind") != KIND:
            raise DataError(f"dataset '{name}' is {manifest.get('kind')!r} data, not video latents")
        splits = manifest["splits"]
        if split not in splits:
            raise DataError(
                f"dataset '{name}' has no split '{split}'{did_you_mean(split, splits)}: it has {', '.join(splits)}"
            )
        self.manifest = manifest
        self.shape: tuple[int, ...] = tuple(int(s) for s in manifest["latent_shape"])
        self.pixel_shape: tuple[int, ...] = tuple(int(s) for s in manifest["pixel_shape"])
        self.dtype = np.dtype(manifest["dtype"])
        self.encoder: dict[str, Any] = manifest["encoder"]
        self._fix = f"re-prepare it with `{prepare_command(name)}`"
        dataset_dir = Path(data_root) / name
        self._paths = [dataset_dir / shard["file"] for shard in splits[split]["shards"]]
        self._sha256 = [shard.get("sha256") for shard in splits[split]["shards"]]
        self._versions: list[tuple[int, ...] | None] = [None] * len(self._paths)
        self._mapped: dict[int, np.ndarray] = {}
        shard_ids, offsets = [], []
        first = 0
        for shard_id, (path, shard) in enumerate(zip(self._paths, splits[split]["shards"])):
            members = ShardMembers(path, name, "npy", first, int(shard["count"]), 1)
            if len(members.labels):
                offsets.append(members.payload_offsets + self._npy_header_length(path, members))
                shard_ids.append(np.full(len(members.labels), shard_id, dtype=np.int32))
            if verify:  # after the structural checks, whose messages say more about a broken shard
                self._versions[shard_id] = verify_file(path, shard.get("sha256"), name)
            first += len(members.labels)
        self._shard = np.concatenate(shard_ids) if shard_ids else np.zeros(0, np.int32)
        self._offset = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        self.num_clips = len(self._offset)
        if self.num_clips != int(splits[split]["count"]):
            raise DataError(
                f"dataset '{name}' split '{split}' holds {self.num_clips} clips, manifest says "
                f"{splits[split]['count']}: {self._fix}"
            )

    def _npy_header_length(self, path: Path, members: ShardMembers) -> int:
        """Every member must carry the manifest's shape and dtype in the same header, so a clip is a fixed slice."""
        data = np.memmap(path, dtype=np.uint8, mode="r")
        shape, fortran_order, dtype, header = first_npy_header(path, data, members, self._fix)
        if tuple(shape) != self.shape or dtype != self.dtype or fortran_order:
            raise DataError(
                f"shard {path} stores {dtype} latents of shape {tuple(shape)}, manifest says "
                f"{self.dtype} {self.shape}: {self._fix}"
            )
        if np.any(members.payload_sizes != header + self.dtype.itemsize * int(np.prod(self.shape))):
            raise DataError(f"shard {path} has a .npy member of the wrong size: {self._fix}")
        headers = data[members.payload_offsets[:, None] + np.arange(header)]
        if np.any(headers != headers[0]):
            raise DataError(f"shard {path} has a corrupt .npy header: {self._fix}")
        return header

    def __len__(self) -> int:
        return self.num_clips

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mapped"] = {}  # memory maps are per process
        return state

    def _shard_bytes(self, shard_id: int) -> np.ndarray:
        mapped = self._mapped.get(shard_id)
        if mapped is None:
            path = self._paths[shard_id]
            mapped = np.memmap(path, dtype=np.uint8, mode="r")
            # another process (a DataLoader worker) trusts the version the index checked unless it was rewritten
            if self.verify and file_version(path) != self._versions[shard_id]:
                verify_file(path, self._sha256[shard_id], self.name)
            self._mapped[shard_id] = mapped
        return mapped

    def clips(self, indices: np.ndarray) -> np.ndarray:
        """Latents of the given clip indices as float32 [len(indices), T', C, h, w]."""
        indices = np.asarray(indices, dtype=np.int64)
        size = self.dtype.itemsize * int(np.prod(self.shape))
        span = np.arange(size, dtype=np.int64)
        out = np.empty((len(indices), size), dtype=np.uint8)
        shard_ids, offsets = self._shard[indices], self._offset[indices]
        for shard_id in np.unique(shard_ids):
            rows = shard_ids == shard_id
            out[rows] = self._shard_bytes(int(shard_id))[offsets[rows, None] + span]
        return out.view(self.dtype).reshape(len(indices), *self.shape).astype(np.float32)

    def arrays(self) -> np.ndarray:
        """Every clip of the split in stored order."""
        return self.clips(np.arange(self.num_clips))

    def batch_indices(self, batch: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        epoch, position = divmod(batch, self.num_clips // batch_size)
        order = np.random.default_rng([seed, epoch]).permutation(self.num_clips)
        return order[position * batch_size : (position + 1) * batch_size][rank::world_size]

    def batches(
        self, batch_size: int, seed: int, start_batch: int = 0, rank: int = 0, world_size: int = 1
    ) -> Iterator[np.ndarray]:
        """Infinite stream of this rank's share of global batches start_batch, start_batch + 1, ...."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in 0..{world_size - 1} for world size {world_size}")
        if batch_size < 1 or batch_size % world_size:
            raise DataError(f"batch_size {batch_size} must be a positive multiple of the world size {world_size}")
        if batch_size > self.num_clips:
            raise DataError(
                f"batch_size {batch_size} exceeds the {self.num_clips} clips of split '{self.split}' of '{self.name}'"
            )
        batch = start_batch
        while True:
            yield self.clips(self.batch_indices(batch, batch_size, seed, rank, world_size))
            batch += 1
