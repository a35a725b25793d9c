"""Mutants of lion (LION's convergence to a KKT point of the box-constrained problem): see tests/mutants/harness.py.

Written from /work/shared/papers/lion.md: the update of §3.1 and its pitfalls (§8: order, decoupled decay,
sign(0)), the constrained view of §3.2 (box, KKT residual, closed-form solution), the theorem's
K-dependent hyper-parameters of §3.3; then the classic bugs of an optimizer and of a training component."""

from tests.mutants.harness import Mutant

OPTIM = "components/core/optim.py"
OPTIMIZERS = "components/lion/optimizers.py"
COMPONENT = "components/lion/component.py"
QUADRATIC = "components/lion/quadratic.py"
BOX = "components/lion/box.py"
TESTS = "tests/components/test_lion.py"
MODELS = "components/lion/models.py"
PAPER_PATH = f"{TESTS}::test_paper_path_trains_resnet18_on_cifar_batches_with_the_recipe"

LION_STEP = """\
                direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
                param.mul_(1.0 - lr * weight_decay)
                param.add_(direction.to(param.dtype), alpha=-lr)
                momentum.mul_(beta2).add_(grad, alpha=1.0 - beta2)
"""

MUTANTS = [
    # --- contributions: the update of §3.1 as the paper analyses it
    Mutant(
        name="momentum-updated-before-interpolation",
        kind="contribution",
        guards="c_k uses the OLD momentum m_{k-1}; m is updated after the step (§8 order, golden test of §6.1)",
        file=OPTIM,
        find=LION_STEP,
        replace="""\
                momentum.mul_(beta2).add_(grad, alpha=1.0 - beta2)
                direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
                param.mul_(1.0 - lr * weight_decay)
                param.add_(direction.to(param.dtype), alpha=-lr)
""",
        killers=(f"{TESTS}::test_core_lion_two_gradient_golden",),
    ),
    Mutant(
        name="coupled-weight-decay",
        kind="contribution",
        guards="decay is decoupled, x <- x - eta lambda x, not lambda x added to g before the sign (the box view)",
        file=OPTIM,
        find="""\
                grad = param.grad.to(momentum.dtype)
                direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
                param.mul_(1.0 - lr * weight_decay)
""",
        replace="""\
                grad = param.grad.to(momentum.dtype) + weight_decay * param
                direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
""",
        killers=(f"{TESTS}::test_core_lion_matches_reference_over_100_random_steps",),
    ),
    Mutant(
        name="sign-of-zero-is-plus-one",
        kind="contribution",
        guards="sign(0) = 0: a coordinate with c = 0 stays still (§8)",
        file=OPTIM,
        find="direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))",
        replace="direction = torch.where(momentum * beta1 + grad * (1.0 - beta1) >= 0, 1.0, -1.0)",
        killers=(f"{TESTS}::test_core_lion_matches_reference_over_100_random_steps",),
    ),
    Mutant(
        name="config-betas-not-applied",
        kind="contribution",
        guards="the run's betas (or the theorem's 1 - c/sqrt(K)) reach the network's LION, not the table's fixed ones",
        file=OPTIMIZERS,
        find='            group["betas"] = betas(cfg, dim)',
        replace='            group.setdefault("betas", betas(cfg, dim))',
        killers=(f"{TESTS}::test_network_optimizer_carries_the_run_hyperparameters",),
    ),
    Mutant(
        name="theorem-d-counts-tensors",
        kind="contribution",
        guards="the theorem's eta = c3/(sqrt(d) K^(3/4)) with d the number of trainable coordinates, not tensors",
        file=OPTIMIZERS,
        find="dim = sum(p.numel() for p in model.parameters() if p.requires_grad)",
        replace="dim = sum(1 for p in model.parameters() if p.requires_grad)",
        killers=(f"{TESTS}::test_network_optimizer_carries_the_run_hyperparameters",),
    ),
    Mutant(
        name="theorem-eta-decayed-by-schedule",
        kind="contribution",
        guards="under the theorem, eta and the betas are constant in k (the schedule is replaced, not stacked)",
        file=QUADRATIC,
        find='schedule = ScheduleConfig(name="constant") if cfg.theory is not None else cfg.schedule',
        replace="schedule = cfg.schedule",
        killers=(f"{TESTS}::test_quadratic_is_the_reference_lion",),
    ),
    Mutant(
        name="no-decay-none-ignored",
        kind="contribution",
        guards="no_decay=none puts every coordinate (biases too) in the box ||x||_inf <= 1/lambda",
        file=OPTIMIZERS,
        find='if cfg.optimizer != "sgd_plain" and cfg.no_decay == "table":',
        replace='if cfg.optimizer != "sgd_plain":',
        killers=(f"{TESTS}::test_network_optimizer_carries_the_run_hyperparameters",),
    ),
    Mutant(
        name="kkt-residual-sign-flipped",
        kind="contribution",
        guards="S(x) = ||g||_1 + lambda <x, g>: zero exactly at KKT points of the box problem (§3.2)",
        file=BOX,
        find="(1.0 + lam * x * torch.sign(grad))",
        replace="(1.0 - lam * x * torch.sign(grad))",
        killers=(f"{TESTS}::test_kkt_residual_is_zero_exactly_at_the_kkt_point",),
    ),
    Mutant(
        name="box-solution-is-shrunk-point",
        kind="contribution",
        guards="the ground truth of the box quadratic is clip(a, +-1/lambda), not the L2 solution a/(1+lambda)",
        file=BOX,
        find="return a.clamp(-1.0 / lam, 1.0 / lam)",
        replace="return a / (1.0 + lam)",
        killers=(f"{TESTS}::test_quadratic_reaches_the_clipped_solution",),
    ),
    # --- classic bugs of the kind
    Mutant(
        name="momentum-not-persisted",
        kind="bug",
        guards="the momentum carries from one step to the next (state updated in place, not rebound)",
        file=OPTIM,
        find="momentum.mul_(beta2).add_(grad, alpha=1.0 - beta2)",
        replace="momentum = momentum.mul(beta2).add(grad, alpha=1.0 - beta2)",
        killers=(f"{TESTS}::test_core_lion_two_gradient_golden",),
    ),
    Mutant(
        name="quadratic-one-step-short",
        kind="bug",
        guards="the quadratic runs exactly K = budget steps (an off-by-one in the step count)",
        file=QUADRATIC,
        find="for step in range(cfg.budget):",
        replace="for step in range(cfg.budget - 1):",
        killers=(f"{TESTS}::test_quadratic_is_the_reference_lion",),
    ),
    Mutant(
        name="quadratic-run-seed-ignored",
        kind="bug",
        guards="the run seed draws x_0 and the gradient noise (seeds are distinct replicates; a stays fixed)",
        file=QUADRATIC,
        find="rng = np.random.default_rng(seed)",
        replace="rng = np.random.default_rng(cfg.quadratic.problem_seed)",
        killers=(f"{TESTS}::test_quadratic_is_the_reference_lion",),
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
        name="val-metrics-on-test-split",
        kind="bug",
        guards="val/loss and val/acc are measured on the val split, test/acc on the test split",
        file=COMPONENT,
        find="val_loss, val_acc = evaluate(model, val, cfg, ctx.device, stats)",
        replace="val_loss, val_acc = evaluate(model, test, cfg, ctx.device, stats)",
        killers=(f"{TESTS}::test_final_metrics_are_on_their_own_splits",),
    ),
    Mutant(
        name="kkt-gradient-on-val-split",
        kind="bug",
        guards="final/kkt_S and the final l1/l2 use the full-batch gradient of the TRAINING loss",
        file=COMPONENT,
        find="grads = full_batch_gradient(net, train, cfg, ctx.device, stats)",
        replace="grads = full_batch_gradient(net, val, cfg, ctx.device, stats)",
        killers=(f"{TESTS}::test_final_metrics_are_on_their_own_splits",),
    ),
    # --- the CIFAR recipe (issue 15): augmentation and train-split normalisation, and their classic bugs
    Mutant(
        name="augmentation-skipped",
        kind="contribution",
        guards="training batches are pad-crop-flipped (the CIFAR ResNet recipe LION is compared in)",
        file=COMPONENT,
        find='if cfg.augment == "pad-crop-flip":',
        replace='if cfg.augment == "pad-crop-flip" and step < 0:',
        killers=(PAPER_PATH,),
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
    Mutant(
        name="evaluation-unnormalised",
        kind="bug",
        guards="evaluation sees the inputs training saw: standardised with the train split's statistics",
        file=COMPONENT,
        find="x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), stats)",
        replace="x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device))",
        count=2,
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="normalisation-without-std",
        kind="contribution",
        guards="inputs are standardised per channel: minus the mean, over the std",
        file=MODELS,
        find="x = (images.float().div(255.0) - mean) / std",
        replace="x = images.float().div(255.0) - mean",
        killers=("tests/components/test_lion.py::test_normalised_input_has_zero_mean_unit_std_per_channel",),
    ),
]
