"""Mutants of logic_consistency (see tests/mutants/harness.py), written from /work/shared/papers/logic_consistency.md:
the metric definitions of §3.2, the repair of §3.4, the generators of §6 and the pitfalls of §8; then the classic
bugs of an evaluation harness (a sign, an off-by-one, state leaking between replicates, a metric on the wrong set)."""

from tests.mutants.harness import Mutant

METRICS = "components/logic_consistency/metrics.py"
REPAIR = "components/logic_consistency/repair.py"
WORLDS = "components/logic_consistency/worlds.py"
ANSWERERS = "components/logic_consistency/answerers.py"
COMPONENT = "components/logic_consistency/component.py"
TESTS = "tests/components/test_logic_consistency.py"

MUTANTS = [
    # --- contributions: the consistency metrics, the degenerate-answerer flag, the MaxSAT repair, the generators
    Mutant(
        name="implication-violation-is-consequent-true",
        kind="contribution",
        guards="BeliefBank's tau: a -> b is violated when B(a) = T and B(b) = F",
        file=METRICS,
        find="applicable & (plain[b] == (negated == 1))",
        replace="applicable & (plain[b] == (negated == 0))",
        killers=(f"{TESTS}::test_check1_rule_reasoner_is_exact_and_a_fact_lookup_is_not",),
    ),
    Mutant(
        name="vacuous-implication-reported-as-one",
        kind="contribution",
        guards="§8: with no applicable constraint the implication rate is N/A, not 1",
        file=METRICS,
        find="    if good.size:\n        out[key] = float(good.mean())",
        replace="    out[key] = float(good.mean()) if good.size else 1.0",
        killers=(f"{TESTS}::test_metric_definitions_on_hand_made_beliefs",),
    ),
    Mutant(
        name="no-degenerate-flag",
        kind="contribution",
        guards="check 3: AlwaysTrue is implication-consistent only vacuously; the harness must flag it",
        file=METRICS,
        find="degenerate = imp is not None and imp >= 0.99 and neg < 0.5",
        replace="degenerate = False",
        killers=(f"{TESTS}::test_check3_always_true_is_vacuously_implication_consistent_and_flagged",),
    ),
    Mutant(
        name="repair-weights-are-probabilities",
        kind="contribution",
        guards="§8: soft-clause weights are |log-odds|, not raw probabilities",
        file=REPAIR,
        find="return np.abs(np.log(q / (1.0 - q)))",
        replace="return np.maximum(q, 1.0 - q)",
        killers=(f"{TESTS}::test_repair_is_optimal_and_weighted_by_log_odds",),
    ),
    Mutant(
        name="repair-drops-transitive-clauses",
        kind="contribution",
        guards="§3.4: every constraint of C is a hard clause, the transitive triples included",
        file=REPAIR,
        find="                hard.append([-(i - base + 1), k - base + 1])",
        replace="                pass",
        killers=(f"{TESTS}::test_check4_repair_removes_every_violation_and_gains_accuracy",),
    ),
    Mutant(
        name="rule-reasoner-skips-chaining",
        kind="contribution",
        guards="check 1: the reasoner derives through the rules; a fact lookup fails on derived atoms",
        file=ANSWERERS,
        find="            belief[b[positive & belief[a]]] = True\n",
        replace="",
        killers=(f"{TESTS}::test_check1_rule_reasoner_is_exact_and_a_fact_lookup_is_not",),
    ),
    Mutant(
        name="false-queries-unbalanced",
        kind="contribution",
        guards="check 5: each depth stratum holds as many false as true queries (the shortcut scores 0.5)",
        file=WORLDS,
        find="queries += [(t, p, e, 1, d), (t, fp, fe, 0, d)]",
        replace="queries += [(t, p, e, 1, d)] + ([(t, fp, fe, 0, d)] if d % 2 else [])",
        killers=(f"{TESTS}::test_check5_rule_world_depth_strata",),
    ),
    # --- classic bugs of the kind
    Mutant(
        name="negation-polarity-flipped",
        kind="bug",
        guards="§8: the negated question's correct answer is the opposite of the atom's",
        file=ANSWERERS,
        find="return np.stack([gold, ~gold, gold], axis=1)",
        replace="return np.stack([gold, gold, gold], axis=1)",
        killers=(f"{TESTS}::test_check1_rule_reasoner_is_exact_and_a_fact_lookup_is_not",),
    ),
    Mutant(
        name="depth-off-by-one",
        kind="bug",
        guards="proof depth counts rounds of chaining from 0 (stated facts) upward",
        file=WORLDS,
        find="                    new[(head, e)] = rounds",
        replace="                    new[(head, e)] = rounds + 1",
        killers=(f"{TESTS}::test_chain_depth_counts_rounds_from_the_stated_facts",),
    ),
    Mutant(
        name="noise-seed-ignores-replicate",
        kind="bug",
        guards="each replicate draws its own answer noise (state must not repeat across replicates)",
        file=COMPONENT,
        find="np.random.default_rng([ctx.seed, replicate, 1])",
        replace="np.random.default_rng([ctx.seed, 0, 1])",
        killers=(f"{TESTS}::test_noise_differs_between_replicates",),
    ),
    Mutant(
        name="sums-leak-across-resume",
        kind="bug",
        guards="a resumed run restores the running sums instead of restarting them (counts are not double-counted)",
        file=COMPONENT,
        find='sums: dict[str, float] = resumed["sums"] if resumed else {}',
        replace="sums: dict[str, float] = {}",
        killers=(f"{TESTS}::test_resume_after_preemption_gives_the_same_metrics",),
    ),
    Mutant(
        name="fact-metric-on-derived-atoms",
        kind="bug",
        guards="factuality is measured on the knowledge base's facts, separately from derived questions",
        file=METRICS,
        find='(plain == gold)[world.facts], "n_fact")',
        replace='(plain == gold)[~world.facts], "n_fact")',
        killers=(f"{TESTS}::test_check1_rule_reasoner_is_exact_and_a_fact_lookup_is_not",),
    ),
]
