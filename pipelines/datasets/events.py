"""Event-camera datasets as pre-binned frames: IBM's DVS128 Gesture in its distributed format.

The `DvsGesture/` folder of the release holds, per recording, `userNN_<lighting>.aedat` (AEDAT 3.1 polarity
events of a 128 x 128 DVS) and `userNN_<lighting>_labels.csv` (`class,startTime_usec,endTime_usec`: one labelled
gesture per row, classes 1..11), plus `trials_to_train.txt` / `trials_to_test.txt` naming the .aedat files of
each split (users 1-23 train, 24-29 test; without those lists the user number decides the same way).

Each labelled gesture (events with start <= t < end) becomes T frames of 2 polarity channels at 128 x 128,
integrated SpikingJelly-style (`integrate_events_by_fixed_frames_number`): `split_by="number"` (the default, what
OTTT uses for DVS-Gesture) cuts the events into T slices of equal event count (the last slice takes the
remainder), `split_by="time"` into T equal time windows; a frame counts the events at each (polarity, y, x).
Counts are stored as uint8 .npy shards of shape [T, 2, 128, 128], clipped at 255 (an assumption: SpikingJelly
keeps float counts; a pixel firing more than 255 times in one of T >= 10 slices of a gesture is rare).

AEDAT 3.1 as read here (the format's specification, as SpikingJelly's and the release's own loader read it):
ASCII header lines starting with `#`, the first `#!AER-DAT3.1`, the last `#!END-HEADER\\r\\n`; then packets of
a 28-byte little-endian header (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid) followed by
eventCapacity x eventSize bytes. Polarity packets (eventType 1, eventSize 8) hold per event a uint32 of
flags (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and an int32 timestamp in microseconds, extended
by eventTSOverflow << 31. Events whose valid bit is 0 are dropped [assumed: SpikingJelly keeps them; the release's
files mark every recorded event valid]. Other packet types (special events, frames, IMU) are skipped.
"""

from __future__ import annotations

import csv
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from components.core.errors import ConfigError, DataError
from components.core.shards import encode_npy, write_image_dataset
from pipelines.datasets.images import stratified_split

GENERATOR_VERSION = 1  # bump when the output bytes change for the same options
SENSOR = 128  # DVS128: 128 x 128 pixels
CLASSES = [
    "hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise", "right_arm_counter_clockwise",
    "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar", "other_gestures",
]  # fmt: skip
HEADER_END = b"#!END-HEADER\r\n"
PACKET_HEADER = struct.Struct("<hhiiiiii")
POLARITY_EVENT = 1
FIRST_TEST_USER = 24  # users 1-23 train, 24-29 test (the release's trials_to_train / trials_to_test)


def read_aedat31(path: Path) -> dict[str, np.ndarray]:
    """Polarity events of an AEDAT 3.1 file: x, y, p (0/1) and t (microseconds, int64), in file order."""
    data = Path(path).read_bytes()
    if not data.startswith(b"#!AER-DAT3"):
        raise DataError(f"{path} is not an AEDAT 3.x file (no '#!AER-DAT3' first line): is it a DvsGesture .aedat?")
    end = data.find(HEADER_END)
    if end < 0:
        raise DataError(f"{path} has no '#!END-HEADER' line: the file is truncated or not AEDAT 3.1")
    offset = end + len(HEADER_END)
    flags, stamps = [], []
    while offset < len(data):
        if offset + PACKET_HEADER.size > len(data):
            raise DataError(f"{path} ends inside a packet header at byte {offset}: the file is truncated")
        kind, _, size, _, overflow, capacity, _, _ = PACKET_HEADER.unpack_from(data, offset)
        offset += PACKET_HEADER.size
        length = capacity * size
        if size <= 0 or capacity < 0 or offset + length > len(data):
            raise DataError(f"{path} has a packet of {capacity} x {size} bytes past the end: the file is truncated")
        if kind == POLARITY_EVENT:
            if size != 8:
                raise DataError(f"{path}: polarity packet with {size}-byte events, AEDAT 3.1 has 8")
            words = np.frombuffer(data, dtype="<u4", count=2 * capacity, offset=offset).reshape(-1, 2)
            flags.append(words[:, 0])
            stamps.append(words[:, 1].astype(np.int64) | (np.int64(overflow) << 31))
        offset += length
    word = np.concatenate(flags) if flags else np.zeros(0, np.uint32)
    t = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
    valid = (word & 1).astype(bool)
    word, t = word[valid], t[valid]
    return {
        "x": ((word >> 17) & 0x7FFF).astype(np.int64),
        "y": ((word >> 2) & 0x7FFF).astype(np.int64),
        "p": ((word >> 1) & 1).astype(np.int64),
        "t": t,
    }


def read_labels(path: Path) -> list[tuple[int, int, int]]:
    """(class index 0..10, start, end) per labelled gesture of a `_labels.csv`."""
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except OSError as error:
        raise DataError(f"cannot read labels {path}: {error.strerror}") from None
    if not rows or not rows[0][0].strip().lower().startswith("class"):
        raise DataError(f"{path}: expected a header 'class,startTime_usec,endTime_usec'")
    gestures = []
    for number, row in enumerate(rows[1:], start=2):
        try:
            label, start, end = (int(cell) for cell in row[:3])
        except ValueError:
            raise DataError(f"{path} line {number}: expected three integers, got {row}") from None
        if not 1 <= label <= len(CLASSES) or end <= start:
            raise DataError(f"{path} line {number}: class {label} (1..{len(CLASSES)}), start {start}, end {end}")
        gestures.append((label - 1, start, end))
    return gestures


def slice_bounds(t: np.ndarray, frames: int, split_by: str) -> tuple[np.ndarray, np.ndarray]:
    """[left, right) event indices of each of the T slices (SpikingJelly's cal_fixed_frames_number_segment_index)."""
    count = len(t)
    if split_by == "number":
        width = count // frames
        left = np.arange(frames) * width
        right = left + width
    else:
        width = (t[-1] - t[0]) // frames if count else 0
        edges = np.arange(frames) * width + (t[0] if count else 0)
        left = np.searchsorted(t, edges, side="left")
        right = np.searchsorted(t, edges + width, side="left")
    right[-1] = count
    return left, right


def to_frames(events: dict[str, np.ndarray], frames: int, split_by: str) -> np.ndarray:
    """uint8 [T, 2, 128, 128]: per slice, the count of events at each (polarity, y, x), clipped at 255."""
    left, right = slice_bounds(events["t"], frames, split_by)
    flat = (events["p"] * SENSOR + events["y"]) * SENSOR + events["x"]
    out = np.zeros((frames, 2 * SENSOR * SENSOR), dtype=np.int64)
    for index, (start, stop) in enumerate(zip(left, right)):
        out[index] = np.bincount(flat[start:stop], minlength=2 * SENSOR * SENSOR)
    return np.minimum(out, 255).astype(np.uint8).reshape(frames, 2, SENSOR, SENSOR)


def _recordings(root: Path) -> dict[str, list[Path]]:
    """The .aedat files of each split, by the release's trial lists or else by user number."""
    files = sorted(root.glob("user*_*.aedat"), key=lambda p: p.name)
    if not files:
        raise DataError(f"{root} (option src) has no user*_*.aedat files: point src at the DvsGesture folder")
    lists = {split: root / f"trials_to_{split}.txt" for split in ("train", "test")}
    if all(path.is_file() for path in lists.values()):
        named = {split: [line.strip() for line in path.read_text().splitlines() if line.strip()]
                 for split, path in lists.items()}  # fmt: skip
        by_name = {path.name: path for path in files}
        for split, names in named.items():
            missing = [name for name in names if name not in by_name]
            if missing:
                raise DataError(f"{lists[split]} names {missing[0]}, which is not in {root}")
        return {split: [by_name[name] for name in sorted(names)] for split, names in named.items()}
    splits: dict[str, list[Path]] = {"train": [], "test": []}
    for path in files:
        match = re.match(r"user(\d+)_", path.name)
        if match is None:
            raise DataError(f"{path}: cannot read the user number from the file name (userNN_<lighting>.aedat)")
        splits["test" if int(match.group(1)) >= FIRST_TEST_USER else "train"].append(path)
    return splits


def _labels_path(path: Path) -> Path:
    labels_path = path.with_name(path.stem + "_labels.csv")
    if not labels_path.is_file():
        raise DataError(f"{path} has no labels file {labels_path.name} beside it")
    return labels_path


def _gestures(paths: list[Path], frames: int, split_by: str) -> Iterator[tuple[np.ndarray, int]]:
    for path in paths:
        labels_path = _labels_path(path)
        events = read_aedat31(path)
        if len(events["x"]) and (events["x"].max() >= SENSOR or events["y"].max() >= SENSOR):
            raise DataError(f"{path}: events outside the 128 x 128 sensor: is it a DVS128 recording?")
        order = np.argsort(events["t"], kind="stable")
        events = {key: value[order] for key, value in events.items()}
        for label, start, end in read_labels(labels_path):
            first, last = np.searchsorted(events["t"], [start, end], side="left")
            if last <= first:
                raise DataError(f"{labels_path}: gesture [{start}, {end}) of class {label + 1} has no events")
            yield to_frames({key: value[first:last] for key, value in events.items()}, frames, split_by), label


def _encoded(
    samples: Iterator[tuple[np.ndarray, int]], in_val: np.ndarray | None = None, keep_val: bool = False
) -> Iterator[tuple[bytes, int]]:
    """.npy bytes of each sample; with in_val, only the samples on the kept side of the val hold-out."""
    for index, (sample, label) in enumerate(samples):
        if in_val is None or bool(in_val[index]) == keep_val:
            yield encode_npy(sample), label


def prepare_dvs_gesture(
    out_dir: Path,
    *,
    src: str,
    frames: int = 20,
    split_by: Literal["number", "time"] = "number",
    val_fraction: float = 0.0,
    seed: int = 0,
    samples_per_shard: int = 256,
) -> dict:
    """DvsGesture's AEDAT recordings as event frames [frames, 2, 128, 128] (uint8 counts): train is the release's
    training trials less a seeded stratified val_fraction (0 by default: the papers report test accuracy), test
    its test trials. frames = T: OTTT and OPZO use T = 20 for DVS-Gesture."""
    if int(frames) != frames or frames < 1:
        raise ConfigError(f"dvs-gesture: option frames must be an integer >= 1, got {frames}")
    if split_by not in ("number", "time"):
        raise ConfigError(f"dvs-gesture: option split_by must be 'number' or 'time', got {split_by!r}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"dvs-gesture: option val_fraction must be in [0, 1), got {val_fraction}")
    if int(samples_per_shard) != samples_per_shard or samples_per_shard < 1:
        raise ConfigError(f"dvs-gesture: option samples_per_shard must be an integer >= 1, got {samples_per_shard}")
    root = Path(src)
    if not root.is_dir():
        raise DataError(f"{root} (option src) does not exist: point src at the extracted DvsGesture folder")
    recordings = _recordings(root)
    # the split needs only the labels (the CSVs); the frames are streamed, so a split never sits in memory
    labels = np.asarray([label for path in recordings["train"] for label, _, _ in read_labels(_labels_path(path))])
    held = stratified_split(labels, val_fraction, 0.0, np.random.default_rng(seed)) if len(labels) else {"val": []}
    in_val = np.zeros(len(labels), dtype=bool)
    in_val[held["val"]] = True
    counts = {"train": int((~in_val).sum()), "val": int(in_val.sum())}
    splits = {
        split: (counts[split], _encoded(_gestures(recordings["train"], int(frames), split_by), in_val, split == "val"))
        for split in ("train", "val")
    }
    test_count = sum(len(read_labels(_labels_path(path))) for path in recordings["test"])
    splits["test"] = (test_count, _encoded(_gestures(recordings["test"], int(frames), split_by)))
    return write_image_dataset(
        out_dir,
        source="dvs-gesture",
        options={"src": str(src), "frames": int(frames), "split_by": split_by, "val_fraction": float(val_fraction)}
        | {"seed": int(seed), "samples_per_shard": int(samples_per_shard)},
        generator_version=GENERATOR_VERSION,
        image_format="npy",
        shape=[int(frames), 2, SENSOR, SENSOR],
        classes=CLASSES,
        splits=splits,
        samples_per_shard=int(samples_per_shard),
    )
