"""VACT (arXiv 2503.06163): causal testing of text-to-video models. Causal systems over binary, video-visible
variables; interventional prompts over the roots; videos from a generator; a detector ("VLLM") that reads every
variable back; text, generation and rule consistency with truth and observe variants (vact.md §3).

Nothing trains. The long loop is systems x interventions x seeds; after each system its judgements are appended
to judgements.jsonl, which is the checkpoint: a preempted run resumes at the first system not in it."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from components.core.contract import RunContext
from components.core.errors import ConfigError, DataError, Preempted
from components.vact import models
from components.vact.config import Config
from components.vact.metrics import Judgement, macro, system_metrics
from components.vact.systems import CausalSystem, build_systems, interventions, load_systems

JUDGEMENTS = "judgements.jsonl"


def video_spec(cfg: Config) -> models.VideoSpec:
    v = cfg.video
    return models.VideoSpec(v.frames, v.height, v.width, v.channels, v.latent, v.latent_dim, v.latent_sigma)


def make_generator(cfg: Config) -> models.Generator:
    spec = video_spec(cfg)
    if cfg.generator == "oracle":
        return models.Oracle(spec, cfg.occlusion)
    if cfg.generator == "shortcut":
        return models.Shortcut(spec, cfg.occlusion)
    if cfg.generator == "ignorer":
        return models.SelfConsistentIgnorer(spec, cfg.occlusion)
    if cfg.generator == "noisy":
        return models.Noisy(spec, cfg.epsilon, cfg.occlusion)
    if spec.latent:
        raise ConfigError(f"vact: video.latent is the stand-ins' variant; generator {cfg.generator} makes pixels")
    if cfg.generator == "folder":
        if not cfg.video_dir:
            raise ConfigError("vact: generator folder needs video_dir (a folder with index.jsonl and the clips)")
        return models.FolderGenerator(Path(cfg.video_dir).expanduser(), spec)
    return models.PromptOnly(models.load_factory(cfg.generator_factory, "generator_factory"))


def make_detector(cfg: Config) -> models.Detector:
    if cfg.detector == "threshold":
        return models.ThresholdDetector(video_spec(cfg))
    if cfg.video.latent:
        raise ConfigError("vact: the latent variant is read by the threshold detector (a VLLM reads pixels)")
    judge = models.load_factory(cfg.detector_factory, "detector_factory")
    if not callable(getattr(judge, "ask", None)):
        raise ConfigError("vact: the detector_factory object has no ask(video, question) method")
    return judge


def judge(
    system: CausalSystem, video: np.ndarray, detector: models.Detector, cfg: Config, system_seed: int
) -> dict[str, int | None]:
    """ô_v for every variable: the option letter mapped to 1/0/NA; with swap_options asked again with A and B
    swapped, NA where the two disagree (§3.3)."""
    if cfg.video.latent:
        values = models.latent_world(system, video_spec(cfg), system_seed).detect_all(video)
        return dict(zip(system.names, values, strict=True))
    first = {q.variable: models.answer_value(detector.ask(video, q), False) for q in models.questions(system)}
    if not cfg.swap_options:
        return first
    second = {q.variable: models.answer_value(detector.ask(video, q), True) for q in models.questions(system, True)}
    return {v: first[v] if first[v] == second[v] else None for v in system.names}


def the_systems(cfg: Config, seed: int) -> list[CausalSystem]:
    if cfg.systems_file:
        systems = load_systems(Path(cfg.systems_file).expanduser())
        if len(systems) < cfg.systems:
            raise DataError(
                f"vact: systems_file {cfg.systems_file} holds {len(systems)} systems, fewer than {cfg.systems}"
            )
        return systems[: cfg.systems]
    return build_systems(cfg.systems, cfg.templates, cfg.roots, cfg.effects, seed)


def requests_for(system: CausalSystem, index: int, cfg: Config, seed: int) -> list[models.Request]:
    system_seed = seed * 100_003 + index
    return [
        models.Request(system, u, system.prompt(u), system_seed)
        for u in interventions(system, cfg.exhaustive_up_to, seed=system_seed)
    ]


def prompt_table(cfg: Config, seed: int = 0) -> list[dict]:
    """The intervention table of §5's data stage: one row per (system, u) with x*(u) and the prompt; what a GPU
    generation job needs (each prompt rendered with seeds 0..K-1)."""
    return [
        {"system": system.name, "u": list(r.u), "x_star": system.evaluate(r.u), "prompt": r.prompt}
        for index, system in enumerate(the_systems(cfg, seed))
        for r in requests_for(system, index, cfg, seed)
    ]


def read_done(path: Path) -> dict[str, list[Judgement]]:
    """Judgements of the systems an earlier attempt finished (a line cut short by a kill is ignored)."""
    done: dict[str, list[Judgement]] = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        done.setdefault(row["system"], []).append(Judgement(tuple(row["u"]), row["seed"], row["observed"]))
    return done


def evaluate_systems(cfg: Config, ctx: RunContext) -> dict[str, float]:
    systems = the_systems(cfg, ctx.seed)
    generator, detector = make_generator(cfg), make_detector(cfg)  # bad adapters fail before any compute
    log_path = ctx.run_dir / JUDGEMENTS
    done = read_done(log_path)
    per_system: dict[str, dict[str, float]] = {}
    for index in ctx.progress(range(len(systems)), total=len(systems), desc="vact systems"):
        system = systems[index]
        judgements = done.get(system.name)
        if judgements is None:
            judgements, rows = [], []
            for request in requests_for(system, index, cfg, ctx.seed):
                for seed in range(cfg.seeds_per_prompt):
                    video = generator.generate(request, seed)
                    observed = judge(system, video, detector, cfg, request.system_seed)
                    judgements.append(Judgement(request.u, seed, observed))
                    truth = system.evaluate(request.u)
                    rows.append({"system": system.name, "u": list(request.u), "seed": seed, "prompt": request.prompt,
                                 "x_star": truth, "observed": observed})  # fmt: skip
            if ctx.is_main:
                with open(log_path, "a") as handle:
                    handle.write("".join(json.dumps(row) + "\n" for row in rows))
        per_system[system.name] = system_metrics(system, judgements)
        ctx.log({f"system/{k}": v for k, v in per_system[system.name].items() if math.isfinite(v)}, step=index)
        if ctx.should_stop() and index + 1 < len(systems):
            raise Preempted(f"stopped after system {index + 1} of {len(systems)}; resume continues from {JUDGEMENTS}")
    if ctx.is_main:
        write_tables(ctx.run_dir, systems, per_system)
    final = {k: v for k, v in macro(per_system).items() if math.isfinite(v)}  # an empty group has no score
    ctx.log(final, step=len(systems))
    return final


def write_tables(run_dir: Path, systems: Sequence[CausalSystem], per_system: dict[str, dict[str, float]]) -> None:
    """per_system.csv (one row per scenario, §3.4) and systems.json (the causal systems judged)."""
    keys = list(next(iter(per_system.values())))
    with open(run_dir / "per_system.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["system", *keys])
        for name, row in per_system.items():
            writer.writerow([name, *(repr(row[k]) for k in keys)])
    (run_dir / "systems.json").write_text(json.dumps([s.to_json() for s in systems], indent=1))


STAND_INS = {"generator": "noisy", "detector": "threshold", "video": {"frames": 8, "height": 32, "width": 32,
             "channels": 1}}  # fmt: skip  # vact.md §6: 8 frames of 32 x 32 grayscale


class VACT:
    name = "vact"
    Config = Config
    presets = {
        "test": {**STAND_INS, "systems": 4, "seeds_per_prompt": 5},  # seconds: plumbing only
        "smoke": {**STAND_INS, "systems": 6, "seeds_per_prompt": 200},  # §6: K = 200, 3 templates + 3 random DAGs
        "paper": {},  # the Config defaults: 60 systems, K = 3, videos from video_dir judged by a plugged-in VLLM
    }
    datasets = ()  # systems are generated in-run from the seed (README: why no prepared dataset)

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return evaluate_systems(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        return None  # nothing trains


component = VACT()
