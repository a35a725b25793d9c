"""The paper path of a component: its `paper` preset, shrunk only in counts, run end to end on data the test wrote
in the paper's own format and resolution (issue 15). `run_paper_path` runs it and checks the shrinking: every
override is a count (an integer no larger than the paper's value, under a key that names no resolution), and
the run's config.yaml differs from the paper preset in those keys only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cluster.runner import RunResult, execute, plan_run
from components.core.config import resolve_config
from components.registry import get_component

# keys that fix what the model sees: never shrunk on the paper path (batch, steps, width, depth, samples may be)
RESOLUTION_WORDS = ("image", "resolution", "side", "seq_len", "context", "frames", "channels", "patch", "horizon")


def flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_counts(slug: str, params: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
    """The paper preset's resolved config, flat; raises AssertionError on an override that is not a count."""
    paper = flat(resolve_config(get_component(slug), "paper", params.get(slug)).model_dump(mode="json"))
    for key, value in counts.items():
        assert key in paper, f"{slug}: {key} is not a key of the paper preset"
        assert not any(word in key for word in RESOLUTION_WORDS), f"{slug}: {key} fixes the paper's resolution"
        if isinstance(value, list | tuple):  # a list of counts (widths): fewer entries, none above the paper's
            assert value and len(value) <= len(paper[key]), f"{slug}: {key}={value} does not shrink"
            assert all(is_count(v) and 0 < v <= max(paper[key]) for v in value), f"{slug}: {key}={value}"
            continue
        assert is_count(value), f"{slug}: {key}={value!r} is not a count"
        assert is_count(paper[key]) and 0 < value <= paper[key], f"{slug}: {key}={value} does not shrink"
    return paper


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def run_paper_path(
    slug: str, params: Mapping[str, Any], counts: Mapping[str, int], data_dir: Path, run_root: Path, seed: int = 0
) -> RunResult:
    """Run the paper preset with only `counts` changed; assert config.yaml differs from the paper preset in
    exactly those keys."""
    paper = check_counts(slug, params, counts)
    request = plan_run(slug, params, preset="paper", overrides=dict(counts), seed=seed, data_dir=data_dir)
    result = execute(request, run_root=run_root, data_dir=data_dir, show_progress=False)
    resolved = flat(yaml.safe_load((result.run_dir / "config.yaml").read_text()))
    differing = {key for key in paper.keys() | resolved.keys() if paper.get(key) != resolved.get(key)}
    assert differing <= set(counts), f"{slug}: config.yaml differs from the paper preset in {sorted(differing)}"
    return result


def record_inputs(monkeypatch, module: Any, builder: str) -> list[tuple[int, ...]]:
    """Wrap module.<builder> (the function a component builds its network with) so every forward call's first
    input shape is recorded: how a paper-path test sees that the model gets the paper's input."""
    original, shapes = getattr(module, builder), []

    def recording(*args, **kwargs):
        model = original(*args, **kwargs)
        model.register_forward_pre_hook(lambda _, inputs: shapes.append(tuple(inputs[0].shape)))
        return model

    monkeypatch.setattr(module, builder, recording)
    return shapes


def record_recipe(monkeypatch, module: Any) -> dict[str, list]:
    """Spy on the CIFAR recipe a component imports (module.channel_stats, module.pad_crop_flip): which images the
    normalisation statistics were measured on ("stats_of") and the first draw of each augmentation call's
    generator ("augment_draws", one per call: equal draws mean the same crops)."""
    seen: dict[str, list] = {"stats_of": [], "augment_draws": []}
    channel_stats, pad_crop_flip = module.channel_stats, module.pad_crop_flip

    def spy_stats(images, *args, **kwargs):
        seen["stats_of"].append(images.copy())
        return channel_stats(images, *args, **kwargs)

    def spy_augment(images, pad, rng):
        state = rng.bit_generator.state
        seen["augment_draws"].append(rng.random())
        rng.bit_generator.state = state  # the component's crops are the ones it would have drawn unobserved
        return pad_crop_flip(images, pad, rng)

    monkeypatch.setattr(module, "channel_stats", spy_stats)
    monkeypatch.setattr(module, "pad_crop_flip", spy_augment)
    return seen
