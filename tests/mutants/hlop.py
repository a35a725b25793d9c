"""Mutants of hlop: see tests/mutants/harness.py.

Written from /work/shared/papers/hlop.md: the lateral Hebbian/anti-Hebbian rule with frozen old rows (§3.2), the
projection of the presynaptic factor only (§3.3), the pitfalls of §8 (forward projected, old rows drifting,
centred moments, time-averaged rates), then the classic bugs of a continual-learning loop (splits, BWT, tasks)."""

from tests.mutants.harness import Mutant

SUBSPACE = "components/hlop/subspace.py"
PROJECTION = "components/hlop/projection.py"
MODEL = "components/hlop/model.py"
COMPONENT = "components/hlop/component.py"
CONFIG = "components/hlop/config.py"
CONTINUAL = "pipelines/datasets/continual.py"
TESTS = "tests/components/test_hlop.py"
DATA_TESTS = "tests/pipelines/test_prepare_continual.py"
CHECK_C = f"{TESTS}::test_hlop_forgets_far_less_than_sequential_fine_tuning"

MUTANTS = [
    # --- contributions: the lateral circuit's rule, its frozen old rows, the projected weight update
    Mutant(
        name="anti-hebbian-term-dropped",
        kind="contribution",
        guards="the anti-Hebbian feedback -y y^T H that makes Oja's rule converge to an orthonormal basis",
        file=SUBSPACE,
        find="y.T @ (x - y @ self.weight)",
        replace="y.T @ x",
        killers=(f"{TESTS}::test_oja_rule_recovers_the_principal_subspace_orthonormally",),
    ),
    Mutant(
        name="old-rows-keep-learning",
        kind="contribution",
        guards="rows learned on earlier tasks are frozen with their momentum (§8: old rows must not drift)",
        file=SUBSPACE,
        find="new = slice(self.old, self.size)",
        replace="new = slice(0, self.size)",
        killers=(f"{TESTS}::test_new_rows_learn_orthogonally_to_frozen_old_rows",),
    ),
    Mutant(
        name="new-rows-ignore-old-in-reconstruction",
        kind="contribution",
        guards="new rows learn the residual of the old subspace (Y over all rows), so they end orthogonal to it",
        file=SUBSPACE,
        find="            y = x @ self.weight.T\n",
        replace="            y = x @ self.weight.T\n            y[:, : self.old] = 0\n",
        killers=(f"{TESTS}::test_new_rows_learn_orthogonally_to_frozen_old_rows",),
    ),
    Mutant(
        name="centred-second-moment",
        kind="contribution",
        guards="the rule extracts the uncentred E[x x^T] (§8: the centred covariance breaks the projection guarantee)",
        file=SUBSPACE,
        find="x = activity.reshape(-1, self.dim).to(self.weight.dtype)",
        replace="x = activity.reshape(-1, self.dim).to(self.weight.dtype)\n        x = x - x.mean(dim=0)",
        killers=(f"{TESTS}::test_rule_extracts_the_uncentred_second_moment",),
    ),
    Mutant(
        name="forward-projected",
        kind="contribution",
        guards="the forward pass stays the plain network; only the weight gradient's presynaptic factor is projected",
        file=PROJECTION,
        find="        return x @ weight.T\n\n    @staticmethod",
        replace="        return (x - (x @ basis.T) @ basis) @ weight.T\n\n    @staticmethod",
        killers=(f"{TESTS}::test_projected_weight_gradient_is_orthogonal_to_the_old_subspace",),
    ),
    Mutant(
        name="weight-gradient-unprojected",
        kind="contribution",
        guards="grad W = g^T (x - H_o^T H_o x): no update component in the old tasks' span",
        file=PROJECTION,
        find="grad_weight = grad_output.T @ (x - (x @ basis.T) @ basis)",
        replace="grad_weight = grad_output.T @ x",
        killers=(f"{TESTS}::test_projected_weight_gradient_is_orthogonal_to_the_old_subspace",),
    ),
    Mutant(
        name="no-projection-in-training",
        kind="contribution",
        guards="HLOP's claim: projecting with the merged old subspace keeps old tasks (a stub HLOP forgets)",
        file=COMPONENT,
        find='model.bases = [s.old_basis() if method != "baseline" and s.old else None for s in subspaces]',
        replace="model.bases = [None for s in subspaces]",
        killers=(CHECK_C,),
    ),
    Mutant(
        name="hebbian-updates-never-run",
        kind="contribution",
        guards="H is learned by the lateral Hebbian rule (random orthogonal H does not protect old tasks)",
        file=COMPONENT,
        find='            if method == "hlop":  # Hebbian updates',
        replace='            if method == "never":  # Hebbian updates',
        killers=(CHECK_C,),
    ),
    Mutant(
        name="time-averaged-activity",
        kind="contribution",
        guards="in BPTT mode H learns from the spikes of every time step (§8: time-averaged rates forget)",
        file=MODEL,
        find="activities.append(x.detach())",
        replace="activities.append(x.detach().mean(dim=0, keepdim=True))",
        killers=(f"{TESTS}::test_forward_is_unchanged_by_the_projection_and_keeps_no_state",),
    ),
    # --- classic bugs of a continual-learning loop
    Mutant(
        name="evaluation-on-train-split",
        kind="bug",
        guards="the accuracy matrix is measured on each task's held-out split, not on what it trained on",
        file=COMPONENT,
        find="ImageShards(ctx.data_dir, cfg.dataset, splits[cfg.eval_split]),",
        replace='ImageShards(ctx.data_dir, cfg.dataset, splits["train"]),',
        killers=(f"{TESTS}::test_tasks_train_on_their_train_split_and_are_scored_on_the_test_split",),
    ),
    Mutant(
        name="test-split-reaches-training",
        kind="bug",
        guards="training reads only each task's train split",
        file=COMPONENT,
        find='ImageShards(ctx.data_dir, cfg.dataset, splits["train"]),',
        replace="ImageShards(ctx.data_dir, cfg.dataset, splits[cfg.eval_split]),",
        killers=(f"{TESTS}::test_tasks_train_on_their_train_split_and_are_scored_on_the_test_split",),
    ),
    Mutant(
        name="bwt-includes-last-task",
        kind="bug",
        guards="BWT averages over the K-1 earlier tasks only (an off-by-one dilutes forgetting)",
        file=COMPONENT,
        find="for j in range(last)]",
        replace="for j in range(last + 1)]",
        killers=(f"{TESTS}::test_acc_and_bwt_are_the_final_row_and_its_drop_from_the_diagonal",),
    ),
    Mutant(
        name="subspace-schedule-off-by-one",
        kind="bug",
        guards="k_inc shrinks at tasks 3, 6, 9 as the official script (not one task early)",
        file=CONFIG,
        find="task // self.k_decay_every",
        replace="(task + 1) // self.k_decay_every",
        killers=(f"{TESTS}::test_subspace_sizes_follow_the_official_schedule",),
    ),
    Mutant(
        name="every-task-same-permutation",
        kind="bug",
        guards="each permuted task has its own fixed permutation (a seed that ignores the task gives one task)",
        file=CONTINUAL,
        find="np.random.default_rng([seed, task]).permutation(pixels)",
        replace="np.random.default_rng([seed, 1]).permutation(pixels)",
        killers=(f"{DATA_TESTS}::test_each_task_is_its_parents_splits_under_its_own_fixed_permutation",),
    ),
    Mutant(
        name="permuted-test-split-from-train",
        kind="bug",
        guards="a task's test split holds the parent's test images (train images must not reach evaluation)",
        file=CONTINUAL,
        find='        for split, entry in parent_manifest["splits"].items()\n        if entry["count"]\n    }\n    entries, splits = [], {}\n    for task in range(int(tasks)):',
        replace='        for split, entry in parent_manifest["splits"].items()\n        if entry["count"]\n    }\n    originals["test"] = originals["train"]\n    entries, splits = [], {}\n    for task in range(int(tasks)):',
        killers=(f"{DATA_TESTS}::test_each_task_is_its_parents_splits_under_its_own_fixed_permutation",),
    ),
]
