"""The torch side of the shard reader: ImageShards.loader's batches as tensors, in-process or from worker
processes that send chunks of batches (kept apart so that preparing shards never imports torch)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from components.core.shards import ImageShards


def chunked_loader(
    shards: ImageShards,
    batch_size: int,
    seed: int,
    start_batch: int,
    rank: int,
    world_size: int,
    num_workers: int,
    chunk: int,
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """In-process (num_workers 0) a generator over shards.batches(); else a DataLoader whose workers send `chunk`
    batches at a time, unstacked here in order."""
    if num_workers == 0:
        return (
            (torch.from_numpy(images), torch.from_numpy(labels))
            for images, labels in shards.batches(batch_size, seed, start_batch, rank, world_size)
        )
    stream = _ChunkStream(shards, batch_size, seed, start_batch, rank, world_size, chunk)
    return _Unchunked(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers))


class _ChunkStream(torch.utils.data.IterableDataset):
    """Worker w of W yields chunk c = batches start + (cW + w)K .. + K - 1, stacked; the DataLoader takes chunks from
    workers round-robin, so the batches come out in order."""

    def __init__(
        self, shards: ImageShards, batch_size: int, seed: int, start_batch: int, rank: int, world_size: int, chunk: int
    ):
        super().__init__()
        self.shards = shards
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.rank = rank
        self.world_size = world_size
        self.chunk = chunk

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        permutations: dict[int, np.ndarray] = {}
        first = self.start_batch + worker_id * self.chunk
        while True:
            indices = [
                self.shards._batch_indices(batch, self.batch_size, self.seed, self.rank, self.world_size, permutations)
                for batch in range(first, first + self.chunk)
            ]
            images = self.shards.images(np.concatenate(indices))
            labels = self.shards.labels[np.concatenate(indices)]
            yield (
                torch.from_numpy(images).view(self.chunk, -1, *self.shards.shape),
                torch.from_numpy(labels).view(self.chunk, -1),
            )
            first += num_workers * self.chunk


class _Unchunked:
    """The batches of a loader of chunks, one at a time (views into the chunk: no copy)."""

    def __init__(self, chunks: torch.utils.data.DataLoader):
        self.chunks = chunks

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.chunks:
            yield from zip(images, labels)
