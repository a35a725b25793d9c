"""Config resolution order and the one-line errors for bad input, all raised before any compute."""

from __future__ import annotations

import pytest

from components.core.config import config_hash, parse_override, resolve_config
from components.core.errors import ConfigError
from components.registry import get_component

UBA = get_component("uba")


def test_order_defaults_preset_section_overrides():
    cfg = resolve_config(UBA, "paper", {}, [])
    assert cfg.task == "resnet18" and cfg.budget == 39100  # defaults = the paper's values
    cfg = resolve_config(UBA, "smoke", {"budget": 111}, [])
    assert cfg.task == "digits_mlp" and cfg.budget == 111  # the section beats the preset
    cfg = resolve_config(
        UBA, "smoke", {"budget": 111, "schedule": {"name": "uba", "phi": 1.0}}, ["budget=7", "schedule.phi=0.7"]
    )
    assert cfg.budget == 7 and cfg.schedule.phi == 0.7 and cfg.schedule.name == "uba"


def test_override_values_are_yaml():
    assert parse_override("schedule.phi=0.5") == ("schedule.phi", 0.5)
    assert parse_override("optimizer=lion") == ("optimizer", "lion")
    assert parse_override("lr=null") == ("lr", None)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("schedule.phi")


def test_hash_changes_with_config():
    a = resolve_config(UBA, "smoke", {}, ["schedule.phi=0.5"])
    b = resolve_config(UBA, "smoke", {}, ["schedule.phi=2"])
    assert config_hash("uba", a) != config_hash("uba", b)
    assert config_hash("uba", a) == config_hash("uba", resolve_config(UBA, "smoke", {}, ["schedule.phi=0.5"]))


@pytest.mark.parametrize(
    "override, message",
    [
        ("schedule.phy=1", "unknown key 'schedule.phy' (did you mean 'schedule.phi'?)"),
        ("budgett=10", "unknown key 'budgett' (did you mean 'budget'?)"),
        ("budget=many", "budget = 'many'"),
        ("schedule.phi=0", "schedule.phi = 0: Input should be greater than 0"),
        ("schedule.phi=-1", "schedule.phi = -1"),
        ("optimizer=lino", "optimizer = 'lino'"),
        ("schedule.name=cosin", "schedule.name = 'cosin'"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        resolve_config(UBA, "smoke", {}, [override])
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("uba: ")


def test_unknown_preset_and_component():
    with pytest.raises(ConfigError, match="unknown preset 'smok' for uba .did you mean 'smoke'"):
        resolve_config(UBA, "smok", {}, [])
    with pytest.raises(ConfigError, match="unknown component 'ubb' .did you mean 'uba'"):
        get_component("ubb")
