"""Causal systems (vact.md §3.1): binary, video-visible variables on a DAG, a DNF mechanism per effect, the
code validity checks, the interventions over the roots (§3.2) and their prompts and questions (§3.3)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from components.core.errors import ConfigError, DataError

Literal_ = tuple[str, int]  # (parent, value): p when value is 1, not-p when 0
Term = tuple[Literal_, ...]  # a conjunction of literals


class InvalidSystem(DataError):
    """A causal system that fails a validity check of vact.md §3.1 (named in the message)."""


@dataclass(frozen=True)
class Variable:
    name: str
    true: str  # D(v, 1): what the video shows when v = 1
    false: str  # D(v, 0)
    kind: str = "state"  # "state" (a bright/dark block) or "motion" (something moves or stays still)


@dataclass(frozen=True)
class CausalSystem:
    """S = (V, G, U, F, D). `rules[v]` is v's DNF over literals of its parents; roots have no rule."""

    name: str
    scene: str  # the neutral scene description every prompt starts with
    variables: tuple[Variable, ...]
    parents: Mapping[str, tuple[str, ...]]
    rules: Mapping[str, tuple[Term, ...]] = field(default_factory=dict)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @cached_property
    def roots(self) -> tuple[str, ...]:
        return tuple(v for v in self.names if not self.parents.get(v))

    @cached_property
    def effects(self) -> tuple[str, ...]:
        return tuple(v for v in self.names if self.parents.get(v))

    def variable(self, name: str) -> Variable:
        return self.variables[self.names.index(name)]

    def topological_order(self) -> tuple[str, ...]:
        if "_order" in self.__dict__:  # memoised (the system is frozen)
            return self.__dict__["_order"]
        order: list[str] = []
        pending = dict(self.parents)
        while len(order) < len(self.names):
            ready = [v for v in self.names if v not in order and all(p in order for p in pending.get(v, ()))]
            if not ready:
                cycle = sorted(v for v in self.names if v not in order)
                raise InvalidSystem(f"system {self.name}: graph G has a cycle among {cycle}")
            order.extend(ready)
        self.__dict__["_order"] = tuple(order)
        return self.__dict__["_order"]

    def mechanism(self, effect: str, values: Mapping[str, int]) -> int:
        """f_v: 1 when some term has all its literals true."""
        return int(any(all(values[p] == want for p, want in term) for term in self.rules[effect]))

    def evaluate(self, roots: Mapping[str, int] | Sequence[int]) -> dict[str, int]:
        """x*(u): F evaluated in topological order from the root assignment u."""
        u = tuple(roots[r] for r in self.roots) if isinstance(roots, Mapping) else tuple(int(b) for b in roots)
        if len(u) != len(self.roots):
            raise DataError(f"causal system {self.name}: {len(u)} root values for roots {self.roots}")
        memo = self.__dict__.setdefault("_worlds", {})  # at most 2^|U| entries
        if u not in memo:
            values = dict(zip(self.roots, u, strict=True))
            for v in self.topological_order():
                if v not in values:
                    values[v] = self.mechanism(v, values)
            memo[u] = values
        return dict(memo[u])

    def prompt(self, u: Sequence[int]) -> str:
        """Only D(r, u_r) for the roots plus the neutral scene: never an effect (§3.2, §8 prompt leakage)."""
        parts = [self.variable(r).true if bit else self.variable(r).false for r, bit in zip(self.roots, u, strict=True)]
        return f"{self.scene} " + "; ".join(parts) + "."

    def question(self, name: str) -> str:
        """The fixed yes/no template of §3.3 with the 'cannot tell' option."""
        v = self.variable(name)
        return f"In this video, which is true? (A) {v.true} (B) {v.false} (C) cannot tell"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scene": self.scene,
            "variables": [vars(v) for v in self.variables],
            "parents": {k: list(p) for k, p in self.parents.items() if p},
            "rules": {k: [[list(lit) for lit in term] for term in dnf] for k, dnf in self.rules.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CausalSystem:
        try:
            return cls(
                name=str(data["name"]),
                scene=str(data.get("scene", "")),
                variables=tuple(Variable(**v) for v in data["variables"]),
                parents={k: tuple(p) for k, p in data.get("parents", {}).items()},
                rules={
                    k: tuple(tuple((p, int(b)) for p, b in term) for term in dnf) for k, dnf in data["rules"].items()
                },
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidSystem(f"causal system {data.get('name', '?')}: malformed JSON ({error!r})") from None


def interventions(system: CausalSystem, exhaustive_up_to: int = 4, seed: int = 0) -> list[tuple[int, ...]]:
    """All 2^|U| root assignments when |U| <= exhaustive_up_to; otherwise a seeded sample that covers every value of
    every root and every pair of roots (§3.2), drawn greedily until all pairs are seen."""
    k = len(system.roots)
    if k <= exhaustive_up_to:
        return [tuple(u) for u in itertools.product((0, 1), repeat=k)]
    rng = np.random.default_rng(seed)
    missing = {(i, a, j, b) for i, j in itertools.combinations(range(k), 2) for a in (0, 1) for b in (0, 1)}
    chosen: list[tuple[int, ...]] = []
    while missing:
        candidates = [tuple(int(x) for x in rng.integers(0, 2, k)) for _ in range(32)]
        best = max(candidates, key=lambda u: sum((i, u[i], j, u[j]) in missing for i, _, j, _ in missing))
        covered = {(i, best[i], j, best[j]) for i, j in itertools.combinations(range(k), 2)}
        if covered & missing:
            chosen.append(best)
            missing -= covered
    return chosen


def validate(system: CausalSystem, exhaustive_up_to: int = 4) -> CausalSystem:
    """The code checks of §3.1, before any LLM critique; returns the system or raises InvalidSystem."""
    names = system.names
    where = f"causal system {system.name}"
    if len(set(names)) != len(names):
        raise InvalidSystem(f"{where}: duplicate variable names {names}")
    for v in system.variables:
        if not v.true.strip() or not v.false.strip() or v.true.strip() == v.false.strip():
            raise InvalidSystem(f"{where}: variable {v.name} needs two distinct visible descriptions (binary)")
        if v.kind not in ("state", "motion"):
            raise InvalidSystem(f"{where}: variable {v.name} has kind {v.kind!r}, not state or motion")
    for child, parents in system.parents.items():
        unknown = [p for p in (child, *parents) if p not in names]
        if unknown:
            raise InvalidSystem(f"{where}: graph names unknown variables {unknown}")
    system.topological_order()  # raises on a cycle
    effects = system.effects
    if not system.roots or not effects:
        raise InvalidSystem(f"{where}: needs at least one root and one effect")
    for v in effects:
        dnf = system.rules.get(v)
        if not dnf or any(not term for term in dnf):
            raise InvalidSystem(f"{where}: effect {v} has no rule (or an empty term)")
        cited = {p for term in dnf for p, _ in term}
        if not cited <= set(system.parents[v]):
            raise InvalidSystem(f"{where}: rule of {v} cites non-parents {sorted(cited - set(system.parents[v]))}")
        if cited != set(system.parents[v]):
            raise InvalidSystem(f"{where}: parents {sorted(set(system.parents[v]) - cited)} of {v} are not in its rule")
        if any(b not in (0, 1) for term in dnf for _, b in term):
            raise InvalidSystem(f"{where}: rule of {v} has a non-binary literal")
    extra = set(system.rules) - set(effects)
    if extra:
        raise InvalidSystem(f"{where}: roots {sorted(extra)} have rules (a root has no parents)")
    worlds = [system.evaluate(u) for u in interventions(system, exhaustive_up_to)]
    for v in effects:
        if len({w[v] for w in worlds}) == 1:
            raise InvalidSystem(f"{where}: effect {v} is constant over all interventions (untestable)")
    for u in interventions(system, exhaustive_up_to):
        check_prompt(system, system.prompt(u))
    return system


def check_prompt(system: CausalSystem, prompt: str) -> str:
    """§8 leakage: no effect description may appear in a prompt (root descriptions included)."""
    text = prompt.lower()
    for v in system.effects:
        for description in (system.variable(v).true, system.variable(v).false):
            if description.lower() in text:
                raise InvalidSystem(f"causal system {system.name}: prompt leaks effect {v} ({description!r})")
    return prompt


def _v(name: str, true: str, false: str, kind: str = "state") -> Variable:
    return Variable(name, true, false, kind)


TEMPLATES: dict[str, CausalSystem] = {
    "ramp": CausalSystem(
        name="ramp",
        scene="A ball is placed at the top of a wooden ramp.",
        variables=(
            _v("steep", "the ramp is steep", "the ramp is almost flat"),
            _v("rough", "the ramp surface is covered in rough carpet", "the ramp surface is smooth and polished"),
            _v("barrier", "a wooden block stands across the ramp", "nothing stands across the ramp"),
            _v("rolls", "the ball rolls down", "the ball stays where it is", "motion"),
            _v("reaches_bottom", "the ball reaches the bottom of the ramp", "the ball stops before the bottom"),
        ),
        parents={"rolls": ("steep", "rough"), "reaches_bottom": ("rolls", "barrier")},
        rules={"rolls": ((("steep", 1), ("rough", 0)),), "reaches_bottom": ((("rolls", 1), ("barrier", 0)),)},
    ),
    "lamp": CausalSystem(
        name="lamp",
        scene="A desk lamp stands on a table in a dark room.",
        variables=(
            _v("switch_on", "the lamp's switch is turned on", "the lamp's switch is turned off"),
            _v("bulb_ok", "a new bulb is screwed into the lamp", "a broken bulb is screwed into the lamp"),
            _v("object_present", "a vase stands next to the lamp", "the table next to the lamp is empty"),
            _v("lit", "the lamp glows", "the lamp stays dark"),
            _v("shadow", "a shadow falls on the wall", "no shadow falls on the wall"),
        ),
        parents={"lit": ("switch_on", "bulb_ok"), "shadow": ("lit", "object_present")},
        rules={"lit": ((("switch_on", 1), ("bulb_ok", 1)),), "shadow": ((("lit", 1), ("object_present", 1)),)},
    ),
    "ice": CausalSystem(
        name="ice",
        scene="An ice cube lies on a plate for an hour.",
        variables=(
            _v("sunny", "the plate stands in bright sunshine", "the plate stands in the shade"),
            _v("in_freezer", "the plate is inside a freezer", "the plate is on a kitchen counter"),
            _v("melted", "the ice cube shrinks away", "the ice cube keeps its shape"),
            _v("puddle", "water pools on the plate", "the plate stays dry"),
        ),
        parents={"melted": ("sunny", "in_freezer"), "puddle": ("melted",)},
        rules={"melted": ((("sunny", 1), ("in_freezer", 0)),), "puddle": ((("melted", 1),),)},
    ),
}


def random_system(
    rng: np.random.Generator, name: str, roots: tuple[int, int], effects: tuple[int, int]
) -> CausalSystem:
    """§6's procedural generator: |U| and the effect count uniform in their ranges, each effect's parents drawn from
    the variables before it, a random 1-2-term DNF over them; redrawn until validate accepts it (no constant
    effect, every parent in its rule)."""
    for _ in range(1000):
        k, m = int(rng.integers(roots[0], roots[1] + 1)), int(rng.integers(effects[0], effects[1] + 1))
        root_names = [f"r{i}" for i in range(k)]
        effect_names = [f"e{i}" for i in range(m)]
        names = root_names + effect_names
        variables = [_v(r, f"object {r} is red", f"object {r} is blue") for r in root_names]
        variables += [
            _v(e, f"object {e} moves", f"object {e} stays still", "motion")
            if rng.random() < 0.5
            else _v(e, f"light {e} is on", f"light {e} is off")
            for e in effect_names
        ]
        parents, rules = {}, {}
        for index, e in enumerate(effect_names):
            pool = names[: k + index]
            count = int(rng.integers(1, min(3, len(pool)) + 1))
            chosen = tuple(sorted(rng.choice(pool, size=count, replace=False).tolist(), key=names.index))
            terms: list[Term] = []
            for _ in range(int(rng.integers(1, 3))):
                size = int(rng.integers(1, len(chosen) + 1))
                cited = rng.choice(chosen, size=size, replace=False).tolist()
                terms.append(tuple((p, int(rng.integers(0, 2))) for p in sorted(cited, key=names.index)))
            # every parent must appear in the rule: add the missing ones to the first term
            missing = [p for p in chosen if p not in {q for t in terms for q, _ in t}]
            terms[0] = terms[0] + tuple((p, int(rng.integers(0, 2))) for p in missing)
            parents[e], rules[e] = chosen, tuple(terms)
        system = CausalSystem(name, f"Scene {name}.", tuple(variables), parents, rules)
        try:
            return validate(system)
        except InvalidSystem:
            continue
    raise ConfigError(f"could not draw a valid random causal system with roots {roots} and effects {effects}")


def build_systems(
    count: int, templates: Sequence[str], roots: tuple[int, int], effects: tuple[int, int], seed: int
) -> list[CausalSystem]:
    """The templates first (in the given order), then procedural systems drawn from `seed` until count."""
    unknown = [t for t in templates if t not in TEMPLATES]
    if unknown:
        raise ConfigError(f"vact: templates {unknown} are not among {sorted(TEMPLATES)}")
    systems = [validate(TEMPLATES[t]) for t in templates][:count]
    rng = np.random.default_rng([seed, 20])
    while len(systems) < count:
        systems.append(random_system(rng, f"random{len(systems)}", roots, effects))
    return systems


def load_systems(path: Path) -> list[CausalSystem]:
    """A JSON list of systems (the LLM assistant's output at full scale), each validated."""
    if not path.is_file():
        raise DataError(f"vact: systems_file {path} does not exist")
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"vact: systems_file {path} is not JSON ({error})") from None
    return [validate(CausalSystem.from_json(item)) for item in items]
