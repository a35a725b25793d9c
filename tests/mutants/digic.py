"""Mutants of digic (causal features for imitation): see tests/mutants/harness.py.

Written from /work/shared/papers/digic.md: the selection of direct causes from PC's CPDAG (§3.2: parents and
undirected neighbours, never children; tier knowledge), the contrast with the Markov blanket (§3.2 backend M,
§8's first pitfall), the domain shift of §6; then the classic bugs of a train/test, seeded component."""

from tests.mutants.harness import Mutant

COMPONENT = "components/digic/component.py"
DISCOVERY = "components/digic/discovery.py"
POLICY = "components/digic/policy.py"
SCM = "components/digic/scm.py"
TESTS = "tests/components/test_digic.py"
RECOVERY = f"{TESTS}::test_pc_recovers_exactly_the_parents_and_the_blanket_does_not"
GENERALISES = f"{TESTS}::test_digic_generalises_where_bc_all_and_bc_mb_do_not"
CPDAG = f"{TESTS}::test_cpdag_edges_at_the_action_are_read_with_their_direction"
PAPER_PATH = f"{TESTS}::test_paper_path_cartpole_keeps_the_state_and_drops_the_flipped_cue"

MUTANTS = [
    # --- contributions: direct causes by causal discovery, not the blanket; orientation; background knowledge
    Mutant(
        name="children-selected-as-parents",
        kind="contribution",
        guards="children of A (effect cues such as Z1) are never policy inputs (§3.2: bad = {j : A -> j})",
        file=DISCOVERY,
        find="            children.append(j)",
        replace="            parents.append(j)",
        killers=(CPDAG, RECOVERY),
    ),
    Mutant(
        name="edge-direction-read-backwards",
        kind="contribution",
        guards="j -> A is graph[j, A] = -1, graph[A, j] = 1 in causal-learn's encoding: a flipped reading picks "
        "the children",
        file=DISCOVERY,
        find="if tail_at_j == -1 and mark_at_action == 1:",
        replace="if tail_at_j == 1 and mark_at_action == -1:",
        killers=(CPDAG, RECOVERY),
    ),
    Mutant(
        name="undirected-neighbours-dropped",
        kind="contribution",
        guards="the conservative rule keeps edges at A whose orientation is not identified (§3.2, §8)",
        file=DISCOVERY,
        find="(set(undirected) if keep_undirected else set())",
        replace="set()",
        killers=(CPDAG,),
    ),
    Mutant(
        name="markov-blanket-instead-of-pc",
        kind="contribution",
        guards="DIGIC selects by PC's orientation, not by the Markov blanket (which keeps Z1, Z2, W: §6 check 4)",
        file=COMPONENT,
        find='if cfg.backend == "mb":',
        replace='if cfg.backend == "pc":',
        killers=(RECOVERY, GENERALISES),
    ),
    Mutant(
        name="tier-knowledge-ignored",
        kind="contribution",
        guards="the state is measured before the action: PC forbids A -> state (§3.2 background knowledge)",
        file=DISCOVERY,
        find="        for name in before_action:\n",
        replace="        for name in ():\n",
        killers=(f"{TESTS}::test_tier_knowledge_orients_mutually_adjacent_parents", PAPER_PATH),
    ),
    # --- classic bugs of the kind
    Mutant(
        name="shifted-domain-not-flipped",
        kind="bug",
        guards="the shifted test set is drawn with beta_shift (the cue's sign flips), not the training domain's",
        file=SCM,
        find="sample(n_test, beta_shift,",
        replace="sample(n_test, beta_train,",
        killers=(GENERALISES, f"{TESTS}::test_tables_are_a_function_of_the_seed_with_disjoint_streams"),
    ),
    Mutant(
        name="shifted-test-rows-reach-training",
        kind="bug",
        guards="discovery and BC see only the training domain's demonstrations (test data reaching training)",
        file=COMPONENT,
        find='    features, action = tables["train"]\n',
        replace='    features, action = (np.concatenate([tables[k][i] for k in ("train", "test_shift_domain")]) '
        "for i in (0, 1))\n",
        killers=(GENERALISES,),
    ),
    Mutant(
        name="shift-metric-on-train-domain",
        kind="bug",
        guards="the shifted-domain MSE is measured on the shifted domain's test set (a metric on the wrong split)",
        file=COMPONENT,
        find='mse_shift_domain"] = policy.mse(trained, *tables["test_shift_domain"])',
        replace='mse_shift_domain"] = policy.mse(trained, *tables["test_train_domain"])',
        killers=(GENERALISES,),
    ),
    Mutant(
        name="action-column-off-by-one",
        kind="bug",
        guards="the action is the last column of [X | A]: reading the edges of the column before it is an off-by-one",
        file=DISCOVERY,
        find="edges_at_action(graph, len(names))",
        replace="edges_at_action(graph, len(names) - 1)",
        killers=(PAPER_PATH, RECOVERY),
    ),
    Mutant(
        name="policy-columns-shifted",
        kind="bug",
        guards="a trained policy reads the same feature columns it was fitted on",
        file=POLICY,
        find="return (features[:, list(self.columns)] - self.mean) / self.scale",
        replace="return (features[:, [c - 1 for c in self.columns]] - self.mean) / self.scale",
        killers=(GENERALISES,),
    ),
    Mutant(
        name="seed-ignored-by-the-generator",
        kind="bug",
        guards="the demonstrations are a function of the run's seed (five seeds are five draws, §6)",
        file=SCM,
        find="np.random.default_rng([seed, 0])",
        replace="np.random.default_rng([0, 0])",
        killers=(f"{TESTS}::test_tables_are_a_function_of_the_seed_with_disjoint_streams",),
    ),
    Mutant(
        name="gradients-accumulate-across-steps",
        kind="bug",
        guards="each full-batch Adam step uses that step's gradient alone (state leaking between batches)",
        file=POLICY,
        find="        optimizer.zero_grad()\n",
        replace="",
        killers=(f"{TESTS}::test_smoke_mlp_generalises",),
    ),
]
