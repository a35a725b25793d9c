"""Config resolution order and the one-line errors for bad input, all raised before any compute."""

from __future__ import annotations

import pytest

from components.core.config import config_hash, load_yaml, parse_override, resolve_config
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


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("preset: smoke\nuba: {}\npreset: test\n", 3, "preset"),  # top level
        ("uba:\n  optimizer: sgd\n  budget: 3\n  optimizer: lion\n", 4, "optimizer"),  # in a section
        ("uba:\n  schedule: {name: uba, phi: 1.0, phi: 2.0}\n", 2, "phi"),  # in a flow mapping
        ("sweeps:\n  s:\n    grid: [{a: 1, a: 2}]\n", 3, "a"),  # in a mapping inside a list
    ],
)
def test_a_key_given_twice_is_an_error_naming_file_line_and_key(tmp_path, text, line, key):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    message = str(err.value)
    assert message.startswith(f"{path} line {line} ") and f"duplicate key '{key}'" in message and "\n" not in message


def test_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base: &base {x: 1, y: 2}\nrun:\n  <<: *base\n  x: 3\n")
    assert load_yaml(path)["run"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    "override, nearest",
    [("optimizer=adamx", "adamw"), ("schedule.name=cosin", "cosine"), ("task=digits_mpl", "digits_mlp")],
)
def test_a_misspelled_choice_lists_the_choices_and_suggests_the_nearest(override, nearest):
    with pytest.raises(ConfigError) as err:
        resolve_config(UBA, "smoke", {}, [override])
    key, value = override.split("=")
    assert str(err.value).startswith(f"uba: {key} = '{value}' is not one of ")
    assert str(err.value).endswith(f"(did you mean '{nearest}'?)") and "\n" not in str(err.value)


def test_a_section_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match="uba: its params.yaml section must be a mapping .* not list"):
        resolve_config(UBA, "smoke", ["optimizer", "sgd"], [])


@pytest.mark.parametrize("warmup, budget", [(300, 300), (301, 300)])
def test_warmup_at_or_above_the_budget_fails_at_resolution(warmup, budget):
    with pytest.raises(ConfigError) as err:
        resolve_config(UBA, "smoke", {}, [f"schedule.warmup={warmup}", f"budget={budget}"])
    assert str(err.value) == (
        f"uba: schedule.warmup ({warmup}) must be smaller than budget ({budget} steps): the decay phase would be empty"
    )
    assert resolve_config(UBA, "smoke", {}, [f"schedule.warmup={budget - 1}", f"budget={budget}"])


def test_table_defaults_are_filled_in_with_the_numbers_the_run_uses():
    from components.core.optim import OPTIMIZERS

    for name, spec in OPTIMIZERS.items():  # uba: None is the table's value for the chosen optimizer
        cfg = resolve_config(UBA, "smoke", {}, [f"optimizer={name}"])
        assert (cfg.lr, cfg.weight_decay) == (spec.lr, spec.weight_decay)
    assert resolve_config(UBA, "smoke", {}, ["task=quadratic", "quadratic.mu=4"]).lr == 0.25  # uba's own: 1/mu
    assert resolve_config(UBA, "smoke", {}, ["lr=0.05", "weight_decay=0"]).lr == 0.05  # a given value stays
    dnt = get_component("dnt")
    assert resolve_config(dnt, "paper", {}, []).lr == 1.0  # dnt's own per-optimizer value (mSGDW at 1.0)
    lion = get_component("lion")
    cfg = resolve_config(lion, "test", {}, [])
    assert cfg.lr == OPTIMIZERS["lion"].lr and cfg.weight_decay == OPTIMIZERS["lion"].weight_decay
    assert resolve_config(lion, "test", {}, ["task=box_quadratic"]).lr == 0.02  # lion's own quadratic step
    assert resolve_config(lion, "test", {}, ["task=box_quadratic"]).weight_decay == 0.5  # lion's own quadratic value
    assert resolve_config(lion, "test", {}, ["theory.c1=1", "task=box_quadratic"]).lr is None  # theory: lr unset


def test_the_filled_config_round_trips_to_the_same_hash():
    """config.yaml holds numbers, and reading it back (a resumed run) is the same config."""
    import yaml

    from components.core.config import config_to_yaml, validate

    for slug in ("uba", "dnt", "lion", "adamw_l1", "liesd"):
        component = get_component(slug)
        cfg = resolve_config(component, "smoke", {}, [])
        written = yaml.safe_load(config_to_yaml(cfg))
        assert "lr" not in written or written["lr"] is not None or slug == "lion"
        assert config_hash(slug, validate(component.Config, written)) == config_hash(slug, cfg)


def test_a_nested_override_keeps_the_rest_of_the_configs_default():
    from components.uba.component import component as uba

    cfg = resolve_config(uba, "paper", None, ["schedule.warmup=5"])
    assert (cfg.schedule.name, cfg.schedule.phi, cfg.schedule.warmup) == ("uba", 1.0, 5)
    # control: pydantic alone builds the nested model from its class defaults and loses the Config's
    plain = uba.Config.model_validate({"schedule": {"warmup": 5}})
    assert (plain.schedule.name, plain.schedule.warmup) != ("uba", 5)
