"""The three metric levels of vact.md §3.4 with their truth and observe variants, the intervention-contrast
consistency, NA rate and group sizes; and the analytic values of §6's stand-ins that the checks compare with.

A judgement is one video: (u, seed, observed) with observed[v] in {1, 0, None}. NA items leave numerator and
denominator alike; the NA rate and every group's size are reported beside the scores (§8)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from components.vact.systems import CausalSystem, interventions

NAMES = ("tc", "gc_truth", "gc_observe", "rc_truth", "rc_observe", "rc_all", "icc")


@dataclass(frozen=True)
class Judgement:
    u: tuple[int, ...]
    seed: int
    observed: Mapping[str, int | None]


def _ratio(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def system_metrics(system: CausalSystem, judgements: Sequence[Judgement]) -> dict[str, float]:
    """Every score of §3.4 pooled over one system's videos, with its group size n_<score> and the NA rate."""
    roots, effects = system.roots, system.effects
    counts = {name: [0, 0] for name in NAMES}  # hits, evaluable
    na = total = 0
    for j in judgements:
        o, truth = j.observed, system.evaluate(j.u)
        na += sum(o[v] is None for v in system.names)
        total += len(system.names)
        for r, want in zip(roots, j.u, strict=True):
            if o[r] is not None:
                counts["tc"][0] += o[r] == want
                counts["tc"][1] += 1
        for v in effects:
            if o[v] is not None:
                counts["gc_truth"][0] += o[v] == truth[v]
                counts["gc_truth"][1] += 1
        if all(o[r] is not None for r in roots):  # expected effects of the roots the video actually shows
            recomputed = system.evaluate(tuple(o[r] for r in roots))
            for v in effects:
                if o[v] is not None:
                    counts["gc_observe"][0] += o[v] == recomputed[v]
                    counts["gc_observe"][1] += 1
        rendered_as_prompted = all(o[r] == want for r, want in zip(roots, j.u, strict=True))
        evaluable = holds = 0
        for v in effects:
            if o[v] is None or any(o[p] is None for p in system.parents[v]):
                continue
            ok = o[v] == system.mechanism(v, o)
            evaluable += 1
            holds += ok
            counts["rc_observe"][0] += ok
            counts["rc_observe"][1] += 1
            if rendered_as_prompted:
                counts["rc_truth"][0] += ok
                counts["rc_truth"][1] += 1
        if evaluable:
            counts["rc_all"][0] += holds == evaluable
            counts["rc_all"][1] += 1
    icc = intervention_contrast(system, judgements)
    counts["icc"] = list(icc)
    out = {name: _ratio(*counts[name]) for name in NAMES}
    out.update({f"n_{name}": float(counts[name][1]) for name in NAMES})
    out["na_rate"] = _ratio(na, total)
    out["n_videos"] = float(len(judgements))
    return out


def descendants(system: CausalSystem, root: str) -> set[str]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {c for c, ps in system.parents.items() if set(ps) & frontier and c not in found}
        found |= frontier
    return found


def intervention_contrast(system: CausalSystem, judgements: Sequence[Judgement]) -> tuple[int, int]:
    """ICC: for video pairs of the same seed whose interventions differ in one root r, does each descendant v of r
    change as x* says: (o_v(u) - o_v(u')) == (x*_v(u) - x*_v(u'))? Returns (hits, evaluable)."""
    by_key = {(j.u, j.seed): j for j in judgements}
    hits = evaluable = 0
    for (u, seed), first in by_key.items():
        for i, r in enumerate(system.roots):
            if u[i] != 0:
                continue  # each unordered pair once: u has r = 0, u' has r = 1
            other = by_key.get((u[:i] + (1,) + u[i + 1 :], seed))
            if other is None:
                continue
            truth_u, truth_v = system.evaluate(u), system.evaluate(other.u)
            for v in descendants(system, r):
                a, b = first.observed[v], other.observed[v]
                if a is None or b is None:
                    continue
                hits += (a - b) == (truth_u[v] - truth_v[v])
                evaluable += 1
    return hits, evaluable


def macro(per_system: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Scores: the mean over systems of each system's score (systems where a score has no evaluable item are left
    out of its mean); sizes and counts: summed."""
    out: dict[str, float] = {}
    keys = next(iter(per_system.values())).keys()
    for key in keys:
        values = np.array([m[key] for m in per_system.values()], dtype=np.float64)
        if key.startswith("n_"):
            out[key] = float(values.sum())
        else:
            finite = values[np.isfinite(values)]
            out[key] = float(finite.mean()) if finite.size else float("nan")
    return out


# --- analytic values of the stand-ins (§6 checks 3-5), for u uniform over all 2^|U| interventions


def agreement_with_marginals(system: CausalSystem) -> float:
    """Shortcut's GC_truth, and SelfConsistentIgnorer's (independent uniform u, u'): mean_v [m_v^2 + (1 - m_v)^2]
    with m_v = P(x*_v(u) = 1)."""
    worlds = [system.evaluate(u) for u in interventions(system)]
    m = np.array([[w[v] for w in worlds] for v in system.effects], dtype=np.float64).mean(axis=1)
    return float(np.mean(m**2 + (1 - m) ** 2))


def noisy_rule_consistency(system: CausalSystem, epsilon: float) -> float:
    """Noisy(eps)'s RC_observe: mean over u and effects v of P[flip(x_v) = f_v(flip(x_Pa(v)))], by exact
    enumeration of the flip patterns of v and its parents."""
    values = []
    for u in interventions(system):
        truth = system.evaluate(u)
        for v in system.effects:
            family = (v, *system.parents[v])
            p = 0.0
            for flips in itertools.product((0, 1), repeat=len(family)):
                shown = {name: truth[name] ^ f for name, f in zip(family, flips, strict=True)}
                weight = np.prod([epsilon if f else 1 - epsilon for f in flips])
                p += weight * (shown[v] == system.mechanism(v, shown))
            values.append(p)
    return float(np.mean(values))
