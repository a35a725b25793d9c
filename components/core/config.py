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


def load_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
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
    return f"{where}{dotted or '(config)'}{shown}: {first['msg']}"


def validate(model: type[BaseModel], tree: Mapping[str, Any], scope: str = "") -> BaseModel:
    try:
        return model.model_validate(dict(tree))
    except ValidationError as err:
        raise ConfigError(_describe(err, model, scope)) from None


def resolve_config(
    component: Component,
    preset: str,
    section: Mapping[str, Any] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> BaseModel:
    """The run's Config: defaults, then the preset, then params.yaml's section, then overrides."""
    if preset not in PRESETS or preset not in component.presets:
        known = [p for p in PRESETS if p in component.presets]
        raise ConfigError(
            f"unknown preset '{preset}' for {component.name}{did_you_mean(preset, known)}; "
            f"choose from {', '.join(known)}"
        )
    tree = deep_merge(component.presets[preset], section or {})
    tree = deep_merge(tree, overrides_to_tree(overrides))
    return validate(component.Config, tree, scope=component.name)


def config_hash(slug: str, cfg: BaseModel) -> str:
    canonical = json.dumps({"component": slug, "config": cfg.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
