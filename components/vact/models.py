"""The two interfaces through which models plug in (vact.md §3.3, §5), and the spec's stand-ins (§6).

Generator: `generate(request, seed) -> video`, a video being uint8 frames [T, H, W, C] (or, in the latent
variant, a float array [T, dim]). A real text-to-video model sees only `request.prompt`; the stand-ins also read
the causal system, which is what makes them analysable. Any object with `generate(prompt: str, seed: int)`
returning uint8 [T, H, W, 3] plugs in as `generator: plugin` through `generator_factory` ("package.module:attr"
or "/path/file.py:attr", called with no arguments); `generator: folder` reads videos a model already wrote
(`index.jsonl` + clips) through the video stage's clip reader.

Detector ("VLLM"): `ask(video, question) -> "A" | "B" | "C"`, the option letter of the fixed template
(A: D(v, 1), B: D(v, 0), C: cannot tell; with `swap_options` asked twice, the second time with A and B swapped,
and NA when the two answers disagree). A vision-language model plugs in as `detector: plugin` through
`detector_factory`; it reads `question.text` and the video. The stand-in reads the variable's cell."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from components.core.errors import ConfigError, DataError
from components.vact import render
from components.vact.systems import CausalSystem, interventions


@dataclass(frozen=True)
class VideoSpec:
    frames: int
    height: int
    width: int
    channels: int
    latent: bool = False  # the latent variant: [T, dim] arrays instead of pixels
    latent_dim: int = 16
    latent_sigma: float = 0.3


@dataclass(frozen=True)
class Request:
    system: CausalSystem
    u: tuple[int, ...]
    prompt: str
    system_seed: int  # fixes the latent variant's decoder for this system


@dataclass(frozen=True)
class Question:
    text: str  # the template filled with D(v,1), D(v,0) (swapped when `swapped`)
    variable: str
    index: int  # the variable's position in the system (the stand-in's cell)
    count: int
    kind: str
    swapped: bool = False


class Generator(Protocol):
    def generate(self, request: Request, seed: int) -> np.ndarray: ...


class Detector(Protocol):
    def ask(self, video: np.ndarray, question: Question) -> str: ...


def questions(system: CausalSystem, swapped: bool = False) -> list[Question]:
    out = []
    for index, v in enumerate(system.variables):
        first, second = (v.false, v.true) if swapped else (v.true, v.false)
        text = f"In this video, which is true? (A) {first} (B) {second} (C) cannot tell"
        out.append(Question(text, v.name, index, len(system.variables), v.kind, swapped))
    return out


def answer_value(letter: Any, swapped: bool) -> int | None:
    """Option letter -> 1, 0 or None (NA); anything else than A/B/C is NA too (a malformed judge answer)."""
    letter = str(letter).strip().upper()[:1]
    if letter not in ("A", "B"):
        return None
    return int((letter == "A") != swapped)


def latent_world(system: CausalSystem, spec: VideoSpec, system_seed: int) -> render.LatentWorld:
    return render.LatentWorld(len(system.variables), spec.latent_dim, spec.latent_sigma, seed=system_seed)


class StandIn:
    """Base of the §6 stubs: choose a world (a value per variable), then draw it."""

    def __init__(self, spec: VideoSpec, occlusion: float = 0.0):
        self.spec, self.occlusion = spec, occlusion

    def world(self, request: Request, rng: np.random.Generator) -> dict[str, int]:
        raise NotImplementedError

    def generate(self, request: Request, seed: int) -> np.ndarray:
        system = request.system
        rng = np.random.default_rng([request.system_seed, *request.u, seed])
        values = self.world(request, rng)
        bits = [values[v] for v in system.names]
        if self.spec.latent:
            return latent_world(system, self.spec, request.system_seed).render(bits, self.spec.frames, rng)
        occluded = rng.random(len(bits)) < self.occlusion if self.occlusion > 0 else None
        kinds = [v.kind for v in system.variables]
        s = self.spec
        return render.render(
            bits, kinds, frames=s.frames, height=s.height, width=s.width, channels=s.channels, occluded=occluded
        )


class Oracle(StandIn):
    """Renders x*(u)."""

    def world(self, request, rng):
        return request.system.evaluate(request.u)


def effect_marginals(system: CausalSystem) -> dict[str, float]:
    """m_v = P(x*_v(u) = 1) for u uniform over the intervention set."""
    worlds = [system.evaluate(u) for u in interventions(system)]
    return {v: float(np.mean([w[v] for w in worlds])) for v in system.effects}


class Shortcut(StandIn):
    """Roots as prompted; each effect drawn independently from its marginal over interventions (ignores causes)."""

    def __init__(self, spec: VideoSpec, occlusion: float = 0.0):
        super().__init__(spec, occlusion)
        self._marginals: dict[str, dict[str, float]] = {}

    def world(self, request, rng):
        system = request.system
        values = dict(zip(system.roots, request.u, strict=True))
        if system.name not in self._marginals:
            self._marginals[system.name] = effect_marginals(system)
        for v, m in self._marginals[system.name].items():
            values[v] = int(rng.random() < m)
        return values


class SelfConsistentIgnorer(StandIn):
    """Ignores the prompt: samples its own roots uniformly, then applies F (right physics, wrong causes)."""

    def world(self, request, rng):
        system = request.system
        return system.evaluate(tuple(int(b) for b in rng.integers(0, 2, len(system.roots))))


class Noisy(StandIn):
    """Renders x*(u), then flips every variable (roots included) independently with probability epsilon."""

    def __init__(self, spec: VideoSpec, epsilon: float, occlusion: float = 0.0):
        super().__init__(spec, occlusion)
        self.epsilon = epsilon

    def world(self, request, rng):
        truth = request.system.evaluate(request.u)
        flips = rng.random(len(truth)) < self.epsilon
        return {v: truth[v] ^ int(flip) for v, flip in zip(request.system.names, flips, strict=True)}


class ThresholdDetector:
    """The stand-in VLLM: reads the variable's cell (pixels) or inverts the latent decoder (latent variant)."""

    def __init__(self, spec: VideoSpec):
        self.spec = spec
        self._latent: dict[int, render.LatentWorld] = {}

    def ask(self, video: np.ndarray, question: Question) -> str:
        if self.spec.latent:
            raise DataError("vact: the latent variant is read with ask_latent (it needs the system's decoder)")
        value = render.detect(video, question.index, question.count, question.kind)
        if value is None:
            return "C"
        return "A" if bool(value) != question.swapped else "B"


def load_factory(spec: str, key: str) -> Any:
    if not spec:
        raise ConfigError(f"vact: {key} is empty; name the adapter as 'package.module:attr' or '/path/file.py:attr'")
    from components.core.video import load_factory as load  # how user code plugs in, as the video stage's VAE

    factory = load(spec, option=key, owner="vact")
    return factory()


class PromptOnly:
    """Adapter for a real text-to-video model: it sees the prompt and the seed, nothing else."""

    def __init__(self, model: Any):
        if not callable(getattr(model, "generate", None)):
            raise ConfigError("vact: the generator_factory object has no generate(prompt, seed) method")
        self.model = model

    def generate(self, request: Request, seed: int) -> np.ndarray:
        video = np.asarray(self.model.generate(request.prompt, seed))
        if video.ndim != 4 or video.dtype != np.uint8:
            raise DataError(f"vact: the plugged-in generator returned {video.dtype} {video.shape}, not uint8 [T,H,W,C]")
        return video


INDEX = "index.jsonl"


class FolderGenerator:
    """Videos a model already wrote: `index.jsonl` lines {"prompt", "seed", "file"} beside the clips (.npy uint8
    [T, H, W, 3] or a container PyAV reads), read with the video stage's reader at the run's frames/height/width."""

    def __init__(self, folder: Path, spec: VideoSpec):
        index = folder / INDEX
        if not index.is_file():
            raise DataError(f"vact: video_dir {folder} has no {INDEX} (lines of prompt, seed, file)")
        self.folder, self.spec, self.files = folder, spec, {}
        for number, line in enumerate(index.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                self.files[(row["prompt"], int(row["seed"]))] = folder / row["file"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError(f"vact: {index} line {number} is not {{prompt, seed, file}}") from None

    def generate(self, request: Request, seed: int) -> np.ndarray:
        from components.core.video import read_clip

        path = self.files.get((request.prompt, seed))
        if path is None:
            raise DataError(f"vact: {self.folder / INDEX} has no video for seed {seed} of prompt {request.prompt!r}")
        pixels = read_clip(path, self.spec.frames, self.spec.height, self.spec.width)  # [T, 3, H, W] in [0, 1]
        return np.round(pixels.transpose(0, 2, 3, 1) * 255).astype(np.uint8)


def write_video_folder(
    folder: Path, generator: Generator, requests: Sequence[Request], seeds: int, spec: VideoSpec
) -> Path:
    """The `vact_generate` stage: every (prompt, seed) video as .npy uint8 [T, H, W, 3] plus index.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, request in enumerate(requests):
        for seed in range(seeds):
            video = generator.generate(request, seed)
            if video.shape[-1] == 1:
                video = np.repeat(video, 3, axis=-1)
            name = f"video{number:05d}_seed{seed:03d}.npy"
            np.save(folder / name, video)
            lines.append(json.dumps({"prompt": request.prompt, "seed": seed, "file": name}))
    (folder / INDEX).write_text("\n".join(lines) + "\n")
    return folder
