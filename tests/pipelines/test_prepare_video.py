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
