"""ConCoRD-style repair (logic_consistency.md §3.4): weighted MaxSAT with the constraint set as hard clauses and
one soft unit clause per atom on the literal the answerer prefers, weight |log(p / (1 - p))| (p clipped, §8);
solved exactly with python-sat's RC2. The class atoms (shared by all entities) are repaired first, then each
entity's atoms with the class atoms fixed: one small formula per entity, as the spec builds them. With unit
weights the optimum's cost is the repair distance (§3.2 item 7)."""

from __future__ import annotations

import numpy as np

from components.core.errors import ConfigError
from components.logic_consistency.worlds import TaxoWorld


def solver():
    try:
        from pysat.examples.rc2 import RC2
        from pysat.formula import WCNF
    except ImportError:
        raise ConfigError("the MaxSAT repair needs python-sat: pip install python-sat") from None
    return RC2, WCNF


def solve(hard: list[list[int]], prefer: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Variables 1..n; prefer[v-1] the preferred truth value; returns the optimal assignment and its cost."""
    RC2, WCNF = solver()
    formula = WCNF()
    for clause in hard:
        formula.append([int(literal) for literal in clause])
    for v, (value, weight) in enumerate(zip(prefer, weights), start=1):
        if weight > 0:
            formula.append([v if value else -v], weight=float(weight))
    with RC2(formula) as rc2:
        model = rc2.compute()
        if model is None:
            raise ValueError("the hard constraints are unsatisfiable")
        assignment = np.zeros(len(prefer), dtype=bool)
        for literal in model:
            if abs(literal) <= len(prefer):
                assignment[abs(literal) - 1] = literal > 0
        return assignment, float(rc2.cost)


def soft_weights(p: np.ndarray, clip: float) -> np.ndarray:
    q = np.clip(p, clip, 1.0 - clip)
    return np.abs(np.log(q / (1.0 - q)))


def repair(world: TaxoWorld, p: np.ndarray, *, clip: float = 1e-4, unit: bool = False) -> tuple[np.ndarray, float]:
    """The repaired plain beliefs [N] and the total cost (flips when unit=True) from the plain answers p[:, 0]."""
    prefer = p[:, 0] > 0.5
    weights = np.ones(len(p)) if unit else soft_weights(p[:, 0], clip)
    out = prefer.copy()
    total = 0.0

    shared = np.flatnonzero(world.entity_of < 0)  # class atoms: class-level triples and symmetric pairs
    var = {int(atom): n + 1 for n, atom in enumerate(shared)}
    hard = [[-var[i], -var[j], var[k]] for i, j, k in world.triples if i in var and k in var]
    hard += [c for left, right in world.symmetric for c in ([-var[left], var[right]], [var[left], -var[right]])]
    assignment, cost = solve(hard, prefer[shared], weights[shared])
    out[shared], total = assignment, total + cost

    A, generic = world.atoms_per_entity, world.generic_implications
    entity_triples = world.triples[world.entity_of[world.triples[:, 0]] >= 0]
    owner = world.entity_of[entity_triples[:, 0]]
    for e in range(world.entities):
        base = e * A
        hard = [[-(a + 1), -(b + 1) if negated else b + 1] for a, b, negated in generic]
        for i, j, k in entity_triples[owner == e]:
            if out[j]:  # the class link is settled: r(e, y) -> r(e, z) when y is a z, nothing otherwise
                hard.append([-(i - base + 1), k - base + 1])
        atoms = slice(base, base + A)
        assignment, cost = solve(hard, prefer[atoms], weights[atoms])
        out[atoms], total = assignment, total + cost
    return out, total


def beliefs_from(plain: np.ndarray) -> np.ndarray:
    """The repaired answer to every form: the negated question gets the opposite, the paraphrase the same."""
    return np.stack([plain, ~plain, plain], axis=1)
