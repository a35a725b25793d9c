"""Shard reader throughput against one-.npy-file-per-sample loading, and the cost of verifying shards.

    python benchmarks/data.py [--data-root DIR] [--repeat 40] [--batch-size 256] [--workers 1 2]

Prepares the digits with `repeat` augmented copies of train (repeat=40: ~50k samples), writes the
same train samples as loose .npy files. Per worker count: the shard reader's `loader()` is timed to its
first batch (worker start-up) and then over --epochs epochs of streaming, against the same loader
in-process (workers 0, timed first in the same run); the loose files go through a DataLoader with the
same batch size for one epoch, start-up included (the ratio shard/loose compares the two as timed).

A second table measures what the reader's sha256 check of each shard costs (ImageShards(verify=True),
the default: every shard hashed against its manifest the first time a process opens that file version).
Per worker count, in the same process: opening the split (index build, plus the hash when on) and one
epoch, with verification off and on (the record of verified files forgotten first, so every shard is
hashed again), as samples/s over open + epoch, and the ratio on/off.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

# run as a script from a checkout: make the repository's packages importable without installing them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summary import add_row  # noqa: E402 - benchmarks/summary.py, beside this script

from components.core.shards import ImageShards, forget_verified  # noqa: E402
from pipelines.datasets import prepare  # noqa: E402

NAME = "images/digits_bench"


class LooseNpyFiles(torch.utils.data.Dataset):
    """The reference: one np.load per sample, as a folder of .npy files is usually read."""

    def __init__(self, folder: Path):
        self.labels = np.load(folder / "labels.npy")
        self.paths = [folder / f"{index:08d}.npy" for index in range(len(self.labels))]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.load(self.paths[index])), int(self.labels[index])


def write_loose_copy(shards: ImageShards, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = shards.arrays()
    for index, image in enumerate(images):
        np.save(folder / f"{index:08d}.npy", image)
    np.save(folder / "labels.npy", labels)


def time_epoch(batches, num_batches: int, batch_size: int) -> float:
    """Samples per second over one epoch, loader start-up (worker processes) included."""
    start = time.perf_counter()
    seen = 0
    for _images, labels in itertools.islice(batches, num_batches):
        seen += len(labels)
    elapsed = time.perf_counter() - start
    assert seen == num_batches * batch_size
    return seen / elapsed


def time_stream(batches, num_batches: int, batch_size: int) -> tuple[float, float]:
    """(seconds to the first batch, samples per second after it over `num_batches`): a training run's loader
    starts its workers once and then streams, so the two are reported apart."""
    start = time.perf_counter()
    batches = iter(batches)
    next(batches)
    first = time.perf_counter()
    seen = sum(len(labels) for _images, labels in itertools.islice(batches, num_batches))
    assert seen == num_batches * batch_size
    return first - start, seen / (time.perf_counter() - first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, help="where to prepare the data (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=40, help="train copies; 40 gives ~50k samples")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="0: in-process, the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3, help="epochs the shard reader streams after its first batch")
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory(prefix="paperzoo-bench-") as scratch:
        data_root = args.data_root or Path(scratch) / "data"
        started = time.perf_counter()
        prepare(NAME, {"source": "sklearn-digits", "repeat": args.repeat}, data_root)
        prepare_seconds = time.perf_counter() - started

        started = time.perf_counter()
        shards = ImageShards(data_root, NAME, "train")
        index_seconds = time.perf_counter() - started
        loose_dir = Path(scratch) / "loose"
        write_loose_copy(shards, loose_dir)
        loose = LooseNpyFiles(loose_dir)

        num_batches = shards.num_samples // args.batch_size
        table = Table(
            title=f"{shards.num_samples} digits, batch {args.batch_size}: shards stream {args.epochs} epochs after "
            f"the first batch, loose .npy files one epoch with start-up"
        )
        columns = ("workers", "first batch ms", "shards samples/s", "vs in-process", "loose samples/s", "shard/loose")
        for column in columns:
            table.add_column(column, justify="right")
        epochs = num_batches * args.epochs
        _, in_process = time_stream(shards.loader(args.batch_size, seed=args.seed), epochs, args.batch_size)
        versus_in_process: dict[int, float] = {}
        for num_workers in args.workers:
            start_up, shard_rate = time_stream(
                shards.loader(args.batch_size, seed=args.seed, num_workers=num_workers), epochs, args.batch_size
            )
            reference = torch.utils.data.DataLoader(
                loose,
                batch_size=args.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=num_workers,
                generator=torch.Generator().manual_seed(args.seed),
            )
            loose_rate = time_epoch(iter(reference), num_batches, args.batch_size)
            if num_workers:
                versus_in_process[num_workers] = shard_rate / in_process
            table.add_row(
                str(num_workers),
                f"{start_up * 1000:.0f}",
                f"{shard_rate:,.0f}",
                f"{shard_rate / in_process:.2f}x",
                f"{loose_rate:,.0f}",
                f"{shard_rate / loose_rate:.1f}x",
            )
        console.print(table)
        if versus_in_process:
            add_row(
                args.summary,
                f"image reader `loader()` with {', '.join(map(str, versus_in_process))} workers vs in-process",
                " / ".join(f"{ratio:.2f}x" for ratio in versus_in_process.values()) + " the in-process samples/s",
                ">= 1x (never slower)",
                min(versus_in_process.values()) >= 1.0,
            )
        console.print(f"prepare (shards + manifest): {prepare_seconds:.1f} s; shard index build: {index_seconds:.2f} s")
        console.print(verification_table(data_root, args, num_batches))
    return 0


def open_and_epoch(data_root: Path, verify: bool, args: argparse.Namespace, num_batches: int, workers: int):
    """(seconds to open the split, samples/s over open + one epoch) with verification on or off."""
    forget_verified()  # every shard hashed again when on: the cost a fresh process pays
    start = time.perf_counter()
    shards = ImageShards(data_root, NAME, "train", verify=verify)
    opened = time.perf_counter() - start
    loader = shards.loader(args.batch_size, seed=args.seed, num_workers=workers)
    seen = sum(len(labels) for _images, labels in itertools.islice(iter(loader), num_batches))
    return opened, seen / (time.perf_counter() - start)


def verification_table(data_root: Path, args: argparse.Namespace, num_batches: int) -> Table:
    shard_bytes = sum(path.stat().st_size for path in (data_root / NAME).glob("train-*.tar"))
    table = Table(
        title=f"shard verification (sha256 of {shard_bytes / 2**20:.0f} MiB of train shards): open + one epoch"
    )
    for column in ("workers", "open off s", "open on s", "off samples/s", "on samples/s", "ratio on/off"):
        table.add_column(column, justify="right")
    for num_workers in args.workers:
        open_and_epoch(data_root, False, args, num_batches, num_workers)  # warm the page cache and the loader
        open_off, rate_off = open_and_epoch(data_root, False, args, num_batches, num_workers)
        open_on, rate_on = open_and_epoch(data_root, True, args, num_batches, num_workers)
        table.add_row(
            str(num_workers),
            f"{open_off:.2f}",
            f"{open_on:.2f}",
            f"{rate_off:,.0f}",
            f"{rate_on:,.0f}",
            f"{rate_on / rate_off:.2f}x",
        )
    return table


if __name__ == "__main__":
    sys.exit(main())
