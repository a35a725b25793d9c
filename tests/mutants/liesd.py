"""Mutants of liesd (LieSD, symmetry discovery from a trained network's Jacobians): see tests/mutants/harness.py.

Written from liesd.md (§3.1-3.4 the forms, the gap rule and the metric; §4 the data; §8 the pitfalls) and the
component's code: one mutant per claim of the method, and one per classic bug the component has room for.
"""

from tests.mutants.harness import Mutant

SYSTEMS = "components/liesd/systems.py"
DISCOVERY = "components/liesd/discovery.py"
EVALUATION = "components/liesd/evaluation.py"
TASKS = "components/liesd/tasks.py"
COMPONENT = "components/liesd/component.py"

MUTANTS = [
    # ------------------------------------------------------------ the paper's contributions
    Mutant(
        name="tensor-b2-acts-untransposed",
        kind="contribution",
        guards="the tensor form's two-sided action F -> B1 F + F B2^T (§3.3): rows for F B2 lose so(3)",
        file=SYSTEMS,
        find='rows_b2 = torch.einsum("sa,brq->brsaq", eye2, f)',
        replace='rows_b2 = torch.einsum("sq,bra->brsaq", eye2, f)',
        killers=("tests/components/test_liesd.py::test_exact_inertia_tensor_form_has_exactly_five_null_directions",),
    ),
    Mutant(
        name="multichannel-a-column-major",
        kind="contribution",
        guards="the shared-A multichannel/vector rows use row-major vec(A): J A x = (J kron x^T) vec(A) (§3.1, §8)",
        file=SYSTEMS,
        find='rows_a = -torch.einsum("bkpli,blj->bkpij", jac, x)',
        replace='rows_a = -torch.einsum("bkpli,blj->bkpji", jac, x)',
        killers=(
            "tests/components/test_liesd.py::test_exact_equivariant_multichannel_function_gives_rotation_in_every_form",
        ),
    ),
    Mutant(
        name="gauge-not-skipped-by-gap-rule",
        kind="contribution",
        guards="the gap rule ignores the tensor form's exact gauge zero (§3.4, §8): otherwise D = 1, not 5",
        file=DISCOVERY,
        find="systems.gap_rule(spectrum.sigma, skip=layout.gauge, j_max=gap_max)",
        replace="systems.gap_rule(spectrum.sigma, skip=0, j_max=gap_max)",
        killers=("tests/components/test_liesd.py::test_discover_skips_the_gauge_and_returns_the_smallest_sigma_bases",),
    ),
    Mutant(
        name="bases-from-largest-sigma",
        kind="contribution",
        guards="the discovered bases are the singular vectors of the SMALLEST sigma (§3.1), not the largest",
        file=DISCOVERY,
        find="return self.spectrum.vectors[:, : self.used].T",
        replace="return self.spectrum.vectors[:, -self.used :].T",
        killers=("tests/components/test_liesd.py::test_discover_skips_the_gauge_and_returns_the_smallest_sigma_bases",),
    ),
    Mutant(
        name="kronecker-sum-wrong-order",
        kind="contribution",
        guards="the metric compares the tensor form's output part as B1 kron I + I kron B2 (§3.4), the action on vec F",
        file=TASKS,
        find="return np.kron(b1, np.eye(b2.shape[-1])) + np.kron(np.eye(b1.shape[-1]), b2)",
        replace="return np.kron(b1, np.eye(b2.shape[-1])) + np.kron(b2, np.eye(b1.shape[-1]))",
        killers=("tests/components/test_liesd.py::test_kronecker_sum_is_the_two_sided_action_on_row_major_vec",),
    ),
    Mutant(
        name="error-space-one-sided",
        kind="contribution",
        guards="error_space is the residual BOTH ways (§3.4): a basis missing true generators must not score 0",
        file=EVALUATION,
        find="return residual(r, v) + residual(v, r)",
        replace="return residual(r, v)",
        killers=("tests/components/test_liesd.py::test_subspace_error_counts_missing_and_extra_directions",),
    ),
    Mutant(
        name="non-uniform-rotates-inputs-only",
        kind="contribution",
        guards="the non-uniform two-body set rotates inputs AND targets (§4): the data lose symmetry, the map keeps it",
        file=TASKS,
        find="x[chosen], y[chosen] = rotate_quarter(x[chosen]), rotate_quarter(y[chosen])",
        replace="x[chosen] = rotate_quarter(x[chosen])",
        killers=("tests/components/test_liesd.py::test_non_uniform_split_rotates_pairs_into_quadrants_two_and_four",),
    ),
    # ------------------------------------------------------------ classic bugs of the kind
    Mutant(
        name="gram-accumulated-in-float32",
        kind="bug",
        guards="G is accumulated in float64 (§3.5, §8): float32 lifts the null singular values off zero",
        file=SYSTEMS,
        find="blocks = blocks.to(torch.float64)",
        replace="blocks = blocks.to(torch.float32)",
        killers=("tests/components/test_liesd.py::test_gram_is_accumulated_in_float64",),
    ),
    Mutant(
        name="gram-keeps-last-chunk-only",
        kind="bug",
        guards="G sums C_i^T C_i over EVERY discovery chunk: the state carried between batches must not be dropped",
        file=DISCOVERY,
        find="total = part if total is None else total + part",
        replace="total = part",
        killers=("tests/components/test_liesd.py::test_gram_matrix_does_not_depend_on_the_chunk_size",),
    ),
    Mutant(
        name="test-orbits-in-training",
        kind="bug",
        guards="the held-out two-body orbits (HNN's 20 % test split) never reach the training set",
        file=COMPONENT,
        find="train = tasks.two_body_split(orbits[held_out:], data.non_uniform)",
        replace="train = tasks.two_body_split(orbits, data.non_uniform)",
        killers=("tests/components/test_liesd.py::test_make_data_keeps_test_apart_and_follows_the_seed",),
    ),
    Mutant(
        name="test-metric-on-train-split",
        kind="bug",
        guards="test_rel_mse is measured on the held-out split, not on the training data",
        file=COMPONENT,
        find='metrics["test_rel_mse"] = relative_mse(model, data["test"], ctx.device)[1]',
        replace='metrics["test_rel_mse"] = relative_mse(model, data["train"], ctx.device)[1]',
        killers=("tests/components/test_liesd.py::test_reported_errors_are_measured_on_their_own_splits",),
    ),
    Mutant(
        name="data-seed-ignored",
        kind="bug",
        guards="the procedural data are drawn from the run's seed: seeds are independent replicates",
        file=COMPONENT,
        find="rng = np.random.default_rng(seed)",
        replace="rng = np.random.default_rng(0)",
        killers=("tests/components/test_liesd.py::test_make_data_keeps_test_apart_and_follows_the_seed",),
    ),
    Mutant(
        name="two-body-target-two-steps-ahead",
        kind="bug",
        guards="the two-body pairs are ONE-step (state_t, state_t+1), 48 per 50-step orbit (off-by-one in the step)",
        file=TASKS,
        find="y = orbits[:, 1 : steps - 1].reshape(-1, 4, 2)",
        replace="y = orbits[:, 2:steps].reshape(-1, 4, 2)",
        killers=("tests/components/test_liesd.py::test_two_body_pairs_are_one_step_within_each_orbit",),
    ),
    Mutant(
        name="epochs-ignore-the-task",
        kind="bug",
        guards="an unset epochs takes the official count of the run's task (two-body 10, not inertia's 100)",
        file="components/liesd/config.py",
        find='data = {**data, "epochs": PAPER_EPOCHS[task]}',
        replace='data = {**data, "epochs": PAPER_EPOCHS["inertia"]}',
        killers=("tests/components/test_liesd.py::test_paper_preset_resolves_to_the_official_commands",),
    ),
]
