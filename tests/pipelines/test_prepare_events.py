"""The dvs-gesture source: AEDAT 3.1 recordings and their label CSVs, written here byte by byte, become frames
[T, 2, 128, 128] counted exactly as SpikingJelly integrates them, on the release's train/test split."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from components.core.errors import ConfigError, DataError
from components.core.shards import ImageShards
from pipelines.datasets import prepare


def polarity_packet(x, y, p, t, overflow: int = 0, valid=None) -> bytes:
    """An AEDAT 3.1 polarity packet: 28-byte header, then (uint32 flags, int32 timestamp) per event."""
    valid = np.ones(len(x), dtype=np.uint32) if valid is None else np.asarray(valid, dtype=np.uint32)
    flags = (np.asarray(x, np.uint32) << 17) | (np.asarray(y, np.uint32) << 2) | (np.asarray(p, np.uint32) << 1)
    body = np.stack([flags | valid, np.asarray(t, np.uint32)], axis=1).astype("<u4").tobytes()
    header = struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, len(x), len(x), int(valid.sum()))
    return header + body


def other_packet(count: int = 3) -> bytes:
    """A special-event packet (type 0), which carries no polarity events and must be skipped."""
    return struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, count, count, count) + bytes(range(8 * count))


def write_aedat(path: Path, packets: list[bytes]) -> None:
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01\r\n#!END-HEADER\r\n"
    path.write_bytes(header + b"".join(packets))


def write_dvs_gesture(root: Path, users=(1, 2, 24), events_per_sample: int = 300, seed: int = 0) -> dict:
    """userNN_fluorescent.aedat + _labels.csv per user, three gestures each (classes vary by user), with events
    outside every gesture too; returns {(file name, gesture index): (x, y, p, t, class 0..10)}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for user in users:
        name = f"user{user:02d}_fluorescent"
        rows, xs, ys, ps, ts = ["class,startTime_usec,endTime_usec"], [], [], [], []
        start = 1000
        for gesture in range(3):
            label = (user * 3 + gesture) % 11
            end = start + 50_000
            t = np.sort(rng.integers(start, end, events_per_sample))
            x, y, p = rng.integers(0, 128, (3, events_per_sample))
            p %= 2
            x[:20], y[:20], p[:20] = 5, 7, 1  # a hot pixel: counts above 1 in one frame
            truth[(name, gesture)] = (x, y, p, t, label)
            rows.append(f"{label + 1},{start},{end}")
            xs.append(x), ys.append(y), ps.append(p), ts.append(t)
            gap = np.arange(end, end + 40, 4)  # events between gestures belong to none
            xs.append(np.full(10, 1)), ys.append(np.full(10, 1)), ps.append(np.zeros(10, int)), ts.append(gap)
            start = end + 100
        x, y, p, t = (np.concatenate(a) for a in (xs, ys, ps, ts))
        half = len(x) // 2
        write_aedat(
            root / f"{name}.aedat",
            [polarity_packet(x[:half], y[:half], p[:half], t[:half]), other_packet(),
             polarity_packet(x[half:], y[half:], p[half:], t[half:])],
        )  # fmt: skip
        (root / f"{name}_labels.csv").write_text("\r\n".join(rows) + "\r\n")
    return truth


def expected_frames(x, y, p, t, frames: int, split_by: str) -> np.ndarray:
    """SpikingJelly's integration written out plainly: slice bounds, then a count per event."""
    n = len(t)
    if split_by == "number":
        bounds = [(i * (n // frames), (i + 1) * (n // frames) if i < frames - 1 else n) for i in range(frames)]
    else:
        dt = (t[-1] - t[0]) // frames
        bounds = [
            (int(np.sum(t < t[0] + i * dt)), int(np.sum(t < t[0] + (i + 1) * dt)) if i < frames - 1 else n)
            for i in range(frames)
        ]
    out = np.zeros((frames, 2, 128, 128), dtype=np.int64)
    for index, (lo, hi) in enumerate(bounds):
        for k in range(lo, hi):
            out[index, p[k], y[k], x[k]] += 1
    return np.minimum(out, 255).astype(np.uint8)


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_gestures_become_spikingjelly_frames_on_the_release_split(tmp_path, split_by):
    truth = write_dvs_gesture(tmp_path / "DvsGesture")
    prepare("events/dvs_gesture", {"source": "dvs-gesture", "src": str(tmp_path / "DvsGesture"), "frames": 5,
                                   "split_by": split_by}, tmp_path / "data")  # fmt: skip
    manifest = json.loads((tmp_path / "data/events/dvs_gesture/manifest.json").read_text())
    assert manifest["shape"] == [5, 2, 128, 128] and len(manifest["classes"]) == 11
    splits = {s: ImageShards(tmp_path / "data", "events/dvs_gesture", s).arrays() for s in ("train", "val", "test")}
    assert [len(splits[s][1]) for s in ("train", "val", "test")] == [6, 0, 3]  # users 1, 2 train; 24 test
    for split, users in (("train", ("user01", "user02")), ("test", ("user24",))):
        frames, labels = splits[split]
        wanted = [(k, v) for k, v in sorted(truth.items()) if k[0][:6] in users]
        for (key, (x, y, p, t, label)), got, got_label in zip(wanted, frames, labels):
            assert got_label == label, key
            np.testing.assert_array_equal(got, expected_frames(x, y, p, t, 5, split_by), err_msg=str(key))
    # the between-gesture events at (1, 1) never reach a sample; the hot pixel counts above one
    train = splits["train"][0]
    assert train[:, :, 0, 1, 1].sum() < 6 * 5 and train[:, :, 1, 7, 5].max() > 1
    # control: swapping x and y (a classic decoding bug) gives other frames
    x, y, p, t, _ = truth[("user01_fluorescent", 0)]
    assert not np.array_equal(expected_frames(y, x, p, t, 5, split_by), splits["train"][0][0])


def test_trial_lists_decide_the_split_and_prepare_is_byte_identical(tmp_path):
    write_dvs_gesture(tmp_path / "DvsGesture", users=(1, 2, 12))  # users 1 and 12 share classes 4-6
    (tmp_path / "DvsGesture/trials_to_train.txt").write_text("user12_fluorescent.aedat\nuser01_fluorescent.aedat\n")
    (tmp_path / "DvsGesture/trials_to_test.txt").write_text("user02_fluorescent.aedat\n")
    spec = {"source": "dvs-gesture", "src": str(tmp_path / "DvsGesture"), "frames": 3, "val_fraction": 0.5}
    prepare("events/dvs_gesture", spec, tmp_path / "a")
    prepare("events/dvs_gesture", spec, tmp_path / "b")
    a, b = tmp_path / "a/events/dvs_gesture", tmp_path / "b/events/dvs_gesture"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert all((a / p.name).read_bytes() == (b / p.name).read_bytes() for p in a.iterdir())
    counts = {s: len(ImageShards(tmp_path / "a", "events/dvs_gesture", s)) for s in ("train", "val", "test")}
    assert counts == {"train": 3, "val": 3, "test": 3}
    val_labels = sorted(ImageShards(tmp_path / "a", "events/dvs_gesture", "val").labels.tolist())
    assert val_labels == [3, 4, 5]  # stratified: one of each class's two training samples


def test_invalid_events_and_timestamp_overflow(tmp_path):
    from pipelines.datasets.events import read_aedat31

    x, y, p, t = [3, 4, 5], [6, 7, 8], [0, 1, 1], [10, 20, 30]
    write_aedat(tmp_path / "a.aedat", [polarity_packet(x, y, p, t, overflow=2, valid=[1, 0, 1])])
    events = read_aedat31(tmp_path / "a.aedat")
    assert events["x"].tolist() == [3, 5] and events["y"].tolist() == [6, 8] and events["p"].tolist() == [0, 1]
    assert events["t"].tolist() == [(2 << 31) | 10, (2 << 31) | 30]


def test_bad_folders_and_files_are_one_line_errors(tmp_path):
    spec = {"source": "dvs-gesture", "src": str(tmp_path / "DvsGesture")}
    with pytest.raises(DataError, match="does not exist"):
        prepare("events/dvs_gesture", spec, tmp_path / "out")
    write_dvs_gesture(tmp_path / "DvsGesture", users=(1,))
    (tmp_path / "DvsGesture/user01_fluorescent_labels.csv").unlink()
    with pytest.raises(DataError, match="no labels file user01_fluorescent_labels.csv"):
        prepare("events/dvs_gesture", spec, tmp_path / "out")
    (tmp_path / "DvsGesture/user01_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,1,2\n")
    with pytest.raises(DataError, match=r"line 2: class 12"):
        prepare("events/dvs_gesture", spec, tmp_path / "out")
    data = (tmp_path / "DvsGesture/user01_fluorescent.aedat").read_bytes()
    (tmp_path / "DvsGesture/user01_fluorescent.aedat").write_bytes(data[:-5])
    (tmp_path / "DvsGesture/user01_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,1,9\n")
    with pytest.raises(DataError, match="truncated"):
        prepare("events/dvs_gesture", spec, tmp_path / "out")
    (tmp_path / "DvsGesture/user01_fluorescent.aedat").write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(DataError, match="not an AEDAT 3"):
        prepare("events/dvs_gesture", spec, tmp_path / "out")
    with pytest.raises(ConfigError, match="split_by"):
        prepare("events/dvs_gesture", {**spec, "split_by": "count"}, tmp_path / "out")
    assert not (tmp_path / "out/events/dvs_gesture").exists()
