"""Test data in Pyramid Flow's own format: raw RGB clips at the paper's 384p resolution and 121 frames (5 s at
24 fps), and a cheap stand-in for its causal video VAE written as user code plus safetensors weights, so the
`video-folder` source runs exactly as it would on the real VAE (pyramid_flow.md §2: C = 16 latent channels,
8x spatial and 8x temporal compression, the first frame encoded alone: 1 + 8m frames -> 1 + m latent frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PAPER_FRAMES, PAPER_HEIGHT, PAPER_WIDTH = 121, 384, 640  # 384p = 640 x 384, 5 s at 24 fps
PAPER_LATENT = (16, 16, 48, 80)  # [T', C, h, w]: 1 + 120/8 latent frames of 16 channels on a 384/8 x 640/8 grid

# The stand-in: the causal VAE's shapes with none of its cost. The first frame is average-pooled 8 x 8 on its
# own; every later group of 8 frames is average-pooled 8 x 8 x 8; a fixed 3 -> 16 linear map (weights from
# the safetensors file) gives the latent channels. Same call convention as Pyramid-Flow's CausalVideoVAE:
# `from_pretrained(folder)`, `encode([B, 3, T, H, W] in [-1, 1]).latent_dist.mode()` -> [B, 16, T', h, w].
STAND_IN_VAE = """
import json
from pathlib import Path

import torch
from safetensors.torch import load_file


class LatentDist:
    def __init__(self, mean):
        self.mean = mean

    def mode(self):
        return self.mean


class EncoderOutput:
    def __init__(self, mean):
        self.latent_dist = LatentDist(mean)


class StandInCausalVAE(torch.nn.Module):
    def __init__(self, latent_channels, spatial, temporal):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.proj = torch.nn.Linear(3, latent_channels)

    @classmethod
    def from_pretrained(cls, folder):
        config = json.loads((Path(folder) / "config.json").read_text())
        vae = cls(config["latent_channels"], config["spatial_compression"], config["temporal_compression"])
        vae.load_state_dict(load_file(str(Path(folder) / "diffusion_pytorch_model.safetensors")))
        return vae

    def encode(self, video):
        frames = video.shape[2]
        if (frames - 1) % self.temporal:
            raise ValueError(f"the causal VAE needs 1 + {self.temporal} m frames, got {frames}")
        first = torch.nn.functional.avg_pool3d(video[:, :, :1], (1, self.spatial, self.spatial))
        later = torch.nn.functional.avg_pool3d(video[:, :, 1:], (self.temporal, self.spatial, self.spatial))
        pooled = torch.cat([first, later], dim=2)  # [B, 3, T', h, w]
        return EncoderOutput(self.proj(pooled.movedim(1, -1)).movedim(-1, 1))
"""


def write_stand_in_vae(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The VAE code (a module file) and its weights folder (config.json + diffusion_pytorch_model.safetensors);
    returns (module path, weights folder) for the options vae_factory and vae_weights."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    module = folder / "stand_in_vae.py"
    module.write_text(STAND_IN_VAE)
    weights = folder / "causal_video_vae"
    weights.mkdir(exist_ok=True)
    config = {"latent_channels": PAPER_LATENT[1], "spatial_compression": 8, "temporal_compression": 8}
    (weights / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(seed)
    state = {
        "proj.weight": torch.randn(PAPER_LATENT[1], 3, generator=generator),
        "proj.bias": 0.1 * torch.randn(PAPER_LATENT[1], generator=generator),
    }
    save_file(state, str(weights / "diffusion_pytorch_model.safetensors"))
    return module, weights


def moving_patch_clip(index: int, frames: int = PAPER_FRAMES, height: int = PAPER_HEIGHT, width: int = PAPER_WIDTH):
    """uint8 [frames, height, width, 3]: a coloured 96 x 96 patch moving over a horizontal gradient."""
    rng = np.random.default_rng(index)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    clip[:] = (np.linspace(0, 160, width, dtype=np.float32)[None, :, None] * rng.uniform(0.5, 1, 3)).astype(np.uint8)
    y, x = rng.integers(0, height - 96), rng.integers(0, width - 96)
    dy, dx = rng.integers(-3, 4, size=2)
    colour = rng.integers(64, 256, size=3, dtype=np.uint8)
    for t in range(frames):
        top = int(np.clip(y + dy * t, 0, height - 96))
        left = int(np.clip(x + dx * t, 0, width - 96))
        clip[t, top : top + 96, left : left + 96] = colour
    return clip


def write_raw_clips(folder: Path, count: int) -> list[Path]:
    """`count` clips of the paper's 121 x 384 x 640 RGB frames as .npy uint8 [T, H, W, 3] (the video-folder
    source's container-free format)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        paths.append(folder / f"clip{index:03d}.npy")
        np.save(paths[-1], moving_patch_clip(index))
    return paths
