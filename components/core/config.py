"""Config resolution: Config defaults -> preset -> params.yaml section -> `--set a.b=v` overrides.

Everything is validated by the component's pydantic Config before anything is launched, and every
problem becomes a one-line ConfigError that names the key (with the closest valid key suggested).
"""

from __future__ import annotations

import copy
import hashlib
import json
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from components.core.contract import PRESETS, Component
from components.core.errors import ConfigError, did_you_mean


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping that names the same key twice (plain YAML keeps the last one silently)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects a key given twice in one mapping, anywhere in the document."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if first is not None:
                    raise DuplicateKeyError(
                        problem=f"duplicate key '{key}' (first on line {first.line + 1})",
                        problem_mark=key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, source: str) -> Any:
    """YAML without duplicate keys; a syntax error or a repeated key is a one-line ConfigError naming source:line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{source}{where} is not valid YAML: {problem}") from None


def load_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} cannot be read: {err}") from None
    loaded = load_yaml_text(text, str(path))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(loaded).__name__}")
    return loaded


def parse_override(text: str) -> tuple[str, Any]:
    """'schedule.phi=0.7' -> ('schedule.phi', 0.7); values are YAML (numbers, lists, true/false, null)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. schedule.phi=0.7")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def with_nested_defaults(model: type[BaseModel], tree: Mapping[str, Any]) -> dict[str, Any]:
    """A partial nested section keeps the rest of the Config's default for it: `--set schedule.warmup=1` on a
    Config whose default schedule is cosine with min_ratio 0.1 changes the warm-up only (pydantic alone would
    build the nested model from its class defaults and silently drop name and min_ratio)."""
    out = dict(tree)
    for name, field in model.model_fields.items():
        default, value = field.default, out.get(name)
        if isinstance(value, Mapping) and isinstance(default, BaseModel):
            out[name] = with_nested_defaults(type(default), deep_merge(default.model_dump(), value))
    return out


def overrides_to_tree(overrides: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    tree: dict[str, Any] = {}
    for key, value in items:
        set_dotted(tree, key, value)
    return tree


def _nested_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(name)
    if field is None:
        return None
    candidates = [field.annotation, *typing.get_args(field.annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _literal_choices(model: type[BaseModel], loc: list[str]) -> list[Any] | None:
    """The allowed values of the Literal field at loc, or None when loc is not a Literal field."""
    node: Any = model
    for part in loc[:-1]:
        node = _nested_model(node, part) if isinstance(node, type) and issubclass(node, BaseModel) else None
        if node is None:
            return None
    field = node.model_fields.get(loc[-1]) if loc else None
    if field is None:
        return None
    for candidate in [field.annotation, *typing.get_args(field.annotation)]:
        if typing.get_origin(candidate) is typing.Literal:
            return list(typing.get_args(candidate))
    return None


def _describe(err: ValidationError, model: type[BaseModel], scope: str) -> str:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    dotted = ".".join(loc)
    where = f"{scope}: " if scope else ""
    if first["type"] == "extra_forbidden":
        parent = model
        for part in loc[:-1]:
            parent = _nested_model(parent, part) or parent
        prefix = ".".join(loc[:-1])
        choices = [f"{prefix}.{name}" if prefix else name for name in parent.model_fields]
        return f"{where}unknown key '{dotted}'{did_you_mean(dotted, choices)}"
    value = first.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict) else ""
    if first["type"] == "literal_error":
        choices = _literal_choices(model, loc) or []
        listed = ", ".join(str(choice) for choice in choices) or first.get("ctx", {}).get("expected", "?")
        return f"{where}{dotted}{shown} is not one of {listed}{did_you_mean(value, choices)}"
    message = " ".join(str(first["msg"]).removeprefix("Value error, ").split())
    return f"{where}{dotted or '(config)'}{shown}: {message}"


def validate(model: type[BaseModel], tree: Mapping[str, Any], scope: str = "") -> BaseModel:
    if not isinstance(tree, Mapping):
        where = f"{scope}: " if scope else ""
        raise ConfigError(f"{where}the config must be a mapping of keys to values, not {type(tree).__name__}")
    try:
        return model.model_validate(dict(tree))
    except ValidationError as err:
        raise ConfigError(_describe(err, model, scope)) from None


# Config fields whose None means "the optimizer table's default" (a component's `own_defaults` may override).
TABLE_DEFAULTS = ("lr", "weight_decay")


def fill_defaults(component: Component, cfg: BaseModel) -> BaseModel:
    """The config with every `lr` / `weight_decay` that is None replaced by the number the run will use, so the
    config.yaml written, hashed and printed holds the actual values (the values used, so metrics do not change).

    The number is the component's own default where its optional `own_defaults` table ({field: function of the
    config}) names one, else the optimizer table's default for cfg.optimizer. A field stays None where the
    component's own function returns None (lion's theory mode derives lr from d and K), where the optimizer is
    not in the table (lion's sgd_plain), or where a number would not validate (lion's theory mode wants lr unset).
    """
    updates: dict[str, Any] = {}
    own_defaults = getattr(component, "own_defaults", {})
    for field in TABLE_DEFAULTS:
        if field not in type(cfg).model_fields or getattr(cfg, field) is not None:
            continue
        if field in own_defaults:
            value = own_defaults[field](cfg)
            if value is None:  # the component derives it from more than the config
                continue
        else:
            from components.core.optim import OPTIMIZERS

            spec = OPTIMIZERS.get(getattr(cfg, "optimizer", None))
            if spec is None:
                continue
            value = getattr(spec, field)
        candidate = {**cfg.model_dump(), **updates, field: value}
        try:
            type(cfg).model_validate(candidate)
        except ValidationError:
            continue
        updates[field] = value
    if not updates:
        return cfg
    return type(cfg).model_validate({**cfg.model_dump(), **updates})


def check_constraints(component: Component, cfg: BaseModel) -> None:
    """Constraints between fields that a Config cannot see alone: a schedule's warm-up against the budget."""
    schedule, budget = getattr(cfg, "schedule", None), getattr(cfg, "budget", None)
    if isinstance(getattr(schedule, "warmup", None), int) and isinstance(budget, int):
        from components.core.schedules import ScheduleConfig, check_budget

        if isinstance(schedule, ScheduleConfig):
            try:
                check_budget(schedule, budget)
            except ConfigError as err:
                raise ConfigError(f"{component.name}: {err}") from None


def resolve_config(
    component: Component,
    preset: str,
    section: Mapping[str, Any] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> BaseModel:
    """The run's Config: defaults, then the preset, then params.yaml's section, then overrides; validated, with
    the cross-field constraints checked and the table defaults filled in (fill_defaults)."""
    if preset not in PRESETS or preset not in component.presets:
        known = [p for p in PRESETS if p in component.presets]
        raise ConfigError(
            f"unknown preset '{preset}' for {component.name}{did_you_mean(preset, known)}; "
            f"choose from {', '.join(known)}"
        )
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(
            f"{component.name}: its params.yaml section must be a mapping of keys to values, "
            f"not {type(section).__name__}"
        )
    tree = deep_merge(component.presets[preset], section or {})
    tree = deep_merge(tree, overrides_to_tree(overrides))
    cfg = validate(component.Config, with_nested_defaults(component.Config, tree), scope=component.name)
    check_constraints(component, cfg)
    return fill_defaults(component, cfg)


def config_hash(slug: str, cfg: BaseModel) -> str:
    canonical = json.dumps({"component": slug, "config": cfg.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
