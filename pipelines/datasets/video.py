"""Video-latent sources: procedurally rendered moving squares (embedded, no download) and a folder of videos.

Both render or read pixel clips, pass them through a latent encoder (components.core.latents) and write
WebDataset shards of latent arrays plus a manifest through `write_latent_dataset`, atomically and
byte-for-byte reproducibly. `encoder: unshuffle` is the spec's fixed invertible stand-in; `encoder: vae`
runs a video VAE whose code and weights the user provides (nothing is downloaded):

    paperzoo prepare video webvid --set source=video-folder --set src=/data/clips --set encoder=vae \\
        --set vae_factory=video_vae.modeling_causal_vae:CausalVideoVAE.from_pretrained \\
        --set vae_weights=/models/pyramid-flow-sd3/causal_video_vae --set frames=121 --set fps=24 \\
        --set height=384 --set width=640
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from components.core.errors import ConfigError, DataError
from components.core.latents import LatentEncoder, UnshuffleEncoder, write_latent_dataset
from components.core.video import load_factory, read_clip

GENERATOR_VERSION = 2  # bump when a source's output bytes change for the same options (2: val unseen in train)
# video-folder's own (2: as moving-squares; 3: fps resampling, cover + centre crop instead of squashing, at least
# one val clip, the stand-in fitted on train only)
FOLDER_VERSION = 3
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")
CLIP_SUFFIXES = (".npy",) + VIDEO_SUFFIXES
# Pyramid Flow's SD3-variant latent normalisation (pyramid_flow.md §3.1): (z - shift) * scale, where the first
# latent frame (encoded alone by the causal VAE) has its own statistics
SD3_NORMALISATION = {"first_shift": 0.1490, "first_scale": 1 / 1.8415, "shift": -0.2343, "scale": 1 / 3.0986}


def render_moving_squares(
    count: int, *, frames: int, size: int, square: int, max_speed: int, rng: np.random.Generator
) -> np.ndarray:
    """Clips [count, frames, 1, size, size] of one white square on black (pyramid_flow.md §6).

    The top-left corner starts uniformly on the integer grid [0, size - square]^2 and moves by an integer
    velocity drawn uniformly from [-max_speed, max_speed]^2 per frame; a corner that would leave the grid is
    reflected back (p -> -p below 0, p -> 2 (size - square) - p above) and that velocity component flips.
    Integer positions keep every frame exactly binary (assumption: the spec does not say integer)."""
    limit = size - square
    position = rng.integers(0, limit + 1, size=(count, 2))
    velocity = rng.integers(-max_speed, max_speed + 1, size=(count, 2))
    clips = np.zeros((count, frames, 1, size, size), dtype=np.float32)
    rows = np.arange(count)
    offsets = np.arange(square)
    for t in range(frames):
        ys = position[:, :1] + offsets  # [count, square]
        xs = position[:, 1:] + offsets
        clips[rows[:, None, None], t, 0, ys[:, :, None], xs[:, None, :]] = 1.0
        position = position + velocity
        low, high = position < 0, position > limit
        position = np.where(low, -position, np.where(high, 2 * limit - position, position))
        velocity = np.where(low | high, -velocity, velocity)
    return clips


def render_held_out(count: int, seen: np.ndarray, *, rng: np.random.Generator, **options: int) -> np.ndarray:
    """count clips drawn as render_moving_squares draws them, skipping every clip byte-identical to one in seen
    (the train split): the space is small (13^2 corners x 5^2 velocities at 16x16), so about one val clip in
    eight would otherwise be a training clip and the val loss would be optimistic."""
    known = {clip.tobytes() for clip in seen}
    kept: list[np.ndarray] = []
    for _ in range(64):  # rounds of candidates; more only if the space is nearly exhausted
        for clip in render_moving_squares(count, rng=rng, **options):
            if clip.tobytes() not in known and len(kept) < count:
                kept.append(clip)
        if len(kept) == count:
            return np.stack(kept)
    raise ConfigError(
        f"moving-squares: could not draw {count} val clips unseen in training; the options allow too few "
        "distinct clips (raise size or max_speed, or lower train_clips)"
    )


def _check_shard_option(source: str, samples_per_shard: int) -> None:
    if int(samples_per_shard) != samples_per_shard or samples_per_shard < 1:
        raise ConfigError(f"{source}: option samples_per_shard must be an integer >= 1, got {samples_per_shard}")


def prepare_moving_squares(
    out_dir: Path,
    *,
    train_clips: int = 512,
    val_clips: int = 64,
    frames: int = 5,
    size: int = 16,
    square: int = 4,
    max_speed: int = 2,
    seed: int = 0,
    patch: int = 2,
    samples_per_shard: int = 4096,
) -> dict:
    """pyramid_flow.md §6: 512 train clips (seed 0) and 64 val clips (seed 1, none a training clip) of 5 frames of 16x16, through
    the unshuffle stand-in (pixel_unshuffle by 2, standardised by the train split's mean and std)."""
    source = "moving-squares"
    _check_shard_option(source, samples_per_shard)
    for key, value, low in (
        ("train_clips", train_clips, 1),
        ("val_clips", val_clips, 1),
        ("frames", frames, 1),
        ("square", square, 1),
        ("max_speed", max_speed, 0),
        ("patch", patch, 1),
    ):
        if int(value) != value or value < low:
            raise ConfigError(f"{source}: option {key} must be an integer >= {low}, got {value}")
    if not 0 < square <= size:
        raise ConfigError(f"{source}: option square ({square}) must lie in 1..size ({size})")
    if max_speed > size - square:
        raise ConfigError(
            f"{source}: option max_speed ({max_speed}) exceeds the free range size - square "
            f"({size - square}); one reflection could not bring the square back"
        )
    common = dict(frames=int(frames), size=int(size), square=int(square), max_speed=int(max_speed))
    train = render_moving_squares(int(train_clips), rng=np.random.default_rng(seed), **common)
    val = render_held_out(int(val_clips), train, rng=np.random.default_rng(seed + 1), **common)
    encoder = UnshuffleEncoder.fitted(train, int(patch))
    pixel_shape = train.shape[1:]
    return write_latent_dataset(
        out_dir,
        source=source,
        generator_version=GENERATOR_VERSION,
        options={
            **common,
            "train_clips": int(train_clips),
            "val_clips": int(val_clips),
            "seed": int(seed),
            "patch": int(patch),
            "samples_per_shard": int(samples_per_shard),
        },
        encoder=encoder.describe(),
        pixel_shape=list(pixel_shape),
        latent_shape=list(encoder.latent_shape(pixel_shape)),
        splits={"train": (len(train), iter(encoder.encode(train))), "val": (len(val), iter(encoder.encode(val)))},
        samples_per_shard=int(samples_per_shard),
    )


class VAEEncoder:
    """A user-provided video VAE behind the LatentEncoder interface.

    `factory(weights)` must return a torch module whose `encode(video)` takes [B, 3, T, H, W] pixels in [-1, 1]
    (Pyramid Flow's convention) and returns latents [B, C, T', h, w], either as a tensor or as an object with
    `.latent_dist` (diffusers style; its mode, the mean, is used so preparing twice gives the same bytes).
    The SD3-variant normalisation (z - shift) * scale is applied, with separate first-frame statistics."""

    name = "video-vae"
    version = 1

    def __init__(self, factory: str, weights: str, normalisation: dict[str, float], device: str = "cpu"):
        import torch

        path = Path(weights).expanduser()
        if not path.exists():
            raise DataError(
                f"video-folder: VAE weights not found at {path} (option vae_weights): download them "
                f"yourself (e.g. the causal_video_vae folder of rain1011/pyramid-flow-sd3) and point "
                f"vae_weights at them; nothing is downloaded at prepare time"
            )
        self.factory, self.weights, self.normalisation, self.device = factory, str(weights), normalisation, device
        self.model = load_factory(factory)(str(path))
        if not hasattr(self.model, "encode"):
            raise DataError(f"video-folder: the object built by {factory} has no encode() method")
        if hasattr(self.model, "eval"):
            self.model = self.model.eval().to(device)
        self._torch = torch
        self._shape: tuple[int, ...] | None = None

    def _encode_tensor(self, video):
        with self._torch.no_grad():
            out = self.model.encode(video)
        dist = getattr(out, "latent_dist", out)
        if hasattr(dist, "mode"):
            out = dist.mode()
        elif hasattr(dist, "mean") and not isinstance(dist, self._torch.Tensor):
            out = dist.mean
        if not isinstance(out, self._torch.Tensor) or out.ndim != 5:
            raise DataError(
                f"video-folder: {self.factory}'s encode() must give latents [B, C, T', h, w], got "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )
        return out.float()

    def latent_shape(self, pixel_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self._shape is None:
            probe = np.zeros((1, *pixel_shape), dtype=np.float32)
            self._shape = tuple(self.encode(probe).shape[1:])
        return self._shape

    def encode(self, clips: np.ndarray) -> np.ndarray:
        pixels = self._torch.from_numpy(np.asarray(clips, dtype=np.float32)).permute(0, 2, 1, 3, 4)
        # [N, T, 3, H, W] in [0, 1] -> contiguous [N, 3, T, H, W] in [-1, 1]: one copy, then in place
        video = self._torch.empty(pixels.shape, device=self.device).copy_(pixels).mul_(2).sub_(1)
        z = self._encode_tensor(video)
        n = self.normalisation
        z = self._torch.cat(
            [(z[:, :, :1] - n["first_shift"]) * n["first_scale"], (z[:, :, 1:] - n["shift"]) * n["scale"]], dim=2
        )
        return z.permute(0, 2, 1, 3, 4).cpu().numpy()  # [N, T', C, h, w]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "factory": self.factory,
            "weights": Path(self.weights).name,
            "normalisation": self.normalisation,
        }


def prepare_video_folder(
    out_dir: Path,
    *,
    src: str,
    encoder: Literal["vae", "unshuffle"] = "vae",
    vae_factory: str = "",
    vae_weights: str = "",
    frames: int = 121,
    fps: float = 24,
    height: int = 384,
    width: int = 640,
    val_fraction: float = 0.05,
    seed: int = 0,
    patch: int = 2,
    device: str = "cpu",
    dtype: Literal["float32", "float16"] = "float32",
    samples_per_shard: int = 256,
) -> dict:
    """A folder of clips (`*.mp4|webm|mkv|mov|avi` through PyAV, or `*.npy` uint8 [T, H, W, 3]) searched
    recursively in sorted order, resampled to `fps` (the paper's 24) by the container's timestamps and cut to
    `frames` frames (1 + 8m for the causal VAE: 121 = 5 s at 24 fps), scaled to cover height x width and
    centre-cropped (aspect kept), split train/val with a seeded permutation, and encoded to latents."""
    source = "video-folder"
    _check_shard_option(source, samples_per_shard)
    root = Path(src).expanduser()
    if not root.is_dir():
        raise DataError(f"video folder {root} (option src) does not exist: point src at a folder of video clips")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CLIP_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise DataError(f"video folder {root} has no clips ({', '.join(CLIP_SUFFIXES)})")
    if not fps >= 0:
        raise ConfigError(f"{source}: option fps must be >= 0 (0 keeps every decoded frame), got {fps}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"{source}: option val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(files))
    # at least one val clip when one is asked for: a small folder would otherwise round to an empty val split,
    # which the trainers score on
    num_val = max(1, round(len(files) * val_fraction)) if val_fraction > 0 else 0
    if num_val >= len(files):
        raise DataError(
            f"video folder {root} has {len(files)} clip(s): too few for a train split and {num_val} val clip(s) "
            f"(val_fraction {val_fraction}); add clips or set val_fraction=0"
        )
    split_files = {"train": [files[i] for i in order[num_val:]], "val": [files[i] for i in order[:num_val]]}
    if encoder == "vae":
        if not vae_weights:
            raise ConfigError(
                f"{source}: encoder vae needs option vae_weights (the VAE's weights you downloaded) "
                f"and vae_factory (module:callable building the VAE from them)"
            )
        if not vae_factory:
            raise ConfigError(
                f"{source}: encoder vae needs option vae_factory, e.g. "
                f"video_vae.modeling_causal_vae:CausalVideoVAE.from_pretrained"
            )
        chosen: LatentEncoder = VAEEncoder(vae_factory, vae_weights, SD3_NORMALISATION, device)
    elif encoder == "unshuffle":
        train_pixels = np.stack([read_clip(f, frames, height, width, fps) for f in split_files["train"]])
        chosen = UnshuffleEncoder.fitted(train_pixels, patch)  # the train split only: val stays unseen
    else:
        raise ConfigError(f"{source}: option encoder must be 'vae' or 'unshuffle', got '{encoder}'")
    pixel_shape = (int(frames), 3, int(height), int(width))

    def latents(paths: list[Path]) -> Iterator[np.ndarray]:
        for path in paths:
            yield chosen.encode(read_clip(path, frames, height, width, fps)[None])[0]

    return write_latent_dataset(
        out_dir,
        source=source,
        generator_version=FOLDER_VERSION,
        options={
            "src": str(src),
            "encoder": encoder,
            "vae_factory": vae_factory,
            "vae_weights": str(vae_weights),
            "frames": int(frames),
            "fps": float(fps),
            "height": int(height),
            "width": int(width),
            "val_fraction": float(val_fraction),
            "seed": int(seed),
            "patch": int(patch),
            "device": device,
            "dtype": dtype,
            "samples_per_shard": int(samples_per_shard),
        },
        encoder=chosen.describe(),
        pixel_shape=list(pixel_shape),
        latent_shape=list(chosen.latent_shape(pixel_shape)),
        splits={split: (len(paths), latents(paths)) for split, paths in split_files.items()},
        samples_per_shard=int(samples_per_shard),
        dtype=dtype,
    )
