"""The explicit table of components: slug -> "module:attribute", imported only when asked for (timm style).

No registration by import side effects. Adding a paper (docs/adding-a-paper.md) means one line here, a
folder under components/, an entry and a section in params.yaml and tests/components/test_<slug>.py; a
test checks all four agree. The table lives outside core/ on purpose: a train stage depends on the core
modules its component imports, and a new line here must not re-train every other paper.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
