"""Preparing video latents: the moving-squares renderer and stand-in encoder, the manifest, byte-identical
shards, verify, the reader's batches and errors, and the video-folder source with a user-provided VAE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.core.errors import ConfigError, DataError
from components.core.latents import LatentShards, UnshuffleEncoder, decoder_for
from pipelines.datasets import prepare, verify
from pipelines.datasets.video import render_held_out, render_moving_squares

NAME = "video/moving_squares"
# a toy "VAE" with the interface of Pyramid Flow's causal VAE: [B, 3, T, H, W] in [-1, 1] -> .latent_dist.mode()
# [B, C, 1 + (T - 1) / 2, H / 4, W / 4]; the first frame alone, later frames in pairs, as a causal VAE does
TOY_VAE = """
import torch

class _Dist:
    def __init__(self, mean):
        self.mean = mean
    def mode(self):
        return self.mean

class ToyVAE(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.scale = float(open(weights).read())
    def encode(self, video):
        frames = torch.cat([video[:, :, :1], 0.5 * (video[:, :, 1::2] + video[:, :, 2::2])], dim=2)
        pooled = torch.nn.functional.avg_pool3d(frames, (1, 4, 4))
        return type("Out", (), {"latent_dist": _Dist(self.scale * torch.cat([pooled, -pooled], dim=1))})()

def build(weights):
    return ToyVAE(weights)
"""


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("video")
    prepare(NAME, {"source": "moving-squares"}, root)
    return root


def test_manifest_records_counts_shapes_encoder_and_checksums(squares):
    manifest = json.loads((squares / NAME / "manifest.json").read_text())
    assert manifest["kind"] == "video" and manifest["source"] == "moving-squares"
    assert manifest["splits"]["train"]["count"] == 512 and manifest["splits"]["val"]["count"] == 64
    assert manifest["latent_shape"] == [5, 4, 8, 8] and manifest["pixel_shape"] == [5, 1, 16, 16]
    assert manifest["encoder"]["name"] == "unshuffle-standardise" and manifest["encoder"]["version"] == 1
    # one 4x4 square in every 16x16 frame: mean 1/16, std sqrt(1/16 * 15/16), exactly
    assert manifest["encoder"]["mean"] == 0.0625
    assert abs(manifest["encoder"]["std"] - np.sqrt(0.0625 * 0.9375)) < 1e-12
    shard = manifest["splits"]["train"]["shards"][0]
    assert len(shard["sha256"]) == 64 and shard["count"] == 512
    assert verify(squares) == [NAME]


def test_rendered_clips_follow_the_spec():
    clips = render_moving_squares(200, frames=5, size=16, square=4, max_speed=2, rng=np.random.default_rng(0))
    assert set(np.unique(clips)) == {0.0, 1.0}
    assert (clips.sum(axis=(2, 3, 4)) == 16).all()  # one whole 4x4 square per frame, never clipped
    corners = np.stack([np.argwhere(frame[0])[0] for clip in clips for frame in clip]).reshape(200, 5, 2)
    assert corners.min() >= 0 and corners.max() <= 12
    steps = np.abs(np.diff(corners, axis=1))
    assert steps.max() <= 2
    # away from the borders the velocity is constant (a reflection only flips its sign)
    inner = (corners[:, 1:-1] >= 2).all(axis=2) & (corners[:, 1:-1] <= 10).all(axis=2)
    velocity = np.diff(corners, axis=1)
    assert np.array_equal(velocity[:, 1:][inner], velocity[:, :-1][inner])
    assert (steps > 0).any() and (velocity < 0).any()


def test_no_val_clip_is_a_training_clip(squares):
    train, val = (LatentShards(squares, NAME, split).arrays() for split in ("train", "val"))
    seen = {clip.tobytes() for clip in train}
    assert not [i for i, clip in enumerate(val) if clip.tobytes() in seen]
    # control: drawn independently, as the spec's seeds alone would, the val split repeats training clips
    options = dict(frames=5, size=16, square=4, max_speed=2)
    independent = render_moving_squares(64, rng=np.random.default_rng(1), **options)
    pixels = {clip.tobytes() for clip in render_moving_squares(512, rng=np.random.default_rng(0), **options)}
    assert sum(clip.tobytes() in pixels for clip in independent) > 0


def test_latents_decode_back_to_the_rendered_pixels(squares):
    train = LatentShards(squares, NAME, "train")
    val = LatentShards(squares, NAME, "val")
    decoder = decoder_for(train.encoder)
    options = dict(frames=5, size=16, square=4, max_speed=2)
    expected_train = render_moving_squares(512, rng=np.random.default_rng(0), **options)
    expected_val = render_held_out(64, expected_train, rng=np.random.default_rng(1), **options)
    np.testing.assert_allclose(decoder.decode(train.arrays()).numpy(), expected_train, atol=1e-6)
    np.testing.assert_allclose(decoder.decode(val.arrays()).numpy(), expected_val, atol=1e-6)
    latents = train.arrays()
    assert abs(latents.mean()) < 1e-6 and abs(latents.std() - 1) < 1e-5  # standardised on train


def test_preparing_twice_is_byte_identical_and_verify_catches_corruption(squares, tmp_path):
    prepare(NAME, {"source": "moving-squares"}, tmp_path)
    for path in sorted((squares / NAME).iterdir()):
        assert (tmp_path / NAME / path.name).read_bytes() == path.read_bytes()
    shard = tmp_path / NAME / "val-000000.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="val-000000.tar does not match its sha256"):
        verify(tmp_path)
    train_shard = tmp_path / NAME / "train-000000.tar"
    data = bytearray(train_shard.read_bytes())
    data[1024 + 512 + 128 + 10] ^= 0xFF  # a latent of clip 0, past its .npy header: the structure stays valid
    train_shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train-000000\.tar does not match its sha256.*paperzoo prepare video"):
        LatentShards(tmp_path, NAME, "train")  # the reader checks before it hands out a clip


def test_batches_are_deterministic_and_split_across_ranks(squares):
    train = LatentShards(squares, NAME, "train")
    first = next(train.batches(32, seed=3, start_batch=5))
    again = next(train.batches(32, seed=3, start_batch=5))
    np.testing.assert_array_equal(first, again)
    halves = [next(train.batches(32, seed=3, start_batch=5, rank=r, world_size=2)) for r in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([halves[0][:, None], halves[1][:, None]], 1).reshape(first.shape), first
    )
    assert first.shape == (32, 5, 4, 8, 8) and first.dtype == np.float32


def test_reader_errors_name_the_problem(squares, tmp_path):
    with pytest.raises(DataError, match="paperzoo prepare video moving_squares"):
        LatentShards(tmp_path, NAME, "train")
    with pytest.raises(DataError, match="has no split 'test'"):
        LatentShards(squares, NAME, "test")
    prepare(NAME, {"source": "moving-squares", "train_clips": 8, "val_clips": 4}, tmp_path)
    manifest_path = tmp_path / NAME / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["latent_shape"] = [5, 4, 4, 16]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"stores float32 latents of shape \(5, 4, 8, 8\), manifest says"):
        LatentShards(tmp_path, NAME, "train")
    with pytest.raises(ConfigError, match="max_speed"):
        prepare("video/fast", {"source": "moving-squares", "max_speed": 13}, tmp_path)


def write_clips(folder: Path, count: int, frames: int = 5, size: int = 16) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        np.save(folder / f"clip{i:02d}.npy", rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8))


def test_video_folder_through_a_user_vae(tmp_path):
    write_clips(tmp_path / "clips", 6)
    (tmp_path / "vae.py").write_text(TOY_VAE)
    (tmp_path / "weights.txt").write_text("2.0")
    spec = {
        "source": "video-folder",
        "src": str(tmp_path / "clips"),
        "encoder": "vae",
        "frames": 5,
        "height": 16,
        "width": 16,
        "val_fraction": 0.34,
        "vae_factory": f"{tmp_path / 'vae.py'}:build",
        "vae_weights": str(tmp_path / "weights.txt"),
    }
    prepare("video/toy", spec, tmp_path / "data")
    train = LatentShards(tmp_path / "data", "video/toy", "train")
    assert train.shape == (3, 6, 4, 4) and len(train) == 4
    assert len(LatentShards(tmp_path / "data", "video/toy", "val")) == 2
    assert train.encoder["name"] == "video-vae" and train.encoder["weights"] == "weights.txt"
    assert decoder_for(train.encoder) is None
    # the SD3-variant normalisation: the first latent frame has its own shift and scale
    clip = np.load(sorted((tmp_path / "clips").iterdir())[0]).astype(np.float32) / 255 * 2 - 1
    raw_first = 2.0 * clip[0].reshape(4, 4, 4, 4, 3).mean(axis=(1, 3))[..., 0]
    first_latent = (raw_first - 0.1490) / 1.8415
    assert any(np.allclose(row[0, 0], first_latent, atol=1e-5) for row in train.arrays())
    prepare("video/toy", spec, tmp_path / "again")
    assert verify(tmp_path / "data") == ["video/toy"]
    assert (tmp_path / "data/video/toy/train-000000.tar").read_bytes() == (
        tmp_path / "again/video/toy/train-000000.tar"
    ).read_bytes()


def test_video_folder_errors_name_the_missing_piece(tmp_path):
    write_clips(tmp_path / "clips", 2)
    base = {"source": "video-folder", "src": str(tmp_path / "clips"), "frames": 5, "height": 16, "width": 16}
    with pytest.raises(DataError, match="option src"):
        prepare("video/x", {**base, "src": str(tmp_path / "nowhere")}, tmp_path / "data")
    with pytest.raises(ConfigError, match="needs option vae_weights"):
        prepare("video/x", base, tmp_path / "data")
    with pytest.raises(DataError, match="VAE weights not found at .*missing.safetensors .option vae_weights."):
        prepare(
            "video/x",
            {
                **base,
                "vae_weights": str(tmp_path / "missing.safetensors"),
                "vae_factory": "video_vae.modeling_causal_vae:CausalVideoVAE.from_pretrained",
            },
            tmp_path / "data",
        )
    (tmp_path / "w").write_text("1")
    with pytest.raises(DataError, match="cannot import the VAE code 'no_such_vae_package'"):
        prepare(
            "video/x",
            {**base, "vae_weights": str(tmp_path / "w"), "vae_factory": "no_such_vae_package:build"},
            tmp_path / "data",
        )
    with pytest.raises(DataError, match="has 5 frames, fewer than the 9 asked"):
        prepare("video/x", {**base, "encoder": "unshuffle", "frames": 9}, tmp_path / "data")
    assert not (tmp_path / "data" / "video" / "x").exists()


def test_video_folder_with_the_stand_in_encoder(tmp_path):
    write_clips(tmp_path / "clips", 3, size=8)
    prepare(
        "video/small",
        {
            "source": "video-folder",
            "src": str(tmp_path / "clips"),
            "encoder": "unshuffle",
            "frames": 5,
            "height": 16,
            "width": 16,
            "val_fraction": 0.0,
        },
        tmp_path / "data",
    )
    train = LatentShards(tmp_path / "data", "video/small", "train")
    assert train.shape == (5, 12, 8, 8) and train.pixel_shape == (5, 3, 16, 16)  # resized 8 -> 16, unshuffled
    assert isinstance(decoder_for(train.encoder), UnshuffleEncoder)


def test_video_folder_keeps_one_val_clip_when_the_fraction_rounds_to_none(tmp_path):
    # 5 clips at the default val_fraction 0.05 used to round to an empty val split (a run then has nothing to
    # score); now at least one clip is held out when any is asked for, and a folder too small for both is an error
    write_clips(tmp_path / "clips", 5)
    base = {"source": "video-folder", "src": str(tmp_path / "clips"), "encoder": "unshuffle", "frames": 5}
    prepare("video/small", {**base, "height": 16, "width": 16}, tmp_path / "data")
    assert [len(LatentShards(tmp_path / "data", "video/small", s)) for s in ("train", "val")] == [4, 1]
    prepare("video/none", {**base, "height": 16, "width": 16, "val_fraction": 0.0}, tmp_path / "data")
    assert [len(LatentShards(tmp_path / "data", "video/none", s)) for s in ("train", "val")] == [5, 0]
    write_clips(tmp_path / "one", 1)
    with pytest.raises(DataError, match="has 1 clip.s.: too few for a train split and 1 val clip"):
        prepare("video/x", {**base, "src": str(tmp_path / "one"), "height": 16, "width": 16}, tmp_path / "data")


def test_video_folder_stand_in_statistics_come_from_the_train_split_only(tmp_path):
    # the unshuffle stand-in's mean and std are fitted on train clips: a bright val clip must not move them
    folder = tmp_path / "clips"
    folder.mkdir()
    for index in range(4):
        np.save(folder / f"c{index}.npy", np.full((5, 8, 8, 3), 10 * index, dtype=np.uint8))
    spec = {"source": "video-folder", "src": str(folder), "encoder": "unshuffle", "frames": 5, "height": 8}
    prepare("video/fit", {**spec, "width": 8, "val_fraction": 0.25}, tmp_path / "data")
    train = LatentShards(tmp_path / "data", "video/fit", "train")
    val = LatentShards(tmp_path / "data", "video/fit", "val")
    pixels = train.arrays() * train.encoder["std"] + train.encoder["mean"]
    assert train.encoder["mean"] == pytest.approx(pixels.mean(), abs=1e-6)
    assert train.encoder["std"] == pytest.approx(pixels.std(), rel=1e-5)
    everything = np.concatenate([pixels, val.arrays() * train.encoder["std"] + train.encoder["mean"]])
    assert abs(everything.mean() - train.encoder["mean"]) > 1e-3  # control: the val clip differs from train


def fake_pyav(source_fps: float, count: int, side: int = 4):
    """A stand-in for PyAV (not installed here): every container decodes `count` frames at `source_fps`, frame i
    filled with the value i, with PyAV's frame.time (seconds, from a nonzero start) and to_ndarray."""
    import types

    class Frame:
        def __init__(self, index):
            self.index, self.time = index, 10.0 + index / source_fps

        def to_ndarray(self, format):
            assert format == "rgb24"
            return np.full((side, side, 3), self.index, dtype=np.uint8)

    class Container:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def decode(self, video):
            return (Frame(i) for i in range(count))

    return types.SimpleNamespace(open=lambda path: Container(), error=types.SimpleNamespace(FFmpegError=OSError))


@pytest.mark.parametrize(
    ("source_fps", "fps", "indices"),
    [
        (30, 24, [0, 1, 2, 3, 5, 6, 7, 8, 10]),  # the frame on screen at j / 24 s: floor(1.25 j)
        (12, 24, [0, 0, 1, 1, 2, 2, 3, 3, 4]),  # a slower source holds each frame for two output frames
        (24, 24, list(range(9))),
        (30, 0, list(range(9))),  # fps 0: every decoded frame
    ],
)
def test_video_clips_are_resampled_to_the_asked_frame_rate(tmp_path, monkeypatch, source_fps, fps, indices):
    # the paper's clips are 121 frames at 24 fps (5 s); taking the first 121 frames of a 30 fps video would give
    # 4 s clips at the wrong speed, so a container is resampled by its timestamps (option fps, default 24)
    import sys

    from components.core.video import read_clip

    monkeypatch.setitem(sys.modules, "av", fake_pyav(source_fps, 40))
    (tmp_path / "clip.mp4").write_bytes(b"not read by the stand-in")
    clip = read_clip(tmp_path / "clip.mp4", 9, 4, 4, fps)
    assert clip.shape == (9, 3, 4, 4)
    assert np.rint(clip[:, 0, 0, 0] * 255).astype(int).tolist() == indices


def test_video_folder_resamples_containers_and_names_a_short_clip(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "av", fake_pyav(12, 5))
    folder = tmp_path / "clips"
    folder.mkdir()
    for index in range(2):
        (folder / f"c{index}.MP4").write_bytes(b"")
    base = {"source": "video-folder", "src": str(folder), "encoder": "unshuffle", "height": 4, "width": 4}
    prepare("video/rated", {**base, "frames": 9, "val_fraction": 0.0}, tmp_path / "data")
    assert LatentShards(tmp_path / "data", "video/rated", "train").manifest["options"]["fps"] == 24.0
    with pytest.raises(DataError, match="has 9 frames at 24 fps, fewer than the 10 asked"):
        prepare("video/x", {**base, "frames": 10}, tmp_path / "data")
    with pytest.raises(ConfigError, match="option fps must be >= 0"):
        prepare("video/x", {**base, "fps": -1}, tmp_path / "data")


def test_frames_are_scaled_to_cover_then_centre_cropped_never_squashed():
    # a 16:9 source must keep its aspect on the way to the paper's 640 x 384 (5:3): scaled until it covers the
    # target, then centre-cropped, as the image sources do (squashing it stretched every object sideways)
    from components.core.video import cover_and_crop

    frame = np.zeros((8, 16, 3), dtype=np.uint8)
    frame[:, :, 0] = np.arange(16, dtype=np.uint8)[None] * 10  # column index in the red channel
    assert cover_and_crop(frame, 8, 8)[:, :, 0].tolist() == [list(range(40, 120, 10))] * 8  # columns 4..11
    wide = np.zeros((360, 640, 3), dtype=np.uint8)
    wide[:, 310:330] = 255  # a centred 20 x 360 bar: 20 px wide before and after (the scale is 384 / 360)
    out = cover_and_crop(wide, 384, 640)
    columns = np.flatnonzero(out[192, :, 0] > 127)
    assert out.shape == (384, 640, 3) and len(columns) in (21, 22) and abs(columns.mean() - 319.5) < 1.5
