"""Mutants of sei_bwsnn (self-ensemble binary-weight SNNs, sei_bwsnn.md): see tests/mutants/harness.py."""

from tests.mutants.harness import Mutant

BINARY = "components/sei_bwsnn/binary.py"
MODEL = "components/sei_bwsnn/model.py"
DISTILL = "components/sei_bwsnn/distill.py"
COMPONENT = "components/sei_bwsnn/component.py"
IMAGES = "pipelines/datasets/images.py"
NEURON = "components/snn/neuron.py"
T = "tests/components/test_sei_bwsnn.py::"  # the killers' file
PREP = "tests/pipelines/test_prepare_images.py::"
SAVE = (
    '    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")  # first: an evaluation error keeps the weights\n'
)
FINAL_REPORT = (  # from the weights' save to the final metrics' log
    SAVE
    + "    # a split without samples (ImageNet's layout has train/ and val/ only) is not evaluated; the last split that\n"
    "    # has samples (test, else val: ImageNet's val is the paper's test set) gets the full self-ensemble report\n"
    '    evaluated = [(split, prefix) for split, prefix in ((val, "val"), (test, "test")) if len(split)]\n'
    "    final: dict[str, float] = {}\n"
    "    for split, prefix in evaluated:\n"
    "        reported = prefix == evaluated[-1][1]\n"
    "        final |= evaluate(raw_model, split, cfg, ctx.device, prefix, fanout if reported else None)\n"
    "    final |= {\n"
    '        "binary_weight_fraction": binary_weight_fraction(raw_model) if cfg.binary else 0.0,\n'
    '        "model_size_bits": float(model_size_bits(raw_model)),\n'
    "    }\n"
    "    if teacher is not None and evaluated:\n"
    "        split, prefix = evaluated[-1]\n"
    "        images, labels = split.arrays()\n"
    '        final[f"teacher/{prefix}_acc"] = accuracy(\n'
    "            predict(teacher, images, cfg, ctx.device)[0], torch.from_numpy(labels)\n"
    "        )\n"
    "    ctx.log(final, step=budget)\n"
)
LIF_LOOP = (  # LIF.forward from the membrane's initialisation to the stacked output
    "        v = torch.full_like(x_seq[0], v_rest)\n"
    "        spikes, membranes = [], []\n"
    "        for x in x_seq:  # the reference loop; state is local, so nothing survives this call\n"
    "            if self.detach_state:\n"
    "                v = v.detach()\n"
    "            h = v_rest + self.decay * (v - v_rest) + self.gain * x\n"
    "            s = spike(h - self.v_threshold, self.surrogate, self.alpha)\n"
    "            s_reset = s.detach() if self.detach_reset else s\n"
    '            if self.reset == "soft":\n'
    "                v = h - self.v_threshold * s_reset\n"
    "            else:\n"
    "                v = h * (1.0 - s_reset) + self.v_reset * s_reset\n"
    "            spikes.append(s)\n"
    "            membranes.append(h)\n"
    "        out = torch.stack(spikes)\n"
)

MUTANTS = [
    # --- binary weights (spec 3.3, check A) ---
    Mutant(
        name="forward-uses-full-precision-weights",
        kind="contribution",
        guards="binary layers compute with W_b = a_o sign(W), not with the latent real weights (a 1-bit network)",
        file=BINARY,
        find="return F.linear(x, self.binary_weight())",
        replace="return F.linear(x, self.weight)",
        killers=(
            T + "test_forward_pass_uses_binarised_weights_in_exactly_the_binary_layers",
            T + "test_trained_run_keeps_exactly_binary_weights",
        ),
    ),
    Mutant(
        name="scale-over-whole-tensor",
        kind="contribution",
        guards="a_o is per output channel (mean |W[o,:]|), not one scale for the whole tensor (spec §8 pitfall)",
        file=BINARY,
        find="return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)",
        replace="return w.abs().mean()",
        killers=(T + "test_binary_weights_take_two_values_per_output_channel",),
    ),
    Mutant(
        name="ste-unclipped",
        kind="contribution",
        guards="the STE is the clipped identity dL/dW = dL/dW_b 1{|W| <= 1}; unclipped, latent weights drift",
        file=BINARY,
        find="return grad * (w.abs() <= 1).to(grad.dtype)",
        replace="return grad",
        count=2,
        killers=(T + "test_straight_through_gradient_is_clipped_identity",),
    ),
    Mutant(
        name="sign-of-zero-is-zero",
        kind="contribution",
        guards="sign(0) = +1: binary weights take exactly two values (torch.sign gives a third, 0)",
        file=BINARY,
        find="return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)",
        replace="return torch.sign(w)",
        killers=(T + "test_binary_weights_take_two_values_per_output_channel",),
    ),
    Mutant(
        name="attention-projections-binarised",
        kind="contribution",
        guards="only the Transformer's FFN/MLP linears are binary; attention projections stay full precision [abs]",
        file=MODEL,
        find="self.qkv = nn.Linear(width, 3 * width, bias=False)",
        replace="self.qkv = make_linear(cfg, binary, width, 3 * width)",
        killers=(T + "test_forward_pass_uses_binarised_weights_in_exactly_the_binary_layers",),
    ),
    # --- multiple shortcuts (spec 3.4) ---
    Mutant(
        name="mlp-per-layer-shortcut-dropped",
        kind="contribution",
        guards="every binary layer has a real-valued identity shortcut h <- h + BN(W_b SN(h))",
        file=MODEL,
        find="                h = h + out\n",
        replace="                h = out\n",
        killers=(T + "test_every_binary_layer_has_a_real_valued_shortcut",),
    ),
    Mutant(
        name="ffn-per-layer-shortcut-dropped",
        kind="contribution",
        guards="the binarised FFN's inner shortcut R(x) (x repeated mlp_ratio times) around W1_b",
        file=MODEL,
        find='if self.shortcut == "per_layer":\n            inner = inner',
        replace='if self.shortcut == "per-layer":\n            inner = inner',
        killers=(T + "test_every_binary_layer_has_a_real_valued_shortcut",),
    ),
    Mutant(
        name="shortcut-carries-spikes",
        kind="contribution",
        guards="the shortcut stream stays real-valued (membrane-input domain); spikes never add to spikes (§8)",
        file=MODEL,
        find='            out = norm(layer(neuron(h)))\n            if self.shortcut == "per_layer":\n'
        "                h = h + out\n",
        replace='            s = neuron(h)\n            out = norm(layer(s))\n            if self.shortcut == "per_layer":\n'
        "                h = s + out\n",
        killers=(T + "test_every_binary_layer_has_a_real_valued_shortcut",),
    ),
    # --- the neuron and the self-ensemble (spec 3.1, 3.2, check B) ---
    Mutant(
        name="state-detach-confused-with-reset-detach",
        kind="contribution",
        guards="temporal_grad=detach detaches the carried membrane u[t-1]: the SNN is exactly T weight-sharing BNNs",
        file=MODEL,
        find='detach_state=n.temporal_grad == "detach"',
        replace='detach_reset=n.temporal_grad == "detach"',
        killers=(T + "test_detached_snn_is_exactly_an_ensemble_of_bnns",),
    ),
    Mutant(
        name="hard-reset",
        kind="contribution",
        guards="soft reset u <- u - theta s (the leftover membrane is the ensemble's noise eps[t])",
        file=MODEL,
        find='reset="soft",',
        replace='reset="hard",',
        killers=(T + "test_neuron_is_the_soft_reset_lif_of_the_spec",),
    ),
    Mutant(
        name="leak-is-one-over-tau",
        kind="contribution",
        guards="the leak lambda = 1 - 1/tau (equal to 1/tau only at tau = 2, the default)",
        file=NEURON,
        find="return 1.0 - 1.0 / self.tau",
        replace="return 1.0 / self.tau",
        killers=(T + "test_neuron_is_the_soft_reset_lif_of_the_spec",),
    ),
    # --- distillation (spec 3.5) and the ensemble readout ---
    Mutant(
        name="kd-temperature-squared-dropped",
        kind="contribution",
        guards="the KL is multiplied by tau_kd^2, so its gradient has the scale of CE at any temperature",
        file=DISTILL,
        find="return tau * tau * F.kl_div(",
        replace="return F.kl_div(",
        killers=(T + "test_distillation_gradient_is_the_tempered_softmax_difference",),
    ),
    Mutant(
        name="kd-kl-direction-reversed",
        kind="contribution",
        guards="KL(p_teacher || p_student) (forward KL, the student covers the teacher), not KL(student || teacher)",
        file=DISTILL,
        find="F.kl_div(log_p_student, log_p_teacher,",
        replace="F.kl_div(log_p_teacher, log_p_student,",
        killers=(T + "test_distillation_gradient_is_the_tempered_softmax_difference",),
    ),
    Mutant(
        name="kd-term-not-weighted-by-beta",
        kind="contribution",
        guards="L = (1 - beta) CE + beta KD: beta mixes the two terms",
        file=DISTILL,
        find="loss = loss + beta * kd",
        replace="loss = loss + kd",
        killers=(T + "test_distillation_gradient_is_the_tempered_softmax_difference",),
    ),
    Mutant(
        name="eval-readout-is-last-step",
        kind="contribution",
        guards="the reported accuracy is the self-ensemble's: the mean of the T per-step logits, not one member",
        file=COMPONENT,
        find="    mean_logits = step_logits.mean(dim=0)\n    metrics = {",
        replace="    mean_logits = step_logits[-1]\n    metrics = {",
        killers=(T + "test_reported_accuracy_is_the_self_ensembles",),
    ),
    # --- classic bugs ---
    Mutant(
        name="teacher-fit-on-test-split",
        kind="bug",
        guards="the KD teacher is fit on the training split only; the test split reaches no fitting",
        file=COMPONENT,
        find="teacher = load_or_train_teacher(cfg, ctx, train)",
        replace="teacher = load_or_train_teacher(cfg, ctx, test)",
        killers=(T + "test_run_fits_on_train_only_reports_each_split_and_leaves_binary_weights_undecayed",),
    ),
    Mutant(
        name="test-metric-on-val-split",
        kind="bug",
        guards="test/* metrics are computed on the test split (not the validation split used during training)",
        file=COMPONENT,
        find='((val, "val"), (test, "test"))',
        replace='((val, "val"), (val, "test"))',
        killers=(T + "test_run_fits_on_train_only_reports_each_split_and_leaves_binary_weights_undecayed",),
    ),
    Mutant(
        name="membrane-kept-between-calls",
        kind="bug",
        guards="the membrane starts at rest in every forward call: no state leaks from one batch to the next",
        file=NEURON,
        find=LIF_LOOP,
        replace=LIF_LOOP.replace(
            "        v = torch.full_like(x_seq[0], v_rest)\n",
            "        v = getattr(self, '_v', None)\n"
            "        v = v if v is not None and v.shape == x_seq[0].shape else torch.full_like(x_seq[0], v_rest)\n",
        ).replace(
            "        out = torch.stack(spikes)\n", "        self._v = v.detach()\n        out = torch.stack(spikes)\n"
        ),
        killers=(T + "test_same_input_twice_gives_the_same_output",),
    ),
    Mutant(
        name="seed-ignored-for-student-init",
        kind="bug",
        guards="the run's seed sets the student's initial weights (seeds are independent repeats)",
        file=COMPONENT,
        find="    torch.manual_seed(ctx.seed)\n    model = build_model(",
        replace="    torch.manual_seed(0)\n    model = build_model(",
        killers=(T + "test_seed_sets_the_students_initial_weights",),
    ),
    Mutant(
        name="weight-decay-on-latent-binary-weights",
        kind="bug",
        guards="cfg.weight_decay (0) reaches the optimiser; AdamW's default 0.01 pulls latent weights to 0 (§8)",
        file=COMPONENT,
        find="build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)",
        replace="build_optimizer(cfg.optimizer, model, lr=cfg.lr)",
        count=2,
        killers=(T + "test_run_fits_on_train_only_reports_each_split_and_leaves_binary_weights_undecayed",),
    ),
    # --- issue 15: the paper path (ImageNet layout at 224 px) ---
    Mutant(
        name="empty-split-evaluated",
        kind="bug",
        guards="a split without samples (ImageNet's train/ + val/ layout has no test) is skipped, not evaluated: "
        "the run finished training must not crash on torch.cat of nothing before reporting",
        file=COMPONENT,
        find='((val, "val"), (test, "test")) if len(split)]',
        replace='((val, "val"), (test, "test"))]',
        killers=(
            T + "test_run_without_a_test_split_saves_weights_and_reports_val",
            T + "test_paper_path_spiking_transformer_on_imagenet_jpegs_at_224",
        ),
    ),
    Mutant(
        name="weights-saved-after-evaluation",
        kind="bug",
        guards="the trained weights are saved before the final evaluation, so an evaluation error loses no training",
        file=COMPONENT,
        find=FINAL_REPORT,
        replace=FINAL_REPORT.removeprefix(SAVE) + SAVE,
        killers=(T + "test_run_without_a_test_split_saves_weights_and_reports_val",),
    ),
    Mutant(
        name="dataset-resolution-unchecked",
        kind="bug",
        guards="the paper preset refuses a dataset prepared at another side than 224 (a 32 px prepare would train "
        "the ImageNet model on 2x2 tokens without a word)",
        file=COMPONENT,
        find="if cfg.image_size is not None and tuple(train.shape)[:2]",
        replace="if False and tuple(train.shape)[:2]",
        killers=(T + "test_dataset_at_another_resolution_is_a_config_error",),
    ),
    Mutant(
        name="imagefolder-squashes-to-square",
        kind="bug",
        guards="imagefolder keeps the aspect ratio (shorter side to the target, centre crop) instead of squashing",
        file=IMAGES,
        find="new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))",
        replace="new_width, new_height = size, size",
        killers=(PREP + "test_imagefolder_keeps_the_aspect_ratio_shorter_side_then_centre_crop",),
    ),
    Mutant(
        name="imagefolder-resize-aliased",
        kind="bug",
        guards="imagefolder downsamples with an antialiasing filter (nearest-neighbour keeps one pixel in k: aliasing)",
        file=IMAGES,
        find="image.resize((new_width, new_height), Image.Resampling.BICUBIC)",
        replace="image.resize((new_width, new_height), Image.Resampling.NEAREST)",
        killers=(PREP + "test_imagefolder_keeps_the_aspect_ratio_shorter_side_then_centre_crop",),
    ),
    Mutant(
        name="external-teacher-flattened-channels-first",
        kind="bug",
        guards="an MLP teacher of a Transformer student gets its own input form (pixels flattened H, W, C)",
        file=MODEL,
        find='rearrange(x, "b c h w -> b (h w c)")',
        replace='rearrange(x, "b c h w -> b (c h w)")',
        killers=(T + "test_external_teacher_of_another_architecture_distils_through_its_own_input",),
    ),
    Mutant(
        name="external-teacher-heads-ignored",
        kind="bug",
        guards="a Transformer teacher loaded from a run directory attends with that run's heads, not the student's",
        file=COMPONENT,
        find='return int(yaml.safe_load(run_config.read_text()).get("heads", cfg.heads))',
        replace="return cfg.heads",
        killers=(T + "test_external_teacher_of_another_architecture_distils_through_its_own_input",),
    ),
]

# --- issue 15: ImageNet's training recipe (random-resized crop + flip, ImageNet mean/std) ---
CONFIG = "components/sei_bwsnn/config.py"
MUTANTS += [
    Mutant(
        name="augmentation-reaches-eval",
        kind="bug",
        guards="evaluation reads the stored images, never randomly cropped or flipped",
        file=COMPONENT,
        find="model(to_input(torch.from_numpy(images[i : i + cfg.eval_batch_size]).to(device), cfg.arch, cfg.normalise))",
        replace="model(train_input(cfg, images[i : i + cfg.eval_batch_size], np.random.default_rng(i), device))",
        killers=(T + "test_paper_path_spiking_transformer_on_imagenet_jpegs_at_224",),
    ),
    Mutant(
        name="eval-not-normalised",
        kind="bug",
        guards="evaluation sees the ImageNet mean/std scale training saw",
        file=COMPONENT,
        find="model(to_input(torch.from_numpy(images[i : i + cfg.eval_batch_size]).to(device), cfg.arch, cfg.normalise))",
        replace="model(to_input(torch.from_numpy(images[i : i + cfg.eval_batch_size]).to(device), cfg.arch))",
        killers=(T + "test_paper_path_spiking_transformer_on_imagenet_jpegs_at_224",),
    ),
    Mutant(
        name="teacher-distils-the-unaugmented-image",
        kind="bug",
        guards="the KD teacher's targets are computed on the student's own (augmented) input",
        file=COMPONENT,
        find="teacher_logits = teacher(x)[0] if teacher is not None else None",
        replace=(
            "teacher_logits = teacher(to_input(torch.from_numpy(images).to(ctx.device), cfg.arch, cfg.normalise))[0] "
            "if teacher is not None else None"
        ),
        killers=(T + "test_paper_path_spiking_transformer_on_imagenet_jpegs_at_224",),
    ),
    Mutant(
        name="training-never-cropped",
        kind="bug",
        guards="training batches are random-resized crops + flips when augment is on",
        file=COMPONENT,
        find='    if cfg.augment == "random-resized-crop-flip":\n',
        replace="    if False:\n",
        killers=(
            T + "test_training_input_is_the_random_resized_crop_and_flip_normalised",
            T + "test_paper_path_spiking_transformer_on_imagenet_jpegs_at_224",
        ),
    ),
    Mutant(
        name="crop-scale-ignored",
        kind="bug",
        guards="the Config's crop_scale is the one the crops are drawn with",
        file=COMPONENT,
        find="random_resized_crop_flip(images, images.shape[1], rng, scale=cfg.crop_scale)",
        replace="random_resized_crop_flip(images, images.shape[1], rng)",
        killers=(T + "test_training_input_is_the_random_resized_crop_and_flip_normalised",),
    ),
    Mutant(
        name="recipe-off-in-the-paper-preset",
        kind="bug",
        guards="the ImageNet paper preset trains with random-resized crop + flip (the Config default)",
        file=CONFIG,
        find='augment: Literal["none", "random-resized-crop-flip"] = "random-resized-crop-flip"',
        replace='augment: Literal["none", "random-resized-crop-flip"] = "none"',
        killers=(T + "test_imagenet_recipe_by_default_and_off_on_digits",),
    ),
    Mutant(
        name="grey-images-normalised-with-rgb-statistics",
        kind="bug",
        guards="ImageNet's RGB mean/std on a non-RGB dataset is refused before any compute",
        file=COMPONENT,
        find="    if cfg.normalise and (len(train.shape) != 3 or train.shape[2] != 3):\n",
        replace="    if False:\n",
        killers=(T + "test_imagenet_normalisation_on_grey_images_is_a_config_error",),
    ),
]
