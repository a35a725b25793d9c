"""vact's Config. Defaults are the paper's setting (vact.md §4, §7): 60 causal systems judged on K = 3 videos per
interventional prompt from a text-to-video model (CogVideoX's 49 frames of 480 x 720) by a vision-language model.
The smoke and test presets run the procedural world of §6 instead (renderer, stand-in generators, threshold
detector)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VideoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(49, ge=1)  # CogVideoX-class output: 49 frames (6 s at 8 fps), §7's 5-10 s clips
    height: int = Field(480, ge=8)  # §7: 480p-720p
    width: int = Field(720, ge=8)  # CogVideoX's 720 x 480
    channels: int = Field(3, ge=1)  # RGB; the §6 world is grayscale (1)
    latent: bool = False  # §6's latent variant: [T, |V|] noisy signs decoded by a fixed random linear map
    latent_dim: int = Field(16, ge=1)  # width of that map's output (>= the variables of any system)
    latent_sigma: float = Field(0.3, ge=0)  # latent noise; the detector averages it over the frames


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: int = Field(60, ge=1)  # v1 benchmark: 60 causal systems (templates first, then procedural DAGs)
    templates: tuple[str, ...] = ("ice", "ramp", "lamp")  # §6's hand-written systems, in this order
    systems_file: str = ""  # a JSON list of systems (the LLM assistant's output); replaces templates + procedural
    roots: tuple[int, int] = (2, 3)  # §6 procedural generator: |U| uniform in this range
    effects: tuple[int, int] = (2, 3)  # §6: 2-3 effects with random 1-2-term DNFs
    exhaustive_up_to: int = Field(4, ge=1)  # §3.2: all 2^|U| interventions when |U| <= 4, else a pair-covering sample
    seeds_per_prompt: int = Field(3, ge=1)  # K: §7 asks K >= 3 at full scale (one video per prompt is too noisy)
    generator: Literal["oracle", "shortcut", "ignorer", "noisy", "folder", "plugin"] = "folder"  # full scale: the
    # videos a text-to-video model wrote (`vact_generate`), read from video_dir
    epsilon: float = Field(0.1, ge=0, le=1)  # Noisy(eps)'s flip probability (§6 check 5)
    occlusion: float = Field(0.0, ge=0, le=1)  # stand-ins: probability a variable's cell is occluded (judge NA)
    video_dir: str = ""  # generator folder: index.jsonl + clips
    generator_factory: str = ""  # generator plugin: 'module:attr' returning an object with generate(prompt, seed)
    detector: Literal["threshold", "plugin"] = "plugin"  # full scale: a local video VLLM (§7)
    detector_factory: str = ""  # detector plugin: 'module:attr' returning an object with ask(video, question)
    swap_options: bool = True  # §3.3: ask twice with A/B swapped, NA on disagreement (judge-bias control, §8)
    video: VideoConfig = VideoConfig()

    @model_validator(mode="after")
    def _ranges(self) -> Config:
        for key in ("roots", "effects"):
            low, high = getattr(self, key)
            if not 1 <= low <= high:
                raise ValueError(f"{key} must be a range (low, high) with 1 <= low <= high, got {(low, high)}")
        return self
