"""Mutants of di_sindy (see tests/mutants/harness.py).

Written from /work/shared/papers/di_sindy.md: the invariant library and its target (§3.2-3.3), the prolongation
that Route B rests on, the STLSQ threshold in original units (§3.4, §8), the fields data stage; then the classic
bugs of the kind: a held-out trajectory reaching the regression, a metric on the wrong split, a time off-by-one,
noise draws ignoring the seed or shared between trials, noise not relative to the field."""

from tests.mutants.harness import Mutant

INVARIANTS = "components/di_sindy/invariants.py"
REGRESSION = "components/di_sindy/regression.py"
COMPONENT = "components/di_sindy/component.py"
DERIVATIVES = "components/di_sindy/derivatives.py"
READER = "components/core/fields.py"
SOURCE = "pipelines/datasets/fields.py"
TESTS = "tests/components/test_di_sindy.py"
DATA_TESTS = "tests/pipelines/test_prepare_fields.py"

MUTANTS = [
    # --- contributions: the invariant library, its target and the solver behind it
    Mutant(
        name="target-without-u-ux",
        kind="contribution",
        guards="the target invariant is the convective derivative u_t + (1/c) u u_x, not u_t (check 3's wrong target)",
        file=INVARIANTS,
        find="return {U_T: 1.0, with_time((1, 1, 0, 0, 0)): 1.0 / galilean_c}",
        replace="return {U_T: 1.0}",
        killers=(f"{TESTS}::test_recovers_each_pde_on_clean_data", f"{TESTS}::test_route_a_closed_forms_equal_route_b"),
    ),
    Mutant(
        name="galilean-coefficient-not-inverted",
        kind="contribution",
        guards="for the boost t d_x + c d_u the target is u_t + (1/c) u u_x (§8's first pitfall)",
        file=INVARIANTS,
        find="with_time((1, 1, 0, 0, 0)): 1.0 / galilean_c}",
        replace="with_time((1, 1, 0, 0, 0)): galilean_c}",
        killers=(f"{TESTS}::test_target_follows_the_galilean_coefficient",),
    ),
    Mutant(
        name="u-in-the-galilean-library",
        kind="contribution",
        guards="u itself is not a Galilean invariant: the DI library holds only u_x, u_xx, ... (§3.2, check 2)",
        file=INVARIANTS,
        find="first = 1 if galilean_c is not None else 0",
        replace="first = 0",
        killers=(
            f"{TESTS}::test_di_features_are_invariant_under_a_boost_and_raw_ones_are_not",
            f"{TESTS}::test_route_a_closed_forms_equal_route_b",
        ),
    ),
    Mutant(
        name="scaling-weight-sign",
        kind="contribution",
        guards="the scaling weight of u_{jx} is beta - j a (the relative-invariant filter of §3.2)",
        file=INVARIANTS,
        find="per_variable = [beta - j * a for j in range(len(JET))]",
        replace="per_variable = [beta + j * a for j in range(len(JET))]",
        killers=(f"{TESTS}::test_route_a_closed_forms_equal_route_b",),
    ),
    Mutant(
        name="characteristic-sign",
        kind="contribution",
        guards="the prolongation formula's characteristic Q = phi - xi u_x - tau u_t (Route B, check 1)",
        file=INVARIANTS,
        find="characteristic = gen.phi - gen.xi * jet_symbol(1, 0)",
        replace="characteristic = gen.phi + gen.xi * jet_symbol(1, 0)",
        killers=(
            f"{TESTS}::test_route_b_kdv_null_space_is_the_specs",
            f"{TESTS}::test_prolongation_of_the_kdv_generators",
        ),
    ),
    Mutant(
        name="threshold-on-normalised-coefficients",
        kind="contribution",
        guards="STLSQ thresholds coefficients in original units (§3.4 step 3, §8: not pysindy's normalize_columns)",
        file=REGRESSION,
        find="new_support = np.abs(xi) >= threshold",
        replace="new_support = np.abs(xi * np.linalg.norm(theta, axis=0)) >= threshold",
        killers=(f"{TESTS}::test_stlsq_thresholds_in_original_units", f"{TESTS}::test_stlsq_matches_pysindy"),
    ),
    Mutant(
        name="ridge-on-normalised-coefficients",
        kind="contribution",
        guards="the ridge penalises the raw coefficients, as pysindy's STLSQ(alpha) (parity)",
        file=REGRESSION,
        find="alpha * np.diag(1.0 / norms**2)",
        replace="alpha * np.eye(len(norms))",
        killers=(f"{TESTS}::test_stlsq_matches_pysindy",),
    ),
    # --- classic bugs of the kind
    Mutant(
        name="held-out-trajectory-in-train-split",
        kind="bug",
        guards="the held-out initial conditions (rollouts) never reach the regression trials (test data in training)",
        file=SOURCE,
        find='splits = {"train": fields[:train]}',
        replace='splits = {"train": fields}',
        killers=(f"{DATA_TESTS}::test_pde_fields_are_reproducible_with_a_manifest",),
    ),
    Mutant(
        name="rollout-scored-on-train",
        kind="bug",
        guards="rollout errors are measured on the held-out test split (a metric on the wrong split)",
        file=COMPONENT,
        find='data.arrays["test"][trial]',
        replace='data.arrays["train"][trial]',
        killers=(f"{TESTS}::test_trials_read_train_and_rollouts_test",),
    ),
    Mutant(
        name="u-t-one-slice-late",
        kind="bug",
        guards="u_t sits on the same time slices as the x-derivatives (an off-by-one in time)",
        file=DERIVATIVES,
        find='out["u_t"] = u_t[inner]',
        replace='out["u_t"] = u_t[trim + 1 : u.shape[0] - trim + 1]',
        killers=(f"{TESTS}::test_derivatives_are_aligned_in_time",),
    ),
    Mutant(
        name="noise-seed-ignored",
        kind="bug",
        guards="the noise draws follow the run's seed (trials over seeds are independent)",
        file=READER,
        find="rng = np.random.default_rng([seed, FIELD_SPLITS.index(split), index])",
        replace="rng = np.random.default_rng([0, FIELD_SPLITS.index(split), index])",
        killers=(f"{TESTS}::test_noise_draws_follow_the_seed", f"{DATA_TESTS}::test_noise_is_drawn_at_read_time"),
    ),
    Mutant(
        name="same-noise-every-trial",
        kind="bug",
        guards="each trajectory gets its own noise draw (state shared between trials)",
        file=READER,
        find="rng = np.random.default_rng([seed, FIELD_SPLITS.index(split), index])",
        replace="rng = np.random.default_rng([seed, FIELD_SPLITS.index(split)])",
        killers=(f"{DATA_TESTS}::test_noise_is_drawn_at_read_time",),
    ),
    Mutant(
        name="noise-not-relative",
        kind="bug",
        guards="noise is relative: std = noise x std(u) (§3.5's knob), so levels mean the same on every PDE",
        file=READER,
        find="return clean + noise * clean.std() * rng.standard_normal(clean.shape)",
        replace="return clean + noise * rng.standard_normal(clean.shape)",
        killers=(f"{DATA_TESTS}::test_noise_is_drawn_at_read_time",),
    ),
    Mutant(
        name="baseline-on-other-derivatives",
        kind="bug",
        guards="PDE-FIND is fitted on the identical (noisy) derivatives as DI-SINDy, not on cleaner ones (§3.4 baselines)",
        file=COMPONENT,
        find="            found[name].append(fit(cfg, lib, derivs))",
        replace=(
            "            clean = jets(data.trajectory('train', trial), data.dt, data.length)\n"
            "            found[name].append(fit(cfg, lib, derivs if name == 'di' else clean))"
        ),
        killers=(f"{TESTS}::test_trials_read_train_and_rollouts_test",),
    ),
]
