"""Mutants of uba (the unified budget-aware schedule): see tests/mutants/harness.py.

Written from /work/shared/papers/uba.md: the closed form and its phi (§3.1-3.2), the Chebyshev link to the
condition number (§3.3), the training loop of §3.4 and the pitfalls of §8; then the classic bugs of a
training component with splits, batches and a seed."""

from tests.mutants.harness import Mutant

SCHEDULES = "components/core/schedules.py"
COMPONENT = "components/uba/component.py"
QUADRATIC = "components/uba/quadratic.py"
TESTS = "tests/components/test_uba.py"
MODELS = "components/uba/models.py"
AUGMENT = "components/core/augment.py"
PAPER_PATH = f"{TESTS}::test_paper_path_trains_resnet18_on_cifar_batches_with_the_recipe"

MUTANTS = [
    # --- contributions: the closed form, its one shape parameter, the link to the condition number
    Mutant(
        name="phi-numerator-dropped",
        kind="contribution",
        guards="the UBA shape's phi term: eta(T/2) = 2/(2+phi)",
        file=SCHEDULES,
        find="return 2.0 * u / (2.0 * phi + (2.0 - phi) * u)",
        replace="return 2.0 * u / (2.0 + (2.0 - phi) * u)",
        killers=(f"{TESTS}::test_midpoint_is_two_over_two_plus_phi",),
    ),
    Mutant(
        name="two-minus-phi-sign-flipped",
        kind="contribution",
        guards="the (2 - phi) u term that makes phi < 2 decay late and phi > 2 early (uba.md §3.1, check 1)",
        file=SCHEDULES,
        find="(2.0 - phi) * u)",
        replace="(phi - 2.0) * u)",
        killers=(f"{TESTS}::test_midpoint_is_two_over_two_plus_phi",),
    ),
    Mutant(
        name="phi-clamped-to-cosine-range",
        kind="contribution",
        guards="phi > 2, the early-decay half of the family and its Chebyshev-matched regime (§8: do not restrict phi)",
        file=SCHEDULES,
        find="    u = 1.0 + math.cos(math.pi * t / T)\n",
        replace="    phi = min(phi, 2.0)\n    u = 1.0 + math.cos(math.pi * t / T)\n",
        killers=(f"{TESTS}::test_midpoint_is_two_over_two_plus_phi",),
    ),
    Mutant(
        name="quadratic-peak-is-one-over-L",
        kind="contribution",
        guards="the quadratic's default eta_max = 1/mu, with which phi = 2 kappa is the minimax schedule (§3.3)",
        file=COMPONENT,
        find="else 1.0 / cfg.quadratic.mu",
        replace="else 1.0 / cfg.quadratic.L",
        killers=(f"{TESTS}::test_quadratic_default_peak_is_one_over_mu",),
    ),
    # --- classic bugs of the kind
    Mutant(
        name="decay-on-global-step",
        kind="bug",
        guards="t restarts at 0 after warm-up and T = budget - W (§8's first pitfall: the global step shifts the curve)",
        file=SCHEDULES,
        find="decay_length = budget - cfg.warmup\n    t = min(step - cfg.warmup, decay_length)",
        replace="decay_length = budget\n    t = min(step, decay_length)",
        killers=(f"{TESTS}::test_warmup_then_decay_restarts_t",),
    ),
    Mutant(
        name="residual-without-abs",
        kind="bug",
        guards="quad/worst_residual is max |p(lambda)|: a negative residual (overshoot) is as bad as a positive one",
        file=QUADRATIC,
        find="np.max(np.abs(residual))",
        replace="np.max(residual)",
        killers=(f"{TESTS}::test_worst_residual_counts_overshoot",),
    ),
    Mutant(
        name="quadratic-in-float32",
        kind="bug",
        guards="the quadratic's residual is exact in float64 (§6 check 2), so it reproduces the Chebyshev bound",
        file=QUADRATIC,
        find="np.linspace(mu, L, count, dtype=np.float64)",
        replace="np.linspace(mu, L, count, dtype=np.float32)",
        killers=(f"{TESTS}::test_matched_phi_at_half_steps_is_the_chebyshev_bound",),
    ),
    Mutant(
        name="lr-trace-off-by-one",
        kind="bug",
        guards="lr.csv (and the quadratic's steps) are the LRs the optimizer used at steps 0..B-1, not 1..B",
        file=COMPONENT,
        find="multiplier(cfg.schedule, step, cfg.budget) for step in range(cfg.budget)",
        replace="multiplier(cfg.schedule, step, cfg.budget) for step in range(1, cfg.budget + 1)",
        killers=(f"{TESTS}::test_logged_lr_and_trace_are_the_schedule",),
    ),
    Mutant(
        name="val-metrics-on-test-split",
        kind="bug",
        guards="val/loss and val/acc are measured on the val split, test/acc on the test split",
        file=COMPONENT,
        find="val_loss, val_acc = evaluate(model, val, cfg, ctx.device, stats)",
        replace="val_loss, val_acc = evaluate(model, test, cfg, ctx.device, stats)",
        killers=(f"{TESTS}::test_final_metrics_are_on_their_own_splits",),
    ),
    Mutant(
        name="trains-on-val-split",
        kind="bug",
        guards="training batches come from the train split only: no val example reaches the optimizer",
        file=COMPONENT,
        find="stream = train.batches(",
        replace="stream = val.batches(",
        killers=(f"{TESTS}::test_training_is_the_reference_loop",),
    ),
    Mutant(
        name="init-seed-ignored",
        kind="bug",
        guards="the run's seed sets the model's initialisation (seeds are distinct replicates)",
        file=COMPONENT,
        find="torch.manual_seed(ctx.seed)",
        replace="torch.manual_seed(0)",
        killers=(f"{TESTS}::test_training_is_the_reference_loop",),
    ),
    Mutant(
        name="gradients-not-zeroed",
        kind="bug",
        guards="no gradient leaks from one batch into the next step (state between batches)",
        file="components/core/strategy.py",
        find="        self.optimizer.zero_grad(set_to_none=True)\n        if self.scheduler is not None:",
        replace="        if self.scheduler is not None:",
        killers=(f"{TESTS}::test_training_is_the_reference_loop",),
    ),
    # --- the paper's CIFAR recipe (issue 15): augmentation and normalisation, and their classic bugs
    Mutant(
        name="augmentation-skipped",
        kind="contribution",
        guards="training batches are pad-crop-flipped (the CIFAR ResNet recipe the schedules are compared in)",
        file=COMPONENT,
        find='if cfg.augment == "pad-crop-flip":',
        replace='if cfg.augment == "pad-crop-flip" and step < 0:',
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="flip-never-drawn",
        kind="contribution",
        guards="half the crops are mirrored",
        file=AUGMENT,
        find="flip = rng.random(batch) < 0.5",
        replace="flip = rng.random(batch) < 0.0",
        killers=(f"{TESTS}::test_pad_crop_flip_is_a_window_of_the_padded_image_or_its_mirror",),
    ),
    Mutant(
        name="normalisation-without-std",
        kind="contribution",
        guards="inputs are standardised per channel: minus the mean, over the std",
        file=MODELS,
        find="x = (images.float().div(255.0) - mean) / std",
        replace="x = images.float().div(255.0) - mean",
        killers=(f"{TESTS}::test_normalised_input_has_zero_mean_unit_std_per_channel",),
    ),
    Mutant(
        name="normalisation-stats-from-val",
        kind="bug",
        guards="the normalisation statistics are measured on the train split, never on val",
        file=COMPONENT,
        find="stats = channel_stats(train.arrays()[0])",
        replace="stats = channel_stats(val.arrays()[0])",
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="augmentation-same-draw-every-step",
        kind="bug",
        guards="each step draws new crops and flips (seeded by seed, step and rank)",
        file=COMPONENT,
        find="np.random.default_rng([ctx.seed, step, ctx.rank])",
        replace="np.random.default_rng([ctx.seed, ctx.rank])",
        killers=(PAPER_PATH,),
    ),
]
