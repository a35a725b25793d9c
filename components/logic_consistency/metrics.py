"""The consistency metrics of logic_consistency.md §3.2 over a belief table B [N, 3] (plain, negated, paraphrase)
and the answerer's p. Every rate comes with its count; a rate over an empty set is vacuous and left out (N/A),
never reported as 1 (§8). `flags` names the degenerate patterns a single axis would hide (check 3)."""

from __future__ import annotations

import numpy as np

from components.logic_consistency.worlds import TaxoWorld


def macro_f1(gold: np.ndarray, belief: np.ndarray) -> float:
    scores = []
    for positive in (True, False):
        tp = np.sum((belief == positive) & (gold == positive))
        predicted, actual = np.sum(belief == positive), np.sum(gold == positive)
        scores.append(0.0 if tp == 0 else 2 * tp / (predicted + actual))
    return float(np.mean(scores))


def rate(out: dict, key: str, good: np.ndarray, count_key: str) -> None:
    """Cons = mean of `good` over the applicable set; its size always, the rate only when it is not empty."""
    out[count_key] = float(good.size)
    if good.size:
        out[key] = float(good.mean())


def implication_violations(world: TaxoWorld, plain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BeliefBank: App = {a -> b : B(a) = T}; Vio = App with B(b) = F (B(b) = T for a -> not b)."""
    a, b, negated = world.implications.T
    applicable = plain[a]
    return applicable, applicable & (plain[b] == (negated == 1))


def transitivity_violations(world: TaxoWorld, plain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j, k = world.triples.T
    applicable = plain[i] & plain[j]
    return applicable, applicable & ~plain[k]


def consistency(world: TaxoWorld, beliefs: np.ndarray, p: np.ndarray) -> dict[str, float]:
    plain, negated, paraphrase = beliefs[:, 0], beliefs[:, 1], beliefs[:, 2]
    gold = world.gold
    out = {"n_atoms": float(len(gold)), "acc": float(np.mean(plain == gold)), "f1": macro_f1(gold, plain)}
    out["acc_entity"] = float(np.mean((plain == gold)[world.entity_of >= 0]))

    applicable, violated = implication_violations(world, plain)
    rate(out, "cons_imp", ~violated[applicable], "app_imp")
    if applicable.any():
        out["tau_imp"] = 1.0 - out["cons_imp"]

    a, b, neg = world.implications.T  # §3.2 item 8: a -> b demands B(not b) = T => B(not a) = T
    positive = neg == 0
    contra_applicable = negated[b] & positive
    rate(out, "cons_contra", negated[a][contra_applicable], "app_contra")

    rate(out, "cons_neg", plain != negated, "n_neg")
    out["delta_neg"] = float(np.mean(np.abs(p[:, 0] + p[:, 1] - 1.0)))

    applicable, violated = transitivity_violations(world, plain)
    rate(out, "cons_tr", ~violated[applicable], "app_tr")
    left, right = world.symmetric.T
    rate(out, "cons_sym", plain[left] == plain[right], "n_sym")
    rate(out, "cons_para", plain == paraphrase, "n_para")
    rate(out, "cons_fact", (plain == gold)[world.facts], "n_fact")
    rate(out, "acc_derived", (plain == gold)[~world.facts], "n_derived")
    out["cons_glob"] = float(np.mean(jointly_consistent(world, beliefs)))
    return out


def jointly_consistent(world: TaxoWorld, beliefs: np.ndarray) -> np.ndarray:
    """§3.2 item 7: an entity satisfies every constraint restricted to it (implications, negation and paraphrase
    pairs of its atoms, transitive triples concluding about it)."""
    plain = beliefs[:, 0]
    bad = np.zeros(world.entities, dtype=bool)
    _, violated = implication_violations(world, plain)
    bad[world.entity_of[world.implications[violated, 0]]] = True
    _, violated = transitivity_violations(world, plain)
    owners = world.entity_of[world.triples[violated, 2]]
    bad[owners[owners >= 0]] = True
    pair_broken = (plain == beliefs[:, 1]) | (plain != beliefs[:, 2])
    owners = world.entity_of[pair_broken]
    bad[owners[owners >= 0]] = True
    return ~bad


def predicted_tau(world: TaxoWorld, eps: float) -> float:
    """Check 2's prediction for independent flips: sum P(B(a)=T) P(B(b)=F) / sum P(B(a)=T)."""
    a, b, negated = world.implications.T
    p_true = np.where(world.gold, 1.0 - eps, eps)
    p_violate = np.where(negated == 1, p_true[b], 1.0 - p_true[b])
    return float(np.sum(p_true[a] * p_violate) / np.sum(p_true[a]))


def flags(report: dict[str, float]) -> dict[str, float]:
    """Check 3: implication consistency without negation consistency is a degenerate answerer, not a consistent one."""
    imp, neg = report.get("cons_imp"), report.get("cons_neg", 1.0)
    degenerate = imp is not None and imp >= 0.99 and neg < 0.5
    return {"flag/degenerate": float(degenerate), "flag/vacuous_imp": float(report.get("app_imp", 0.0) == 0)}


def depth_accuracy(queries: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """§3.3: accuracy per proof-depth stratum (RuleTaker / ProofWriter convention), with counts."""
    correct = (p > 0.5) == (queries[:, 3] == 1)
    out = {"acc": float(correct.mean()), "n_queries": float(len(correct))}
    for depth in np.unique(queries[:, 4]):
        at = queries[:, 4] == depth
        out[f"acc_depth{depth}"] = float(correct[at].mean())
        out[f"n_depth{depth}"] = float(at.sum())
    return out
