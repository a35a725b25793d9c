"""Mutants of adamw_l1 (the l1/l2 gradient-norm ratio behind AdamW's l1 rate): see tests/mutants/harness.py."""

from tests.mutants.harness import Mutant

PROBE = "components/adamw_l1/probe.py"
COMPONENT = "components/adamw_l1/component.py"
QUADRATIC = "components/adamw_l1/quadratic.py"
MODELS = "components/adamw_l1/models.py"
PAPER_PATH = (
    "tests/components/test_adamw_l1.py::test_paper_path_probes_resnet18_widths_on_cifar_batches_with_the_recipe"
)

MUTANTS = [
    # The paper's quantities and switches (adamw_l1.md §3.2-3.4, §6).
    Mutant(
        name="rho-divides-by-d",
        kind="contribution",
        guards="rho = ||g||_1 / (sqrt(d) ||g||_2): Theta(1) exactly when l1 = Theta(sqrt(d)) l2",
        file=PROBE,
        find="return self.ratio / math.sqrt(self.d)",
        replace="return self.ratio / self.d",
        killers=("tests/components/test_adamw_l1.py::test_reference_vectors",),
    ),
    Mutant(
        name="global-l2-adds-tensor-norms",
        kind="contribution",
        guards="the global l2 is sqrt of the summed squares over all tensors/shards, not a sum of per-tensor "
        "l2 norms (the statistic of the one flattened vector g in R^d)",
        file=PROBE,
        find="total = stats_from_sums(rows.sum(dim=0))",
        replace="total = NormStats(l1=float(rows[:, 0].sum()), l2=float(rows[:, 1].sqrt().sum()), "
        "d=int(rows[:, 2].sum()))",
        killers=("tests/components/test_adamw_l1.py::test_sharded_partial_sums_all_reduce_to_the_global_norms",),
    ),
    Mutant(
        name="probe-after-clipping",
        kind="contribution",
        guards="the probe reads the raw gradient, before clipping (§3.4, §8)",
        file=COMPONENT,
        find="        if step % cfg.log_every == 0 or step == budget - 1:\n"
        "            total, per_tensor = gradient_norms(named, grad_of",
        replace="        if cfg.grad_clip is not None:\n"
        "            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)\n"
        "        if step % cfg.log_every == 0 or step == budget - 1:\n"
        "            total, per_tensor = gradient_norms(named, grad_of",
        killers=("tests/components/test_adamw_l1.py::test_logged_norms_are_the_raw_gradient_before_clipping",),
    ),
    Mutant(
        name="true-gradient-sums-batch-means",
        kind="contribution",
        guards="the large-batch estimate of grad f is the gradient of the MEAN loss over the M samples (§3.4 step "
        "3), so its l1 and l2 are comparable with the minibatch gradient's",
        file=COMPONENT,
        find='loss = F.cross_entropy(model(x), y, reduction="sum")',
        replace='loss = F.cross_entropy(model(x), y, reduction="mean")',
        killers=(
            "tests/components/test_adamw_l1.py::test_large_batch_gradient_is_the_mean_loss_gradient_on_training_samples",
        ),
    ),
    Mutant(
        name="slope-through-the-origin",
        kind="contribution",
        guards="the exponent of l1/l2 ~ d^s is the least-squares slope of log r on log d with an intercept",
        file=PROBE,
        find="return float((x_centred * (y - y.mean())).sum() / x_centred.square().sum())",
        replace="return float((x * y).sum() / x.square().sum())",
        killers=("tests/components/test_adamw_l1.py::test_loglog_slope_recovers_a_power_law_exponent",),
    ),
    Mutant(
        name="slope-fitted-on-rho",
        kind="contribution",
        guards="loglog_slope fits r = l1/l2 against d (expected ~1/2), not rho = r/sqrt(d) (~0)",
        file=COMPONENT,
        find='loglog_slope(sizes, [s["ratio_mean"] for s in done_widths])',
        replace='loglog_slope(sizes, [s["rho_mean"] for s in done_widths])',
        killers=("tests/components/test_adamw_l1.py::test_run_slope_is_fitted_on_l1_over_l2_against_d",),
    ),
    Mutant(
        name="adam-with-coupled-l2",
        kind="contribution",
        guards="the optimizer studied is AdamW, decoupled decay x <- (1 - eta lambda) x, not Adam whose weight "
        "decay is an L2 term added to the gradient",
        file="components/core/optim.py",
        find="return torch.optim.AdamW(groups, lr=lr, betas=betas)",
        replace="return torch.optim.Adam(groups, lr=lr, betas=betas)",
        killers=("tests/components/test_adamw_l1.py::test_handwritten_adamw_matches_torch_after_100_steps",),
    ),
    Mutant(
        name="quadratic-eta-k-to-the-half",
        kind="contribution",
        guards="the theorem's horizon-dependent step eta = eta0 / K^(3/4) (with 1 - beta1 = K^(-1/2), "
        "1 - beta2 = 1/K) in the rate check",
        file=QUADRATIC,
        find='"lr": eta0 / horizon**0.75',
        replace='"lr": eta0 / horizon**0.5',
        killers=("tests/components/test_adamw_l1.py::test_quadratic_runs_adamw_with_the_theorem_schedule",),
    ),
    # Classic bugs: the wrong split, ignored seeds.
    Mutant(
        name="true-gradient-on-test-split",
        kind="bug",
        guards="the large-batch gradient estimates grad f of the TRAINING loss, from training samples",
        file=COMPONENT,
        find='data["true_images"], data["true_labels"] = data["train"][0][:count], data["train"][1][:count]',
        replace='data["true_images"], data["true_labels"] = data["test"][0][:count], data["test"][1][:count]',
        killers=(
            "tests/components/test_adamw_l1.py::test_large_batch_gradient_is_the_mean_loss_gradient_on_training_samples",
        ),
    ),
    Mutant(
        name="batch-stream-seed-ignored",
        kind="bug",
        guards="the run's seed picks the minibatch sequence (each width reads the seed's same batches)",
        file=COMPONENT,
        find="cfg.batch_size, seed=ctx.seed, start_batch=start",
        replace="cfg.batch_size, seed=0, start_batch=start",
        killers=("tests/components/test_adamw_l1.py::test_logged_norms_are_the_raw_gradient_before_clipping",),
    ),
    Mutant(
        name="quadratic-seed-ignored",
        kind="bug",
        guards="the quadratic's gradient noise stream depends on the run's seed (seeds are independent repeats)",
        file=QUADRATIC,
        find="torch.Generator().manual_seed(seed * 1_000_003 + horizon)",
        replace="torch.Generator().manual_seed(horizon)",
        killers=("tests/components/test_adamw_l1.py::test_quadratic_noise_follows_the_seed",),
    ),
    # The CIFAR recipe (issue 15): augmentation and train-split normalisation, and their classic bugs.
    Mutant(
        name="augmentation-skipped",
        kind="contribution",
        guards="training batches are pad-crop-flipped (the CIFAR ResNet recipe the widths are trained in)",
        file=COMPONENT,
        find='if cfg.augment == "pad-crop-flip":',
        replace='if cfg.augment == "pad-crop-flip" and step < 0:',
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="augmentation-differs-across-widths",
        kind="bug",
        guards="step s has the same crops at every width, so the widths' gradient statistics are paired",
        file=COMPONENT,
        find="np.random.default_rng([ctx.seed, step, ctx.rank])",
        replace="np.random.default_rng([ctx.seed, global_step, ctx.rank])",
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="normalisation-stats-from-val",
        kind="bug",
        guards="the normalisation statistics are measured on the train split, never on val",
        file=COMPONENT,
        find='channel_stats(data["train"][0])',
        replace='channel_stats(data["val"][0])',
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="evaluation-unnormalised",
        kind="bug",
        guards="evaluation sees the inputs training saw: standardised with the train split's statistics",
        file=COMPONENT,
        find="x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), stats)",
        replace="x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device))",
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="normalisation-without-std",
        kind="contribution",
        guards="inputs are standardised per channel: minus the mean, over the std",
        file=MODELS,
        find="x = (x - mean) / std",
        replace="x = x - mean",
        killers=("tests/components/test_adamw_l1.py::test_normalised_input_has_zero_mean_unit_std_per_channel",),
    ),
]
