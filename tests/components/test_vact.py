"""vact's checks (vact.md §6): the procedural world's detector is exact on Oracle renders, the Oracle scores 1 on
every metric, and the Shortcut, SelfConsistentIgnorer and Noisy(0.1) stand-ins score what their analytic values
say, over every system and all 2^|U| interventions at K = 200; the validator rejects each bad system; NA and the
option swap are handled as §3.3-3.4 say; the plug-in interfaces run on a video folder and a judge module the
test writes; the paper preset runs end to end at CogVideoX's 49 x 480 x 720."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from components.core.contract import RunContext
from components.core.errors import ConfigError, DataError, Preempted
from components.vact import component as vact
from components.vact import models
from components.vact.config import Config
from components.vact.metrics import (
    Judgement,
    agreement_with_marginals,
    noisy_rule_consistency,
    system_metrics,
)
from components.vact.render import detect, render
from components.vact.systems import TEMPLATES, CausalSystem, InvalidSystem, Variable, interventions, validate

WORLD = {"detector": "threshold", "video": {"frames": 8, "height": 32, "width": 32, "channels": 1}}  # §6
K = 200  # §6: the Monte-Carlo tolerances are sized for K = 200


def run(tmp_path: Path, **overrides) -> tuple[dict, dict]:
    """(macro metrics, per-system metrics) of an in-process run on the §6 world: 3 templates + 3 random DAGs."""
    cfg = Config(**{**WORLD, "systems": 6, "seeds_per_prompt": K, **overrides})
    run_dir = tmp_path / cfg.generator
    run_dir.mkdir(parents=True, exist_ok=True)
    final = vact.evaluate_systems(cfg, RunContext(run_dir=run_dir, data_dir=tmp_path))
    systems = vact.the_systems(cfg, 0)
    done = vact.read_done(run_dir / vact.JUDGEMENTS)
    return final, {s.name: system_metrics(s, done[s.name]) for s in systems}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    root = tmp_path_factory.mktemp("stand_ins")
    return {g: run(root, generator=g) for g in ("oracle", "shortcut", "ignorer", "noisy")}


def all_systems() -> list[CausalSystem]:
    return vact.the_systems(Config(**WORLD, systems=6), 0)


# --- check 1: detector fidelity


@pytest.mark.parametrize("latent", [False, True])
def test_detector_returns_the_oracle_world_exactly(latent):
    cfg = Config(**{**WORLD, "video": {**WORLD["video"], "latent": latent}}, generator="oracle")
    generator, detector = vact.make_generator(cfg), vact.make_detector(cfg)
    items = 0
    for index, system in enumerate(all_systems()):
        for request in vact.requests_for(system, index, cfg, 0):
            for seed in range(20):
                observed = vact.judge(system, generator.generate(request, seed), detector, cfg, request.system_seed)
                assert observed == system.evaluate(request.u), (system.name, request.u, seed)
                items += len(observed)
    assert items > 1000


def test_renderer_shows_each_value_and_detector_fails_on_the_wrong_cell():
    system = TEMPLATES["ramp"]
    kinds = [v.kind for v in system.variables]
    for u in interventions(system):
        world = system.evaluate(u)
        bits = [world[v] for v in system.names]
        video = render(bits, kinds, frames=8, height=32, width=32)
        assert video.shape == (8, 32, 32, 1) and video.dtype == np.uint8
        assert [detect(video, i, 5, k) for i, k in enumerate(kinds)] == bits
    # negative control: a motion variable read as a state (or the other way) is not always right
    moving = render([1, 0, 0, 1, 0], kinds, frames=8, height=32, width=32)
    still = render([1, 0, 0, 0, 0], kinds, frames=8, height=32, width=32)
    assert detect(moving, 3, 5, "motion") == 1 and detect(still, 3, 5, "motion") == 0
    assert detect(moving, 3, 5, "state") == detect(still, 3, 5, "state")  # brightness alone cannot tell


# --- check 2: Oracle


def test_oracle_scores_one_on_every_metric(stand_ins):
    final, per_system = stand_ins["oracle"]
    for name, metrics in per_system.items():
        for key in ("tc", "gc_truth", "gc_observe", "rc_truth", "rc_observe", "rc_all", "icc"):
            assert metrics[key] == 1.0, (name, key)
        assert metrics["na_rate"] == 0.0 and metrics["n_icc"] > 0
    assert final["gc_truth"] == final["rc_all"] == final["icc"] == 1.0


# --- check 3: Shortcut


def test_shortcut_follows_text_but_scores_its_marginals_on_effects(stand_ins):
    _, per_system = stand_ins["shortcut"]
    for system in all_systems():
        metrics, predicted = per_system[system.name], agreement_with_marginals(system)
        assert metrics["tc"] == 1.0
        assert abs(metrics["gc_truth"] - predicted) <= 0.035, (system.name, metrics["gc_truth"], predicted)
        assert predicted < 0.9  # a metric that ignored the effects would score 1 here
    assert abs(agreement_with_marginals(TEMPLATES["ramp"]) - 0.703125) < 1e-12  # §6's 0.703 / 0.703 / 0.625
    assert abs(agreement_with_marginals(TEMPLATES["ice"]) - 0.625) < 1e-12


# --- check 4: SelfConsistentIgnorer


def test_ignorer_needs_both_truth_and_observe_variants(stand_ins):
    _, per_system = stand_ins["ignorer"]
    for system in all_systems():
        metrics = per_system[system.name]
        assert abs(metrics["tc"] - 0.5) <= 0.03, (system.name, metrics["tc"])
        assert metrics["rc_observe"] == 1.0 and metrics["gc_observe"] == 1.0
        predicted = agreement_with_marginals(system)  # P[x*_v(u) = x*_v(u')] for independent uniform u, u'
        assert abs(metrics["gc_truth"] - predicted) <= 0.035, (system.name, metrics["gc_truth"], predicted)
        assert metrics["gc_truth"] < 0.95


# --- check 5: Noisy(0.1)


def test_noisy_scores_match_exact_enumeration(stand_ins):
    _, per_system = stand_ins["noisy"]
    for system in all_systems():
        metrics = per_system[system.name]
        assert abs(metrics["tc"] - 0.9) <= 0.02, (system.name, metrics["tc"])
        predicted = noisy_rule_consistency(system, 0.1)
        assert abs(metrics["rc_observe"] - predicted) <= 0.02, (system.name, metrics["rc_observe"], predicted)
        assert predicted < 0.9


def test_videos_differ_across_seeds():
    cfg = Config(**WORLD, generator="noisy", epsilon=0.5)
    generator = vact.make_generator(cfg)
    request = vact.requests_for(TEMPLATES["lamp"], 0, cfg, 0)[0]
    videos = {generator.generate(request, seed).tobytes() for seed in range(8)}
    assert len(videos) > 1


# --- check 6: the validator


def test_templates_are_valid_and_each_bad_system_is_rejected():
    for system in TEMPLATES.values():
        validate(system)
    ice = TEMPLATES["ice"]
    cyclic = dataclasses.replace(
        ice, parents={**ice.parents, "melted": ("sunny", "in_freezer", "puddle")},
        rules={**ice.rules, "melted": ((("sunny", 1), ("in_freezer", 0), ("puddle", 1)),)},
    )  # fmt: skip
    with pytest.raises(InvalidSystem, match="cycle"):
        validate(cyclic)
    non_parent = dataclasses.replace(ice, rules={**ice.rules, "puddle": ((("melted", 1), ("sunny", 1)),)})
    with pytest.raises(InvalidSystem, match="non-parents"):
        validate(non_parent)
    constant = dataclasses.replace(
        ice, rules={**ice.rules, "melted": ((("sunny", 1), ("sunny", 0), ("in_freezer", 0)),)}
    )
    with pytest.raises(InvalidSystem, match="constant"):
        validate(constant)
    leaky_roots = list(ice.variables)
    leaky_roots[0] = dataclasses.replace(
        ice.variables[0], true="the plate stands in bright sunshine and water pools on the plate"
    )
    with pytest.raises(InvalidSystem, match="leaks effect puddle"):
        validate(dataclasses.replace(ice, variables=tuple(leaky_roots)))


def test_interventions_cover_every_pair_beyond_four_roots():
    assert len(interventions(TEMPLATES["ramp"])) == 8
    names = [f"r{i}" for i in range(6)]
    variables = tuple(Variable(n, f"{n} is red", f"{n} is blue") for n in names)
    system = CausalSystem("wide", "", variables, {})
    chosen = interventions(system, exhaustive_up_to=4, seed=0)
    assert len(chosen) < 2**6
    for i in range(6):
        for j in range(i + 1, 6):
            assert {(u[i], u[j]) for u in chosen} == {(0, 0), (0, 1), (1, 0), (1, 1)}


# --- metrics: truth vs observe, NA, ICC on hand-made judgements


def test_metric_variants_on_a_hand_made_video():
    ice = TEMPLATES["ice"]  # melted = sunny and not in_freezer; puddle = melted
    wrong_root = Judgement((1, 0), 0, {"sunny": 0, "in_freezer": 0, "melted": 0, "puddle": 0})
    metrics = system_metrics(ice, [wrong_root])
    assert metrics["tc"] == 0.5  # sunny shown wrong, in_freezer right
    assert metrics["gc_truth"] == 0.0  # x*(1, 0) = (melted 1, puddle 1)
    assert metrics["gc_observe"] == 1.0  # x*(0, 0) of the roots it shows = (0, 0)
    assert metrics["rc_observe"] == 1.0 and metrics["n_rc_observe"] == 2
    assert metrics["n_rc_truth"] == 0  # the roots were not rendered as prompted
    broken_rule = Judgement((1, 0), 0, {"sunny": 1, "in_freezer": 0, "melted": 1, "puddle": 0})
    metrics = system_metrics(ice, [wrong_root, broken_rule])
    assert metrics["rc_truth"] == 0.5 and metrics["n_rc_truth"] == 2  # only the video with its roots as prompted
    assert metrics["rc_observe"] == 0.75 and metrics["rc_all"] == 0.5


def test_na_is_dropped_and_reported(tmp_path):
    final, per_system = run(tmp_path, generator="oracle", occlusion=0.3, seeds_per_prompt=20)
    for metrics in per_system.values():
        assert metrics["tc"] == metrics["gc_truth"] == metrics["rc_observe"] == 1.0
        assert 0.2 < metrics["na_rate"] < 0.4
        assert metrics["n_tc"] < metrics["n_videos"] * 3
    assert 0.25 < final["na_rate"] < 0.35


def test_a_judge_that_always_answers_a_is_all_na_with_swapped_options():
    ice = TEMPLATES["ice"]

    class AlwaysA:
        def ask(self, video, question):
            return "A"

    video = np.zeros((8, 32, 32, 1), np.uint8)
    assert set(vact.judge(ice, video, AlwaysA(), Config(**WORLD), 0).values()) == {None}
    assert set(vact.judge(ice, video, AlwaysA(), Config(**WORLD, swap_options=False), 0).values()) == {1}


def test_icc_checks_the_contrast_not_only_the_state():
    ice = TEMPLATES["ice"]  # do(sunny) flips melted and puddle when not in the freezer
    shown = {(1, 0): {"melted": 1, "puddle": 1}, (0, 0): {"melted": 1, "puddle": 1}}  # effects stuck at 1
    judgements = [Judgement(u, 0, {"sunny": u[0], "in_freezer": u[1], **e}) for u, e in shown.items()]
    metrics = system_metrics(ice, judgements)
    assert metrics["icc"] == 0.0 and metrics["n_icc"] == 2
    assert metrics["gc_truth"] == 0.5


# --- long loop: the judgements log is the checkpoint


def test_preempted_run_resumes_without_regenerating_finished_systems(tmp_path, monkeypatch):
    cfg = Config(**WORLD, generator="noisy", systems=4, seeds_per_prompt=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = vact.evaluate_systems(cfg, RunContext(run_dir=tmp_path / "a", data_dir=tmp_path))
    with pytest.raises(Preempted):
        vact.evaluate_systems(cfg, RunContext(run_dir=tmp_path / "b", data_dir=tmp_path, should_stop=lambda: True))
    calls = []
    original = models.Noisy.generate
    monkeypatch.setattr(
        models.Noisy, "generate", lambda self, r, s: calls.append(r.system.name) or original(self, r, s)
    )
    resumed = vact.evaluate_systems(cfg, RunContext(run_dir=tmp_path / "b", data_dir=tmp_path))
    assert resumed == whole
    assert "ice" not in calls and len(set(calls)) == 3  # the first system came from the log


def test_systems_file_round_trips_and_gives_the_prompt_table(tmp_path):
    systems = all_systems()
    path = tmp_path / "systems.json"
    path.write_text(json.dumps([s.to_json() for s in systems]))
    cfg = Config(**WORLD, systems=6, systems_file=str(path))
    loaded = vact.the_systems(cfg, seed=123)  # the file, not the seed, decides
    assert [s.to_json() for s in loaded] == [s.to_json() for s in systems]
    table = vact.prompt_table(cfg)
    assert len(table) == sum(2 ** len(s.roots) for s in systems)
    ice_rows = [row for row in table if row["system"] == "ice"]
    assert {tuple(r["u"]) for r in ice_rows} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(row["x_star"]["puddle"] == int(row["u"] == [1, 0]) for row in ice_rows)
    path.write_text("[{")
    with pytest.raises(DataError, match="not JSON"):
        vact.the_systems(cfg, 0)


# --- bad input fails before compute


def test_bad_adapters_fail_with_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="video_dir"):
        vact.make_generator(Config(generator="folder"))
    with pytest.raises(ConfigError, match="detector_factory"):
        vact.make_detector(Config(detector="plugin"))
    with pytest.raises(DataError, match="index.jsonl"):
        vact.make_generator(Config(generator="folder", video_dir=str(tmp_path)))
    with pytest.raises(DataError, match="detector_factory"):
        vact.make_detector(Config(detector="plugin", detector_factory=f"{tmp_path / 'absent.py'}:Judge"))
    with pytest.raises(ValueError):
        Config(roots=(3, 2))


# --- plug-in interfaces: a video folder and a judge module the test writes

JUDGE = '''
import json
from pathlib import Path

from components.vact.render import detect


class Judge:
    """A stand-in VLLM behind the plug-in interface: reads the cell of question.index; logs every video's shape."""

    def ask(self, video, question):
        with open(Path(__file__).parent / "seen.jsonl", "a") as handle:
            handle.write(json.dumps(list(video.shape)) + "\\n")
        value = detect(video, question.index, question.count, question.kind)
        return "C" if value is None else ("A" if bool(value) != question.swapped else "B")
'''

VGM = '''
import numpy as np
from components.vact.render import render
from components.vact.systems import TEMPLATES, interventions


class PromptVGM:
    """A text-to-video model that sees only the prompt: it recognises the ice template's prompts."""

    def __init__(self):
        ice = TEMPLATES["ice"]
        self.worlds = {ice.prompt(u): ice.evaluate(u) for u in interventions(ice)}
        self.kinds = [v.kind for v in ice.variables]
        self.names = ice.names

    def generate(self, prompt, seed):
        world = self.worlds[prompt]
        return render([world[v] for v in self.names], self.kinds, frames=8, height=48, width=64, channels=3)
'''


def write_plugins(folder: Path) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "judge.py").write_text(JUDGE)
    (folder / "vgm.py").write_text(VGM)
    return f"{folder / 'judge.py'}:Judge", f"{folder / 'vgm.py'}:PromptVGM"


def test_plugged_in_generator_and_judge_and_a_video_folder(tmp_path):
    judge_spec, vgm_spec = write_plugins(tmp_path / "plugins")
    common = dict(systems=1, seeds_per_prompt=2, detector="plugin", detector_factory=judge_spec)
    video = {"frames": 8, "height": 48, "width": 64, "channels": 3}
    (tmp_path / "a").mkdir()
    live = vact.evaluate_systems(
        Config(**common, generator="plugin", generator_factory=vgm_spec, video=video),
        RunContext(run_dir=tmp_path / "a", data_dir=tmp_path),
    )
    assert live["gc_truth"] == live["rc_all"] == 1.0
    # the same model's videos written to a folder (the generate stage), then judged from there
    cfg = Config(**common, generator="folder", video_dir=str(tmp_path / "videos"), video=video)
    requests = vact.requests_for(TEMPLATES["ice"], 0, cfg, 0)
    vgm = models.PromptOnly(models.load_factory(vgm_spec, "generator_factory"))
    models.write_video_folder(tmp_path / "videos", vgm, requests, 2, vact.video_spec(cfg))
    (tmp_path / "b").mkdir()
    judged = vact.evaluate_systems(cfg, RunContext(run_dir=tmp_path / "b", data_dir=tmp_path))
    assert judged == live
    assert len(list((tmp_path / "videos").glob("*.npy"))) == 4 * 2
    seen = {tuple(json.loads(line)) for line in (tmp_path / "plugins" / "seen.jsonl").read_text().splitlines()}
    assert seen == {(8, 48, 64, 3)}


def test_paper_path_judges_a_cogvideox_resolution_folder(params, tmp_path):
    from tests.paper_path import run_paper_path

    judge_spec, _ = write_plugins(tmp_path / "plugins")
    spec = models.VideoSpec(frames=49, height=480, width=720, channels=3)  # the paper preset's video
    oracle = models.Oracle(spec)
    ice = TEMPLATES["ice"]
    requests = [models.Request(ice, u, ice.prompt(u), 0) for u in interventions(ice)]
    models.write_video_folder(tmp_path / "videos", oracle, requests, 1, spec)
    params["vact"] = {**params.get("vact", {}), "video_dir": str(tmp_path / "videos"), "detector_factory": judge_spec}
    result = run_paper_path("vact", params, {"systems": 1, "seeds_per_prompt": 1}, tmp_path, tmp_path / "runs")
    metrics = result.metrics
    for key in ("tc", "gc_truth", "gc_observe", "rc_truth", "rc_observe", "rc_all", "icc"):
        assert metrics[key] == 1.0, key
    assert metrics["n_videos"] == 4 and metrics["na_rate"] == 0.0
    seen = {tuple(json.loads(line)) for line in (tmp_path / "plugins" / "seen.jsonl").read_text().splitlines()}
    assert seen == {(49, 480, 720, 3)}  # the judge saw the paper's clips, read by the video stage's reader
    assert (result.run_dir / "per_system.csv").is_file() and (result.run_dir / vact.JUDGEMENTS).is_file()
    assert math.isfinite(metrics["icc"])
