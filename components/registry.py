"""The explicit table of components: slug -> "module:attribute", imported only when asked for (timm style).

No registration by import side effects. Adding a paper (docs/adding-a-paper.md) means one line here, a
folder under components/, an entry and a section in params.yaml and tests/components/test_<slug>.py; a
test checks all four agree. The table lives outside core/ on purpose: a train stage depends on the core
modules its component imports, and a new line here must not re-train every other paper.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from components.core.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from components.core.contract import Component

REGISTRY: dict[str, str] = {
    "uba": "components.uba.component:component",
    "sei_bwsnn": "components.sei_bwsnn.component:component",
    "transdf": "components.transdf.component:component",
    "lion": "components.lion.component:component",
    "dnt": "components.dnt.component:component",
    "adamw_l1": "components.adamw_l1.component:component",
    "liesd": "components.liesd.component:component",
    "pyramid_flow": "components.pyramid_flow.component:component",
    "ekan": "components.ekan.component:component",
    "ict": "components.ict.component:component",
    "opzo": "components.opzo.component:component",
    "hlop": "components.hlop.component:component",
    "di_sindy": "components.di_sindy.component:component",
    "grsnn": "components.grsnn.component:component",
    "digic": "components.digic.component:component",
    "sgm": "components.sgm.component:component",
    "nupa": "components.nupa.component:component",
    "logic_consistency": "components.logic_consistency.component:component",
    "ldhd": "components.ldhd.component:component",
    "hypergraph": "components.hypergraph.component:component",
    "vact": "components.vact.component:component",
}


def get_component(slug: str) -> Component:
    if slug not in REGISTRY:
        raise ConfigError(
            f"unknown component '{slug}'{did_you_mean(slug, REGISTRY)}; known: {', '.join(sorted(REGISTRY))}"
        )
    module_name, attribute = REGISTRY[slug].split(":")
    return getattr(importlib.import_module(module_name), attribute)


class Summary(NamedTuple):
    """What `paperzoo list` shows of a component: its preset names and the datasets it can read."""

    presets: tuple[str, ...]
    datasets: tuple[str, ...]


def component_summary(slug: str) -> Summary:
    """The component's presets and datasets read from its module's source, without running it: importing a
    component costs torch and its field libraries (seconds), listing them must not. Where the class does not
    spell them as literals, the component is imported after all."""
    if slug not in REGISTRY:
        get_component(slug)  # the one-line error
    module_name, attribute = REGISTRY[slug].split(":")
    spec = importlib.util.find_spec(module_name)
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))  # type: ignore[arg-type, union-attr]
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        (instance,) = [
            node.value.func.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            and [ast.unparse(target) for target in node.targets] == [attribute]
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
        ]
        values = {
            statement.targets[0].id: statement.value
            for statement in classes[instance].body
            if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name)
        }
        presets = values["presets"]
        if not isinstance(presets, ast.Dict):
            raise ValueError(f"{slug}: presets is not a literal mapping")
        names = tuple(ast.literal_eval(key) for key in presets.keys)  # type: ignore[arg-type]
        return Summary(names, tuple(ast.literal_eval(values["datasets"])))
    except (AttributeError, KeyError, OSError, SyntaxError, TypeError, ValueError):
        component = get_component(slug)
        return Summary(tuple(component.presets), tuple(component.datasets))
