"""Mutants of ekan (Equivariant Kolmogorov-Arnold Networks, ekan.md): see tests/mutants/harness.py."""

from tests.mutants.harness import Mutant

MODELS = "components/ekan/models.py"
REPS = "components/ekan/reps.py"
SPLINE = "components/ekan/spline.py"
COMPONENT = "components/ekan/component.py"
TESTS = "tests/components/test_ekan.py::"

MUTANTS = [
    # --- contributions (ekan.md §3.1-3.3 and the pitfalls of §8) ---
    Mutant(
        name="basis-on-raw-coordinates",
        kind="contribution",
        guards="splines are evaluated on invariant gate scalars, not on the (non-invariant) coordinates of a block",
        file=REPS,
        find="                index[offset : offset + size] = gate\n",
        replace="                index[offset : offset + size] = np.arange(offset, offset + size)\n",
        killers=(TESTS + "test_each_block_reads_the_basis_functions_of_its_own_gate",),
    ),
    Mutant(
        name="blocks-share-one-gate",
        kind="contribution",
        guards="each non-scalar block reads the basis functions of its OWN gate scalar (gate counter advanced)",
        file=REPS,
        find="                index[offset : offset + size] = gate\n                gate += 1\n",
        replace="                index[offset : offset + size] = gate\n",
        killers=(TESTS + "test_each_block_reads_the_basis_functions_of_its_own_gate",),
    ),
    Mutant(
        name="features-not-times-channel",
        kind="contribution",
        guards="gated basis features f_ji = psi_j(s_g(i)) * x_i: every copy transforms like rho_in",
        file=MODELS,
        find="return psi[:, self.channel_gate].transpose(1, 2) * h[:, None, : self.n_in]",
        replace="return psi[:, self.channel_gate].transpose(1, 2)",
        killers=(TESTS + "test_gated_features_are_splines_and_silu_of_the_gate_times_the_channel",),
    ),
    Mutant(
        name="hom-without-dual",
        kind="contribution",
        guards="Hom(rho_in, rho_out) = rho_out ⊗ rho_in* (V* != V for the Lorentz groups)",
        file=REPS,
        find="return kinds_of(out_block) + dual_kinds(kinds_of(in_block))",
        replace="return kinds_of(out_block) + kinds_of(in_block)",
        killers=(TESTS + "test_projected_weights_are_equivariant_and_projector_idempotent[SO13p]",),
    ),
    Mutant(
        name="projected-once-at-init",
        kind="contribution",
        guards="raw weights are projected on EVERY forward, so training cannot move W out of the equivariant subspace",
        file=MODELS,
        find=(
            "        raw = self.weight.view(self.n_out, self.copies, self.n_in).transpose(0, 1)\n"
            "        return self.project_weight(raw), self.project_bias(self.bias[:, None])[:, 0]\n"
        ),
        replace=(
            "        raw = self.weight.view(self.n_out, self.copies, self.n_in).transpose(0, 1)\n"
            "        if not getattr(self, '_initialised', False):  # project the raw init once, then train it freely\n"
            "            self._initialised = True\n"
            "            with torch.no_grad():\n"
            "                self.set_projected(raw.clone())\n"
            "                self.bias.copy_(self.project_bias(self.bias[:, None])[:, 0])\n"
            "        return raw, self.bias\n"
        ),
        killers=(TESTS + "test_projection_every_forward_keeps_training_equivariant",),
    ),
    Mutant(
        name="layer-bilinear-residual-dropped",
        kind="contribution",
        guards="each EKAN layer adds EMLP's bilinear residual y + 0.1 W_bi(y) y",
        file=MODELS,
        find="""        y = torch.einsum("bki,koi->bo", self.features(h), W) + b
        if self.bilinear is not None:
            y = y + BILINEAR_SCALE * self.bilinear(y)""",
        replace="""        y = torch.einsum("bki,koi->bo", self.features(h), W) + b""",
        killers=(TESTS + "test_layer_adds_the_bilinear_residual_to_the_projected_linear_map",),
    ),
    Mutant(
        name="base-function-identity",
        kind="contribution",
        guards="the K-th basis function is SiLU(s) (pykan's base function), after the G + k B-splines",
        file=SPLINE,
        find="F.silu(x).unsqueeze(-1)",
        replace="x.unsqueeze(-1)",
        killers=(TESTS + "test_gated_features_are_splines_and_silu_of_the_gate_times_the_channel",),
    ),
    Mutant(
        name="grid-update-without-refit",
        kind="contribution",
        guards="a grid update refits W by least squares so the layer's outputs on the batch are kept",
        file=MODELS,
        find="        self.linear.set_projected(refit.reshape(-1, self.basis_count, self.n_in).transpose(0, 1))\n",
        replace="",
        killers=(TESTS + "test_grid_update_fits_a_uniform_grid_to_the_batch_and_keeps_the_outputs",),
    ),
    Mutant(
        name="grid-update-quantile-not-uniform",
        kind="contribution",
        guards="EKAN's grid_eps = 1: a grid update gives a UNIFORM grid over [min - 0.01, max + 0.01]",
        file=SPLINE,
        find="return eps * uniform + (1 - eps) * adaptive",
        replace="return adaptive",
        killers=(TESTS + "test_grid_update_fits_a_uniform_grid_to_the_batch_and_keeps_the_outputs",),
    ),
    Mutant(
        name="null-space-in-float32",
        kind="contribution",
        guards="equivariant bases are solved in float64 (a float32 solve leaves ~1e-7 errors in Q, so in every W)",
        file=REPS,
        find="    gram = np.zeros((D, D))\n",
        replace="    gram = np.zeros((D, D), dtype=np.float32)\n",
        killers=(TESTS + "test_null_space_bases_are_solved_to_float64_accuracy",),
    ),
    # --- classic bugs of the kind ---
    Mutant(
        name="trains-on-test-split",
        kind="bug",
        guards="the optimizer only ever sees training rows (no test inputs in a training batch)",
        file=COMPONENT,
        find='x, y = data["train_x"][index], data["train_y"][index]',
        replace='x, y = data["test_x"][index], data["test_y"][index]',
        killers=(TESTS + "test_run_trains_on_training_rows_on_schedule_and_scores_each_split",),
    ),
    Mutant(
        name="grid-update-on-test-inputs",
        kind="bug",
        guards="grid updates (a fit to the data range) see training inputs only, never the test split",
        file=COMPONENT,
        find="            net.update_grids(x)  # the whole global batch",
        replace='            net.update_grids(data["test_x"][: len(x)])  # the whole global batch',
        killers=(TESTS + "test_run_trains_on_training_rows_on_schedule_and_scores_each_split",),
    ),
    Mutant(
        name="test-split-reseeded-equals-train",
        kind="bug",
        guards="procedural train and test inputs are disjoint draws (a re-seeded test draw repeats the train rows)",
        file="components/ekan/data.py",
        find="    test = rng.standard_normal((n_test, dim)) * scale\n",
        replace="    test = np.random.default_rng(seed).standard_normal((n_test, dim)) * scale\n",
        killers=(TESTS + "test_procedural_splits_are_disjoint_and_follow_the_seed",),
    ),
    Mutant(
        name="budget-threshold-off-by-one",
        kind="bug",
        guards="particle runs: 7000 steps for N <= 316, 15000 above (the run scripts' budget)",
        file="components/ekan/config.py",
        find='data["steps"] = 7000 if isinstance(n, int) and n <= 316 else 15000',
        replace='data["steps"] = 7000 if isinstance(n, int) and n < 316 else 15000',
        killers=(TESTS + "test_particle_step_budget_follows_the_run_scripts",),
    ),
    Mutant(
        name="grid-update-schedule-off-by-one",
        kind="bug",
        guards="grid refits every stop/num steps during the first stop_grid_update_step steps only (step < stop)",
        file=COMPONENT,
        find="step % refit_every == 0 and step < cfg.stop_grid_update_step",
        replace="step % refit_every == 0 and step <= cfg.stop_grid_update_step",
        killers=(TESTS + "test_run_trains_on_training_rows_on_schedule_and_scores_each_split",),
    ),
    Mutant(
        name="uniform-rep-seed-ignored",
        kind="bug",
        guards="hidden reps come from a RandomState seeded with the run's seed (counts reproducible: 34,014)",
        file=COMPONENT,
        find="allocation = np.random.RandomState(seed)",
        replace="allocation = np.random.RandomState()",
        killers=(TESTS + "test_hidden_reps_are_drawn_with_the_run_seed",),
    ),
    Mutant(
        name="equivariance-error-uncentred",
        kind="bug",
        guards="the equivariance error is normalised by the CENTRED output spread (a near-constant model cannot hide)",
        file=COMPONENT,
        find="spread = torch.sum((fx - fx.mean(0)) ** 2).item()",
        replace="spread = torch.sum(fx**2).item()",
        killers=(TESTS + "test_equivariance_metric_is_normalised_by_the_centred_output",),
    ),
    Mutant(
        name="test-metric-from-train-split",
        kind="bug",
        guards="test/mse is the trained model's MSE on the TEST split (not the training MSE reported under its name)",
        file=COMPONENT,
        find='        "test/mse": test_mse,\n',
        replace='        "test/mse": train_mse,\n',
        killers=(TESTS + "test_run_trains_on_training_rows_on_schedule_and_scores_each_split",),
    ),
    Mutant(
        name="particle-test-size-not-n",
        kind="bug",
        guards="particle runs test on N fresh samples, N_test = N_train (the run scripts), at every N of the grid",
        file="components/ekan/config.py",
        find='data["n_test"] = {"particle": data["n_train"], "o2_toy": 1000, "three_body": None}[task]',
        replace='data["n_test"] = {"particle": 1000, "o2_toy": 1000, "three_body": None}[task]',
        killers=(TESTS + "test_paper_preset_resolves_to_the_run_scripts_numbers",),
    ),
]
