"""The procedural worlds of logic_consistency.md §6: TaxoWorld (a class tree with entities and properties, for the
consistency metrics) and RuleWorld (random Horn theories with proof depths, for logical QA). Gold labels come
from the generator's own tree; the rule reasoner of answerers.py re-derives them from the stated facts only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from components.core.errors import RunError
from components.logic_consistency.config import RuleConfig, TaxoConfig

FORMS = ("plain", "negated", "paraphrase")  # every atom is asked three ways: q, its negation, a paraphrase


def statement(atom: tuple) -> str:
    kind, x, y = atom
    if kind == "isa":
        return f"e{x} is a c{y}"
    if kind == "has":
        return f"e{x} has p{y}"
    if kind == "sub":
        return f"every c{x} is a c{y}"
    return f"c{x} and c{y} share a parent class"  # sib


def question_text(atom: tuple, form: int) -> str:
    """§8: the negation keeps the statement intact and states the polarity outright ("Is it false that ...")."""
    said = statement(atom)
    return (f"Is it true that {said}?", f"Is it false that {said}?", f"Would you agree that {said}?")[form]


@dataclass
class TaxoWorld:
    parent: np.ndarray  # [K] parent class, -1 for a top class
    level: np.ndarray  # [K] 0 top, 1 middle, 2 leaf
    class_properties: list[list[int]]  # properties attached to each class
    entity_leaf: np.ndarray  # [E] the leaf class of each entity
    properties: int
    atoms: list[tuple] = field(default_factory=list)  # ("isa", e, c), ("has", e, p), ("sub", c, d), ("sib", c, d)
    gold: np.ndarray = None  # [N] bool, closed world
    facts: np.ndarray = None  # [N] bool: stated in the knowledge base (leaf membership, direct parents, siblings)
    entity_of: np.ndarray = None  # [N] the entity an atom is about, -1 for class atoms
    implications: np.ndarray = None  # [M, 3] (antecedent, consequent, consequent negated), instantiated per entity
    generic_implications: np.ndarray = None  # [87, 3] the same over one entity's local atom indices
    triples: np.ndarray = None  # [T, 3] atoms r(x,y), r(y,z), r(x,z) of the transitive relation "is a"
    symmetric: np.ndarray = None  # [S, 2] sib(c, d), sib(d, c)

    @property
    def classes(self) -> int:
        return len(self.parent)

    @property
    def entities(self) -> int:
        return len(self.entity_leaf)

    @property
    def atoms_per_entity(self) -> int:
        return self.classes + self.properties

    def isa(self, entity: int, cls: int) -> int:
        return entity * self.atoms_per_entity + cls

    def has(self, entity: int, prop: int) -> int:
        return entity * self.atoms_per_entity + self.classes + prop

    def ancestors(self, cls: int) -> list[int]:
        chain = [cls]
        while self.parent[chain[-1]] >= 0:
            chain.append(int(self.parent[chain[-1]]))
        return chain


def taxo_world(cfg: TaxoConfig, seed) -> TaxoWorld:
    rng = np.random.default_rng(seed)
    parent, level = [], []
    for _ in range(cfg.top_classes):
        parent.append(-1), level.append(0)
    for top in range(cfg.top_classes):
        for _ in range(cfg.children):
            parent.append(top), level.append(1)
    middles = [c for c, lv in enumerate(level) if lv == 1]
    for middle in middles:
        for _ in range(cfg.leaf_children):
            parent.append(middle), level.append(2)
    parent, level = np.array(parent), np.array(level)
    leaves = np.flatnonzero(level == 2)
    per_class = min(cfg.properties_per_class, cfg.properties)
    class_properties = [sorted(rng.choice(cfg.properties, size=per_class, replace=False).tolist()) for _ in parent]
    entity_leaf = np.repeat(leaves, cfg.entities_per_leaf)
    world = TaxoWorld(parent, level, class_properties, entity_leaf, cfg.properties)
    K, A, E = world.classes, world.atoms_per_entity, world.entities

    gold, facts, atoms, entity_of = [], [], [], []
    for e in range(E):
        chain = world.ancestors(int(entity_leaf[e]))
        owned = {p for c in chain for p in class_properties[c]}
        for c in range(K):
            atoms.append(("isa", e, c)), gold.append(c in chain), facts.append(c == chain[0])
        for p in range(cfg.properties):
            atoms.append(("has", e, p)), gold.append(p in owned), facts.append(False)
        entity_of.extend([e] * A)
    index = {}
    for c in range(K):  # sub(c, d): every c is a d, for each class d above c's level
        for d in range(K):
            if level[d] < level[c]:
                index[("sub", c, d)] = len(atoms)
                atoms.append(("sub", c, d)), gold.append(d in world.ancestors(c)[1:]), facts.append(d == parent[c])
                entity_of.append(-1)
    for c in range(K):  # sib(c, d): same parent (the top classes share the implicit root)
        for d in range(K):
            if c != d and level[c] == level[d]:
                index[("sib", c, d)] = len(atoms)
                same = bool(parent[c] == parent[d])
                atoms.append(("sib", c, d)), gold.append(same), facts.append(same)
                entity_of.append(-1)
    world.atoms, world.gold, world.facts = atoms, np.array(gold), np.array(facts)
    world.entity_of = np.array(entity_of)

    generic = [(c, int(parent[c]), 0) for c in range(K) if parent[c] >= 0]  # isa(c) -> isa(parent(c))
    generic += [(c, K + p, 0) for c in range(K) for p in class_properties[c]]  # isa(c) -> has(p)
    world.generic_implications = np.array(generic, dtype=np.int64).reshape(-1, 3)
    offsets = (np.arange(E) * A)[:, None]
    g = world.generic_implications
    world.implications = np.stack(
        [(offsets + g[:, 0]).ravel(), (offsets + g[:, 1]).ravel(), np.tile(g[:, 2], E)], axis=1
    )

    triples = []
    for y in range(K):  # r(e, y), r(y, z) => r(e, z) for every entity; r(x, y), r(y, z) => r(x, z) over classes
        for z in range(K):
            if level[z] < level[y]:
                triples += [(world.isa(e, y), index[("sub", y, z)], world.isa(e, z)) for e in range(E)]
                triples += [
                    (index[("sub", x, y)], index[("sub", y, z)], index[("sub", x, z)])
                    for x in range(K)
                    if level[x] > level[y]
                ]
    world.triples = np.array(triples, dtype=np.int64).reshape(-1, 3)
    world.symmetric = np.array(
        [
            (index[("sib", c, d)], index[("sib", d, c)])
            for c in range(K)
            for d in range(c + 1, K)
            if ("sib", c, d) in index
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    return world


@dataclass
class Theory:
    rules: list[tuple[tuple[int, ...], int]]  # (body predicates, head predicate), all over one variable x
    facts: set[tuple[int, int]]  # (predicate, entity)
    entities: int

    def text(self) -> str:
        facts = " ".join(f"e{e} is q{p}." for p, e in sorted(self.facts))
        rules = " ".join(
            f"If something is {' and '.join(f'q{b}' for b in body)} then it is q{head}." for body, head in self.rules
        )
        return f"Facts: {facts} Rules: {rules}"


def chain(theory: Theory) -> dict[tuple[int, int], int]:
    """Forward chaining, one round per depth: every derivable (predicate, entity) with its minimal proof depth."""
    depth = {fact: 0 for fact in theory.facts}
    rounds = 0
    while True:
        rounds += 1
        new = {}
        for body, head in theory.rules:
            for e in range(theory.entities):
                if (head, e) not in depth and all((b, e) in depth for b in body):
                    new[(head, e)] = rounds
        if not new:
            return depth
        depth.update(new)


@dataclass
class RuleWorld:
    theories: list[Theory]
    queries: np.ndarray  # [Q, 5]: theory, predicate, entity, gold (0/1), depth stratum

    def prompt(self, q: int) -> str:
        theory, predicate, entity = self.queries[q, :3]
        return f"{self.theories[theory].text()} Question: Is e{entity} q{predicate}?"


def random_theory(cfg: RuleConfig, rng: np.random.Generator) -> Theory:
    rules = []
    for _ in range(cfg.rules):
        head = int(rng.integers(cfg.predicates))
        others = [p for p in range(cfg.predicates) if p != head]
        body = tuple(sorted(rng.choice(others, size=int(rng.integers(1, 3)), replace=False).tolist()))
        rules.append((body, head))
    facts = set()
    while len(facts) < min(cfg.facts, cfg.predicates * cfg.entities):
        facts.add((int(rng.integers(cfg.predicates)), int(rng.integers(cfg.entities))))
    return Theory(rules, facts, cfg.entities)


def rule_world(cfg: RuleConfig, seed, max_theories: int = 20_000) -> RuleWorld:
    """Balanced T/F per depth: each true query at depth d is paired with a false (underivable, closed-world) query
    of the same theory, put in stratum d; so the stated-fact shortcut scores exactly 0.5 at depth >= 1."""
    rng = np.random.default_rng(seed)
    need = {d: cfg.queries_per_depth for d in range(cfg.max_depth + 1)}
    theories, queries = [], []
    for _ in range(max_theories):
        if not any(need.values()):
            break
        theory = random_theory(cfg, rng)
        derived = chain(theory)
        false = [(p, e) for p in range(cfg.predicates) for e in range(cfg.entities) if (p, e) not in derived]
        if not false:
            continue
        picked = []
        for d in need:
            at_d = sorted(a for a, depth in derived.items() if depth == d)
            if need[d] and at_d:
                picked.append((d, at_d[rng.integers(len(at_d))], false[rng.integers(len(false))]))
        if not picked:
            continue
        t = len(theories)
        theories.append(theory)
        for d, (p, e), (fp, fe) in picked:
            need[d] -= 1
            queries += [(t, p, e, 1, d), (t, fp, fe, 0, d)]
    if any(need.values()):
        raise RunError(f"rule world: no proofs of depth {[d for d, n in need.items() if n]} in {max_theories} theories")
    return RuleWorld(theories, np.array(queries, dtype=np.int64))
