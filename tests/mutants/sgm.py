"""Mutants of sgm (the skip gradient method): see tests/mutants/harness.py.

Written from /work/shared/papers/sgm.md: the decayed gradient of §3.1 (backward only, residual branches only,
gamma once per block), the official hook rule of §3.3 (gamma vs sqrt(gamma), which ReLUs), the attack loop of
§3.2 and the pitfalls of §8; then the classic bugs of an attack-and-transfer component."""

from tests.mutants.harness import Mutant

GRADIENT = "components/sgm/gradient.py"
MODELS = "components/sgm/models.py"
ATTACK = "components/sgm/attack.py"
COMPONENT = "components/sgm/component.py"
TESTS = "tests/components/test_sgm.py"
PAPER_PATH = f"{TESTS}::test_paper_path_resnet152_source_on_imagenet_pngs_at_224"

MUTANTS = [
    # --- contributions: the skip gradient itself and its two implementations
    Mutant(
        name="residual-branch-not-decayed",
        kind="contribution",
        guards="the gradient through every residual module is multiplied by gamma (sgm.md §3.1)",
        file=GRADIENT,
        find="lambda module, inputs, out: scale_grad(out, gamma)",
        replace="lambda module, inputs, out: out",
        killers=(f"{TESTS}::test_gradient_is_the_closed_form_product",),
    ),
    Mutant(
        name="decay-in-the-forward-pass",
        kind="contribution",
        guards="the forward pass, the loss and the predictions are untouched (sgm.md §8)",
        file=GRADIENT,
        find="return x.view_as(x)",
        replace="return x * ctx.factor",
        killers=(f"{TESTS}::test_decay_leaves_the_forward_pass_bit_identical",),
    ),
    Mutant(
        name="gamma-applied-twice",
        kind="contribution",
        guards="a path through m residual modules is weighted gamma^m, not gamma^(2m) (closed form, check 2)",
        file=GRADIENT,
        find="return grad * ctx.factor, None",
        replace="return grad * ctx.factor * ctx.factor, None",
        killers=(f"{TESTS}::test_gradient_is_the_closed_form_product",),
    ),
    Mutant(
        name="bottleneck-hook-factor-gamma",
        kind="contribution",
        guards="the official rule: sqrt(gamma) per ReLU call in a Bottleneck (3 calls), so residual/skip = gamma",
        file=GRADIENT,
        find='"resnet-bottleneck": 0.5',
        replace='"resnet-bottleneck": 1.0',
        killers=(f"{TESTS}::test_official_relu_hooks_equal_the_explicit_decay",),
    ),
    Mutant(
        name="first-block-of-each-stage-decayed",
        kind="contribution",
        guards="the explicit decay leaves each stage's strided first block alone, as the official hooks do",
        file=MODELS,
        find="unit.sgm_decay = index > 0",
        replace="unit.sgm_decay = True",
        killers=(f"{TESTS}::test_official_relu_hooks_equal_the_explicit_decay",),
    ),
    Mutant(
        name="densenet-transition-relus-hooked",
        kind="contribution",
        guards="DenseNet's official hooks skip the transition layers (they are not skip connections)",
        file=GRADIENT,
        find='excluded = "transition" if',
        replace='excluded = "\\0" if',
        killers=(f"{TESTS}::test_official_relu_hooks_equal_the_explicit_decay",),
    ),
    # --- classic bugs of an iterative attack and a transfer evaluation
    Mutant(
        name="step-against-the-gradient",
        kind="bug",
        guards="the attack ascends the loss: x + alpha sign(g) (a sign)",
        file=ATTACK,
        find="x_adv = x_adv.detach() + step_size * grad.sign()",
        replace="x_adv = x_adv.detach() - step_size * grad.sign()",
        killers=(f"{TESTS}::test_pgd_is_the_reference_loop_and_stays_in_the_ball",),
    ),
    Mutant(
        name="no-projection-onto-the-eps-ball",
        kind="bug",
        guards="every iterate is clipped to [x - eps, x + eps] before [0, 1]",
        file=ATTACK,
        find="x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)",
        replace="x_adv = x_adv.clamp(0, 1)",
        killers=(f"{TESTS}::test_pgd_is_the_reference_loop_and_stays_in_the_ball",),
    ),
    Mutant(
        name="one-step-short",
        kind="bug",
        guards="the attack takes exactly T gradient steps (an off-by-one)",
        file=ATTACK,
        find="for _ in range(steps):",
        replace="for _ in range(steps - 1):",
        killers=(f"{TESTS}::test_pgd_is_the_reference_loop_and_stays_in_the_ball",),
    ),
    Mutant(
        name="models-trained-on-the-attacked-split",
        kind="bug",
        guards="source and targets never see the images they are attacked and evaluated on (test data in training)",
        file=COMPONENT,
        find='ImageShards(ctx.data_dir, cfg.dataset, "train").arrays()',
        replace="ImageShards(ctx.data_dir, cfg.dataset, cfg.split).arrays()",
        killers=(f"{TESTS}::test_fit_sees_exactly_the_train_split",),
    ),
    Mutant(
        name="hooks-left-installed",
        kind="bug",
        guards="the decay is removed after each attack: no state leaks into the next gamma or the evaluation",
        file=GRADIENT,
        find="            handle.remove()",
        replace="            pass",
        count=2,
        killers=(f"{TESTS}::test_hooks_are_gone_after_the_context",),
    ),
    Mutant(
        name="attacked-in-train-mode",
        kind="bug",
        guards="models are attacked and evaluated in eval mode (BatchNorm running statistics, no dropout)",
        file=COMPONENT,
        find="model.eval()  # BatchNorm",
        replace="model.train()  # BatchNorm",
        killers=(PAPER_PATH,),
    ),
    Mutant(
        name="success-rate-on-clean-images",
        kind="bug",
        guards="the success rates are measured on the adversarial images (a metric on the wrong inputs)",
        file=COMPONENT,
        find="metrics.update(transfer_rates(cfg, models, x_adv, truth))",
        replace="metrics.update(transfer_rates(cfg, models, x, truth))",
        killers=(f"{TESTS}::test_transfer_at_gamma_07_not_worse_than_plain_pgd_minus_one_point",),
    ),
    Mutant(
        name="evaluated-without-8-bit-quantisation",
        kind="bug",
        guards="targets see the adversarial images as the paper's saved 8-bit PNGs",
        file=COMPONENT,
        find="return quantise(x_adv) if cfg.quantise else x_adv",
        replace="return x_adv",
        killers=(f"{TESTS}::test_run_evaluates_8_bit_images",),
    ),
]
