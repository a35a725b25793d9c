"""Mutants of hypergraph (relational learning as hypergraph recovery): see tests/mutants/harness.py.

Written from /work/shared/papers/hypergraph.md: the read-out of hyperedges as unordered token sets (§3.2, §8),
the comparison with the relabelled truth w0 o phi^-1 (§3.2, §8), an estimator that learns from the data
(§3.4's rate), alignment by matching the two modalities' recovered hypergraphs (§3.5); then the classic bugs
of an evaluation harness: TV on the wrong support, an off-by-one in the key encoding, a metric against the
wrong truth, a miscounted success, state leaking between runs, samples that ignore the weights."""

from tests.mutants.harness import Mutant

COMPONENT = "components/hypergraph/component.py"
ESTIMATORS = "components/hypergraph/estimators.py"
WORLD = "components/hypergraph/world.py"
MM = "components/hypergraph/mm.py"
TESTS = "tests/components/test_hypergraph.py"
RATE = f"{TESTS}::test_rate_has_slope_minus_half_and_the_predicted_constant"
EXACT = f"{TESTS}::test_exact_recovery_follows_the_coupon_prediction"
ALIGN = f"{TESTS}::test_alignment_rises_to_one_and_the_symmetric_control_does_not"
KEYS = f"{TESTS}::test_set_keys_ignore_order_and_round_trip"
CORPUS = f"{TESTS}::test_corpus_emits_members_through_phi_in_uniform_order"
TV = f"{TESTS}::test_tv_counts_false_positive_mass_and_f1_uses_the_threshold"
RESUME = f"{TESTS}::test_grid_resumes_from_its_finished_cells"
MM_CHECK = f"{TESTS}::test_masked_model_read_out_improves_with_data_and_nears_the_counts"
MM_UNIT = f"{TESTS}::test_masks_include_the_all_masked_case_and_read_out_sums_orders"

MUTANTS = [
    # --- contributions: recovery of the hypergraph from the data distribution, and alignment by it
    Mutant(
        name="order-sensitive-keys",
        kind="contribution",
        guards="a sample is an unordered set: order-sensitive keys split each hyperedge into k! atoms (§8)",
        file=ESTIMATORS,
        find="ordered = np.sort(np.where(rows == PAD, n, rows), axis=1)",
        replace="ordered = np.where(rows == PAD, n, rows)",
        killers=(KEYS, RATE),
    ),
    Mutant(
        name="estimator-ignores-counts",
        kind="contribution",
        guards="the read-out is the MLE of the sample distribution; a uniform-over-seen stub misses the rate (§6 check 1)",
        file=ESTIMATORS,
        find="return Recovered(keys, counts / len(corpus))",
        replace="return Recovered(keys, np.full(len(keys), 1 / len(keys)))",
        killers=(RATE,),
    ),
    Mutant(
        name="truth-not-relabelled-by-phi",
        kind="contribution",
        guards="identifiability is up to phi: the recovered hypergraph is compared with w0 o phi^-1 (§3.2, §8)",
        file=ESTIMATORS,
        find="tokens = np.where(world.members == PAD, PAD, phi[np.maximum(world.members, 0)])",
        replace="tokens = world.members",
        killers=(CORPUS, RATE),
    ),
    Mutant(
        name="alignment-matches-a-modality-with-itself",
        kind="contribution",
        guards="alignment matches the two modalities' recovered hypergraphs (§3.5 steps 2-3)",
        file=COMPONENT,
        find="match, cost = align.hungarian(sig1, sig2)",
        replace="match, cost = align.hungarian(sig1, sig1)",
        killers=(ALIGN,),
    ),
    Mutant(
        name="mm-never-fully-masked",
        kind="contribution",
        guards="MM trains with 1..k masked positions: without the all-masked case the chain rule's marginal is "
        "untrained (§8)",
        file=MM,
        find="count = torch.randint(1, length + 1, (batch, 1), generator=generator)",
        replace="count = torch.randint(1, length, (batch, 1), generator=generator)",
        killers=(MM_UNIT, MM_CHECK),
    ),
    Mutant(
        name="mm-read-out-one-order-only",
        kind="contribution",
        guards="the chain-rule read-out sums the k! orders of a set (§3.2): one order recovers w / k!",
        file=MM,
        find="distinct = np.all(ordered[:, 1:] != ordered[:, :-1], axis=1)",
        replace="distinct = np.all(rows[:, 1:] > rows[:, :-1], axis=1)",
        killers=(MM_UNIT, MM_CHECK),
    ),
    # --- classic bugs
    Mutant(
        name="tv-on-true-support-only",
        kind="bug",
        guards="TV sums over the union of supports: false-positive mass counts (§3.3, §8)",
        file=ESTIMATORS,
        find='"tv": 0.5 * float(diff.sum()),',
        replace='"tv": 0.5 * float(diff[w_true > 0].sum()),',
        killers=(TV,),
    ),
    Mutant(
        name="key-base-off-by-one",
        kind="bug",
        guards="set keys are digits in base n + 1 (PAD is the digit n): base n makes sets collide",
        file=ESTIMATORS,
        find="keys = keys * (n + 1) + ordered[:, column]",
        replace="keys = keys * n + ordered[:, column]",
        killers=(KEYS,),
    ),
    Mutant(
        name="alignment-scored-against-phi1-alone",
        kind="bug",
        guards="the metric compares pi_hat with the true map phi2 o phi1^-1, not with one modality's labels",
        file=COMPONENT,
        find="phi2[np.argsort(phi1)]",
        replace="np.argsort(phi1)",
        count=2,
        killers=(ALIGN,),
    ),
    Mutant(
        name="exact-recovery-counts-unseen-edges",
        kind="bug",
        guards="exact recovery needs every hyperedge observed at least once (count > 0), §3.4",
        file=ESTIMATORS,
        find="return float(np.mean(np.all(counts > 0, axis=1)))",
        replace="return float(np.mean(np.all(counts >= 0, axis=1)))",
        killers=(EXACT,),
    ),
    Mutant(
        name="finished-cells-leak-across-runs",
        kind="bug",
        guards="a resumed grid reuses only cells of the same config and seed; never another run's state",
        file=COMPONENT,
        find='return saved["cells"] if saved.get("identity") == identity else {}',
        replace='return saved["cells"]',
        killers=(RESUME,),
    ),
    Mutant(
        name="samples-ignore-weights",
        kind="bug",
        guards="a sample draws e ~ Categorical(w0), not uniformly over the hyperedges (§3.1)",
        file=WORLD,
        find="rng.choice(world.size, size=samples, p=world.weights)",
        replace="rng.choice(world.size, size=samples)",
        killers=(CORPUS, RATE),
    ),
    Mutant(
        name="mm-gradients-not-zeroed",
        kind="bug",
        guards="gradients are cleared every step (state leaking between batches)",
        file=MM,
        find="        optimizer.zero_grad(set_to_none=True)\n",
        replace="",
        killers=(MM_CHECK,),
    ),
]
