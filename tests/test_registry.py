"""The registry, params.yaml and components/ agree; every component is deterministic, validates every
preset and can take a paper-scale step (docs/architecture.md, "Tests")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from cluster.runner import execute, plan_run
from components.core.config import resolve_config
from components.core.contract import PRESETS
from components.registry import REGISTRY, get_component

ROOT = Path(__file__).resolve().parent.parent
SLUGS = sorted(REGISTRY)


def test_registry_matches_folders_and_params(params):
    folders = {p.parent.name for p in (ROOT / "components").glob("*/component.py")}
    assert folders == set(REGISTRY)
    assert set(params["components"]) == set(REGISTRY)


@pytest.mark.parametrize("slug", SLUGS)
def test_component_has_tests_paper_yaml_and_readme(slug):
    assert (ROOT / "tests" / "components" / f"test_{slug}.py").is_file()
    assert (ROOT / "components" / slug / "README.md").is_file()
    paper = yaml.safe_load((ROOT / "components" / slug / "paper.yaml").read_text())  # the report reads it
    assert {"paper", "results"} <= set(paper) and all({"metric", "value"} <= set(r) for r in paper["results"])


@pytest.mark.parametrize("slug", SLUGS)
def test_component_follows_the_contract(slug):
    component = get_component(slug)
    assert component.name == slug
    assert set(component.presets) == set(PRESETS)
    assert component.Config.model_config.get("extra") == "forbid"
    assert component.Config.model_config.get("frozen") is True
    assert isinstance(tuple(component.datasets), tuple)


@pytest.mark.parametrize("slug", SLUGS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_validates(slug, preset, params):
    component = get_component(slug)
    cfg = resolve_config(component, preset, params.get(slug))
    assert isinstance(cfg, component.Config)


@pytest.mark.parametrize("slug", SLUGS)
def test_paper_scale_model_takes_one_step(slug, params):
    component = get_component(slug)
    cfg = resolve_config(component, "paper", params.get(slug))
    loss = component.random_step(cfg)
    assert loss is None or math.isfinite(loss)


@pytest.mark.parametrize("slug", SLUGS)
def test_test_preset_is_deterministic(slug, params, data_root, tmp_path):
    request = plan_run(slug, params, preset="test", seed=3, data_dir=data_root)
    first = execute(request, run_root=tmp_path / "a", data_dir=data_root, show_progress=False)
    second = execute(request, run_root=tmp_path / "b", data_dir=data_root, show_progress=False)
    assert first.metrics == second.metrics
    assert first.metrics and all(math.isfinite(v) for v in first.metrics.values())


def test_readme_table_lists_every_component():
    # the table of components in README.md is written by hand: a new paper must get its row
    text = (ROOT / "README.md").read_text()
    missing = [slug for slug in REGISTRY if f"| {slug} |" not in text]
    assert not missing, f"README.md's table of components lacks {missing}"
