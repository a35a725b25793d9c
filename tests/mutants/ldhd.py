"""Mutants of ldhd (LDHD / RPE-Square): see tests/mutants/harness.py.

Written from /work/shared/papers/ldhd.md: the min-degree interpolator and what decides it (GD from zero, the
projection V, the Toeplitz tying of RPE; §3.1-3.2, §8), RPE-Square's anchors (§3.4); then the classic bugs of a
length-generalisation trainer (test lengths in training, a loss on the prompt, an off-by-one in the mask or in the
in-domain boundary, the final carry dropped, the same batch every step, a metric on the wrong lengths)."""

from tests.mutants.harness import Mutant

BOOLEAN = "components/ldhd/boolean.py"
COPY = "components/ldhd/copy_attention.py"
TASKS = "components/ldhd/tasks.py"
COMPONENT = "components/ldhd/component.py"
TESTS = "tests/components/test_ldhd.py"

MUTANTS = [
    Mutant(
        name="mdi-freezes-to-minus-one",
        kind="contribution",
        guards="the MDI from D_N0 is f(x_1..x_N0, +1, ..., +1): the frozen value is the padding value (§3.1, §8)",
        file=BOOLEAN,
        find="        frozen[:, n0:] = 1.0",
        replace="        frozen[:, n0:] = -1.0",
        killers=(f"{TESTS}::test_check1_random_features_learn_the_min_degree_interpolator",),
    ),
    Mutant(
        name="rf-output-weights-random-init",
        kind="contribution",
        guards="GD from zero output weights = min-norm interpolation = the MDI; a random start adds a non-MDI part (§8)",
        file=BOOLEAN,
        find="    return feature_map(test_x) @ (phi.T @ dual)",
        replace=(
            "    start = rng.normal(0.0, 1.0, (features,) + np.shape(train_y)[1:])\n"
            "    dual = np.linalg.pinv(phi @ phi.T, hermitian=True) @ (train_y - phi @ start)\n"
            "    return feature_map(test_x) @ (start + phi.T @ dual)"
        ),
        killers=(f"{TESTS}::test_check1_random_features_learn_the_min_degree_interpolator",),
    ),
    Mutant(
        name="rfmp-projection-not-aligned",
        kind="contribution",
        guards="RFMP: a projection aligned with the symmetric target makes LDHD generalisation possible (§3.2)",
        file=BOOLEAN,
        find='("aligned", np.ones((1, n)) / np.sqrt(n))',
        replace='("aligned", np.eye(n))',
        killers=(f"{TESTS}::test_check2_aligned_projection_generalises_identity_does_not",),
    ),
    Mutant(
        name="plaa-rpe-untied",
        kind="contribution",
        guards="RPE shares A_ij = r(j - i) (Toeplitz): the MDI w.r.t. its set counts pairs at any length (§3.2)",
        file=BOOLEAN,
        find="plaa_test_mse(plaa_fit(n, n0, True, steps, batch, lr, seed))",
        replace="plaa_test_mse(plaa_fit(n, n0, False, steps, batch, lr, seed))",
        killers=(f"{TESTS}::test_check3_plaa_rpe_counts_pairs_at_any_length_ape_does_not",),
    ),
    Mutant(
        name="rpe-square-answer-anchored-at-bos",
        kind="contribution",
        guards="RPE-Square measures the answer's offsets from its own anchor '=', not from BOS (§3.4)",
        file=COPY,
        find="        query_relative = query_position - (n + 1)  # offset from '='",
        replace="        query_relative = query_position  # offset from BOS",
        killers=(f"{TESTS}::test_check4_rpe_square_copies_at_every_length_rpe_cannot",),
    ),
    Mutant(
        name="equals-not-an-anchor",
        kind="contribution",
        guards="'=' is an RPE-Square anchor in the decoder, so the source offset is constant at every length (§3.4, §8)",
        file=TASKS,
        find="ANCHORS = (BOS, PLUS, EQUALS)",
        replace="ANCHORS = (BOS, PLUS)",
        killers=(f"{TESTS}::test_rpe_square_hard_anchors_make_the_source_offset_constant",),
    ),
    Mutant(
        name="test-lengths-in-training",
        kind="bug",
        guards="training draws lengths <= train_max_length only (test data reaching training)",
        file=COMPONENT,
        find="tasks.training_batch(cfg.task, rng, per_rank, cfg.train_max_length)",
        replace="tasks.training_batch(cfg.task, rng, per_rank, cfg.test_max_length)",
        killers=(f"{TESTS}::test_training_sees_short_fresh_batches_only",),
    ),
    Mutant(
        name="same-batch-every-step",
        kind="bug",
        guards="every step draws a fresh batch (state leaking between batches: one batch memorised)",
        file=COMPONENT,
        find="rng = np.random.default_rng([ctx.seed, step, ctx.rank])",
        replace="rng = np.random.default_rng([ctx.seed, 0, ctx.rank])",
        killers=(f"{TESTS}::test_training_sees_short_fresh_batches_only",),
    ),
    Mutant(
        name="loss-on-the-prompt",
        kind="bug",
        guards="the loss covers the answer digits and EOS only (§3.6: loss only on the answer)",
        file=TASKS,
        find="        mask[row, len(prompt) - 1 : len(prompt) + len(answer) - 1] = True",
        replace="        mask[row, : len(prompt) + len(answer) - 1] = True",
        killers=(f"{TESTS}::test_loss_mask_covers_the_answer_and_eos_only",),
    ),
    Mutant(
        name="answer-mask-off-by-one",
        kind="bug",
        guards="the first answer digit is a target (an off-by-one drops it)",
        file=TASKS,
        find="        mask[row, len(prompt) - 1 : len(prompt) + len(answer) - 1] = True",
        replace="        mask[row, len(prompt) : len(prompt) + len(answer) - 1] = True",
        killers=(f"{TESTS}::test_loss_mask_covers_the_answer_and_eos_only",),
    ),
    Mutant(
        name="final-carry-dropped",
        kind="bug",
        guards="URF answers keep the final carry (§8: the answer can be one digit longer than the longer operand)",
        file=TASKS,
        find="[*reversed_digits(a + b), EOS]",
        replace="[*reversed_digits((a + b) % 10 ** max(n, m)), EOS]",
        killers=(f"{TESTS}::test_task_formats",),
    ),
    Mutant(
        name="in-domain-boundary-off-by-one",
        kind="bug",
        guards="acc_in_domain includes the training length itself (an off-by-one moves it to the OOD side)",
        file=COMPONENT,
        find="if length <= train_max]",
        replace="if length < train_max]",
        killers=(f"{TESTS}::test_summary_splits_at_the_training_length",),
    ),
    Mutant(
        name="evaluated-on-training-lengths",
        kind="bug",
        guards="the test set covers every length to test_max_length (a metric on the wrong split: in-domain only)",
        file=COMPONENT,
        find="tasks.test_set(cfg.task, seed, cfg.test_max_length, cfg.eval_per_length)",
        replace="tasks.test_set(cfg.task, seed, cfg.train_max_length, cfg.eval_per_length)",
        killers=(f"{TESTS}::test_exact_match_needs_every_digit_and_eos",),
    ),
    Mutant(
        name="test-lengths-not-exact",
        kind="bug",
        guards="a test instance of length L has an operand of exactly L digits (else OOD scores mix in short ones)",
        file=TASKS,
        find="(length, *example(task, rng, length, exact=True))",
        replace="(length, *example(task, rng, length, exact=False))",
        killers=(f"{TESTS}::test_test_set_has_every_length_exactly",),
    ),
]
