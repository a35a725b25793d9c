"""Mutants of dnt (the Deeply Normalized Transformer trained with mSGDW): see tests/mutants/harness.py.

Written from /work/shared/papers/dnt.md: one per normalisation the paper places (InputNorm, PreNorm, per-head
QKNorm, MidNorm before the add, no FFN PreNorm in S5), per detail of the operator (RMS, 1/sqrt(d_h) logits),
per part of the mSGDW recipe (decoupled decay, matrices only), and the classic bugs that apply to a training
run with splits, seeds, a causal LM and resumable state.
"""

from tests.mutants.harness import Mutant

MODELS = "components/dnt/models.py"
COMPONENT = "components/dnt/component.py"
TOKENS = "components/dnt/tokens.py"
T = "tests/components/test_dnt.py::"
OPTIM = "tests/components/core/test_optim.py::"

MUTANTS = [
    # --- contributions: where each normalisation sits (dnt.md §3.2, §3.3) ---
    Mutant(
        name="dnt-without-inputnorm",
        kind="contribution",
        guards="InputNorm on the embedding (Prop. 1): without it the embedding scale leaks into every layer",
        file=MODELS,
        find='"dnt": Layout(input_norm=True, ffn_prenorm=False',
        replace='"dnt": Layout(input_norm=False, ffn_prenorm=False',
        killers=(T + "test_dnt_is_invariant_to_rescaling_and_standard_is_not", T + "test_norm_counts"),
    ),
    Mutant(
        name="attn-midnorm-after-residual-add",
        kind="contribution",
        guards="MidNorm on the attention branch before the add; after the add it is the PostNorm the paper rejects",
        file=MODELS,
        find="x = x + self.drop_path(self.attn_mid_norm(self.attn(self.attn_norm(x))))",
        replace="x = self.attn_mid_norm(x + self.drop_path(self.attn(self.attn_norm(x))))",
        killers=(T + "test_dnt_is_invariant_to_rescaling_and_standard_is_not",),
    ),
    Mutant(
        name="ffn-midnorm-after-residual-add",
        kind="contribution",
        guards="MidNorm on the FFN branch before the add (Prop. 3), not PostNorm after it (Prop. 4)",
        file=MODELS,
        find="return x + self.drop_path(self.ffn_mid_norm(self.ffn(self.ffn_norm(x))))",
        replace="return self.ffn_mid_norm(x + self.drop_path(self.ffn(self.ffn_norm(x))))",
        killers=(T + "test_dnt_is_invariant_to_rescaling_and_standard_is_not",),
    ),
    Mutant(
        name="qknorm-on-queries-only",
        kind="contribution",
        guards="QKNorm normalises both q and k (Prop. 5): logits independent of the magnitudes of W_q and W_k",
        file=MODELS,
        find="q, k = self.q_norm(q), self.k_norm(k)",
        replace="q, k = self.q_norm(q), k",
        killers=(
            T + "test_attention_is_softmax_of_per_head_rms_normalised_q_k_over_sqrt_dh",
            T + "test_dnt_is_invariant_to_rescaling_and_standard_is_not",
        ),
    ),
    Mutant(
        name="qknorm-over-whole-vector",
        kind="contribution",
        guards="QKNorm is per head over d_h (dnt.md §8), not over the whole d_model q then split into heads",
        file=MODELS,
        find=(
            "        self.q_norm = spec.norm(head_dim) if spec.layout.qk_norm else nn.Identity()\n"
            "        self.k_norm = spec.norm(head_dim) if spec.layout.qk_norm else nn.Identity()\n"
            "\n"
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
            '        q, k, v = (rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads) for proj in (self.q, self.k,'
            " self.v))\n"
            "        q, k = self.q_norm(q), self.k_norm(k)\n"
        ),
        replace=(
            "        self.q_norm = spec.norm(spec.dim) if spec.layout.qk_norm else nn.Identity()\n"
            "        self.k_norm = spec.norm(spec.dim) if spec.layout.qk_norm else nn.Identity()\n"
            "\n"
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
            "        q, k, v = self.q_norm(self.q(x)), self.k_norm(self.k(x)), self.v(x)\n"
            '        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))\n'
        ),
        killers=(
            T + "test_attention_is_softmax_of_per_head_rms_normalised_q_k_over_sqrt_dh",
            T + "test_dnt_is_invariant_to_rescaling_and_standard_is_not",
        ),
    ),
    Mutant(
        name="attention-without-prenorm",
        kind="contribution",
        guards="PreNorm before attention (Prop. 2): the attention input must not carry the per-token norms of x",
        file=MODELS,
        find="self.attn_norm = spec.norm(spec.dim)  # PreNorm: every variant has it",
        replace="self.attn_norm = nn.Identity()  # PreNorm: every variant has it",
        killers=(T + "test_prenorm_makes_attention_blind_to_token_norms", T + "test_norm_counts"),
    ),
    Mutant(
        name="dnt-keeps-ffn-prenorm",
        kind="contribution",
        guards="S5 (= DNT) drops the FFN PreNorm of S4: the variant named dnt must be S5, not S4",
        file=MODELS,
        find='"dnt": Layout(input_norm=True, ffn_prenorm=False',
        replace='"dnt": Layout(input_norm=True, ffn_prenorm=True',
        killers=(T + "test_norm_counts",),
    ),
    Mutant(
        name="rmsnorm-divides-by-l2-norm",
        kind="contribution",
        guards="RMSN(z) = g z / sqrt(mean z^2 + eps): QKNorm's q' has norm sqrt(d_h), not 1 (logits would shrink d_h x)",
        file=MODELS,
        find="z.pow(2).mean(dim=-1, keepdim=True)",
        replace="z.pow(2).sum(dim=-1, keepdim=True)",
        killers=(T + "test_rmsnorm_is_the_root_mean_square_normalisation",),
    ),
    Mutant(
        name="attention-logits-unscaled",
        kind="contribution",
        guards="logits = q'.k' / sqrt(d_h) with QKNorm (dnt.md §3.1, §8: do not drop the 1/sqrt(d_h))",
        file=MODELS,
        find="F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)",
        replace="F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=1.0)",
        killers=(T + "test_attention_is_softmax_of_per_head_rms_normalised_q_k_over_sqrt_dh",),
    ),
    Mutant(
        name="msgdw-coupled-weight-decay",
        kind="contribution",
        guards="mSGDW's decay is decoupled (dnt.md §3.5, §8): torch SGD(weight_decay) sends it through the momentum",
        file="components/core/optim.py",
        find="    return MSGDW(groups, lr=lr, momentum=0.9)\n",
        replace="    return torch.optim.SGD(groups, lr=lr, momentum=0.9)\n",
        killers=(T + "test_msgdw_decays_only_matrices_and_outside_the_momentum",),
    ),
    Mutant(
        name="msgdw-decays-norm-gains-and-embeddings",
        kind="contribution",
        guards="mSGDW decays only matrices: norm gains, cls, positions and embeddings are never decayed (§3.5)",
        file="components/core/optim.py",
        find='no_decay="ndim<2+embeddings",  # DNT decays only matrices: no norm gains, biases or embeddings',
        replace='no_decay="none",  # DNT decays only matrices: no norm gains, biases or embeddings',
        killers=(T + "test_msgdw_decays_only_matrices_and_outside_the_momentum",),
    ),
    Mutant(
        name="msgdw-ema-coupled-weight-decay",
        kind="contribution",
        guards="the paper preset's mSGDW (EMA form) decouples its decay from the momentum too (dnt.md §3.5, §8)",
        file="components/core/optim.py",
        find="    return MSGDW(groups, lr=lr, momentum=0.9, ema=True)\n",
        replace="    return torch.optim.SGD(groups, lr=lr, momentum=0.9, dampening=0.9)\n",
        killers=(T + "test_msgdw_decays_only_matrices_and_outside_the_momentum",),
    ),
    Mutant(
        name="msgdw-ema-is-pytorch-form",
        kind="contribution",
        guards="the EMA form b = mu b + (1 - mu) g, in which the paper's LR 1.0 trains (b = mu b + g diverges there)",
        file="components/core/optim.py",
        find='gain = 1.0 - momentum if group.get("ema", False) else 1.0',
        replace="gain = 1.0",
        killers=(T + "test_dnt_at_lr_one_stays_finite",),
    ),
    Mutant(
        name="paper-default-pytorch-momentum-form",
        kind="contribution",
        guards="Config, params.yaml and the sweep agree on the momentum form in which LR 1.0 trains (issue 15)",
        file="components/dnt/config.py",
        find='optimizer: OptimizerName = "msgdw_ema"',
        replace='optimizer: OptimizerName = "msgdw"',
        killers=(T + "test_the_momentum_form_is_the_same_in_config_params_and_sweep",),
    ),
    Mutant(
        name="grad-clip-ignored",
        kind="bug",
        guards="the Config's grad_clip bounds the norm of the gradient the optimizer applies (issue 15)",
        file=COMPONENT,
        find="ctx.strategy.prepare(net, optimizer, scheduler, grad_clip=cfg.grad_clip)",
        replace="ctx.strategy.prepare(net, optimizer, scheduler)",
        killers=(T + "test_grad_clip_bounds_the_applied_gradient_norm",),
    ),
    Mutant(
        name="deepspeed-clips-regardless-of-the-component",
        kind="bug",
        guards="under DeepSpeed the engine clips with the component's grad_clip, never a profile's own value",
        file="components/core/deepspeed_strategy.py",
        find='"gradient_clipping": 0.0 if grad_clip is None else float(grad_clip),',
        replace='"gradient_clipping": 1.0,',
        killers=(T + "test_deepspeed_clips_with_the_components_value_and_profiles_do_not_clip",),
    ),
    Mutant(
        name="adamw-betas-ignored",
        kind="bug",
        guards="AdamW's betas come from the Config (nanoGPT's (0.9, 0.95) for the GPT), not torch's fixed defaults",
        file="components/core/optim.py",
        find="return torch.optim.AdamW(groups, lr=lr, betas=betas)",
        replace="return torch.optim.AdamW(groups, lr=lr, betas=ADAMW_BETAS)",
        killers=(
            OPTIM + "test_build_optimizer_passes_betas_through_the_table",
            T + "test_adamw_betas_are_the_papers_per_model",
        ),
    ),
    Mutant(
        name="adan-state-in-param-dtype",
        kind="bug",
        guards="Adan keeps its moments in at least fp32, as Lion and mSGDW (bf16 moments round away (1 - b) g)",
        file="components/core/optim.py",
        find="dtype = torch.promote_types(param.dtype, torch.float32)\n                grad = param.grad.to(dtype)",
        replace="dtype = param.dtype\n                grad = param.grad.to(dtype)",
        killers=(OPTIM + "test_adan_state_is_at_least_fp32",),
    ),
    # --- classic bugs of a training run ---
    Mutant(
        name="gpt-attention-not-causal",
        kind="bug",
        guards="L-DNT is a causal LM: no later token may reach an earlier position's prediction",
        file=MODELS,
        find="F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)",
        replace="F.scaled_dot_product_attention(q, k, v, is_causal=False)",
        killers=(T + "test_gpt_is_causal",),
    ),
    Mutant(
        name="init-ignores-seed",
        kind="bug",
        guards="the run's seed sets the initial weights (seeds of a sweep are independent replicates)",
        file=COMPONENT,
        find="torch.manual_seed(ctx.seed)",
        replace="torch.manual_seed(0)",
        killers=(T + "test_seed_sets_the_initial_weights_and_the_batch_order",),
    ),
    Mutant(
        name="batch-order-ignores-seed",
        kind="bug",
        guards="the run's seed sets the order of the training batches",
        file=COMPONENT,
        find="self.shards.batch_indices(batch, self.cfg.batch_size, self.seed, self.rank, self.world_size)",
        replace="self.shards.batch_indices(batch, self.cfg.batch_size, 0, self.rank, self.world_size)",
        killers=(T + "test_seed_sets_the_initial_weights_and_the_batch_order",),
    ),
    Mutant(
        name="test-acc-on-val-split",
        kind="bug",
        guards="test/acc is measured on the test split (a metric on the wrong split reports the tuned-on number)",
        file=COMPONENT,
        find='self._split(model, "test", autocast)[1]',
        replace='self._split(model, "val", autocast)[1]',
        killers=(T + "test_image_metrics_are_computed_on_their_own_splits",),
    ),
    Mutant(
        name="empty-test-split-divides-by-zero",
        kind="bug",
        guards="a dataset without a test split (ImageNet's train/ + val/) finishes its run instead of crashing",
        file=COMPONENT,
        find='if final and len(self.splits["test"]):',
        replace="if final:",
        killers=(T + "test_an_empty_test_split_reports_no_test_acc",),
    ),
    Mutant(
        name="training-stream-reads-val-split",
        kind="bug",
        guards="the training batches come from the train split only (no validation images reach training)",
        file=COMPONENT,
        find='        train = self.splits["train"]\n        train._check_batching(',
        replace='        train = self.splits["val"]\n        train._check_batching(',
        killers=(T + "test_training_batches_come_from_the_train_split_only",),
    ),
    Mutant(
        name="val-windows-from-train-tokens",
        kind="bug",
        guards="L-DNT's val/loss is measured on the held-out tail of the stream, not on training tokens",
        file=TOKENS,
        find="return self.val[np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)]",
        replace="return self.train[np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)]",
        killers=(T + "test_token_splits_are_disjoint_and_batches_predict_the_next_token",),
    ),
    Mutant(
        name="train-tokens-include-val-tail",
        kind="bug",
        guards="the token stream's validation tail never reaches the training split",
        file=TOKENS,
        find="return stream[:cut], stream[cut:]",
        replace="return stream, stream[cut:]",
        killers=(T + "test_token_splits_are_disjoint_and_batches_predict_the_next_token",),
    ),
    Mutant(
        name="gradients-not-zeroed-between-steps",
        kind="bug",
        guards="each optimizer step uses its own batch's gradient, not one accumulated over every previous batch",
        file="components/core/strategy.py",
        find="        self.optimizer.step()\n        self.optimizer.zero_grad(set_to_none=True)\n",
        replace="        self.optimizer.step()\n",
        killers=(T + "test_each_step_uses_the_gradient_of_its_own_batch",),
    ),
    Mutant(
        name="resume-position-off-by-one",
        kind="bug",
        guards="the checkpoint records the number of steps done, so a resumed run neither repeats nor skips a batch",
        file=COMPONENT,
        find='state["data_position"] = done',
        replace='state["data_position"] = step',
        killers=(T + "test_resume_after_preemption_is_bit_exact",),
    ),
]

# --- issue 15: DeiT's ViT recipe (dnt.md §7, "timm/DeiT-style recipe"): drop-path, augmentation, mixup / cutmix ---
AUGMENT = "components/core/augment.py"
AUG = "tests/components/core/test_augment.py::"
MUTANTS += [
    Mutant(
        name="drop-path-active-at-eval",
        kind="bug",
        guards="stochastic depth only in training: evaluation runs every residual branch",
        file=MODELS,
        find="if not self.training or self.rate == 0.0:",
        replace="if self.rate == 0.0:",
        killers=(T + "test_drop_path_is_identity_at_eval_and_drops_whole_branches_per_sample_at_train",),
    ),
    Mutant(
        name="evaluation-in-training-mode",
        kind="bug",
        guards="val/acc is measured with the model in eval mode (no dropped paths)",
        file=COMPONENT,
        find="    model.eval()\n    try:",
        replace="    try:",
        killers=(T + "test_paper_path_vit_on_imagenet_jpegs_at_224_with_the_deit_recipe",),
    ),
    Mutant(
        name="drop-path-one-mask-per-batch",
        kind="bug",
        guards="drop-path drops whole residual branches per sample, not the whole batch at once",
        file=MODELS,
        find="branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1))",
        replace="branch.new_empty((1,) * branch.ndim)",
        killers=(T + "test_drop_path_is_identity_at_eval_and_drops_whole_branches_per_sample_at_train",),
    ),
    Mutant(
        name="drop-path-not-rescaled",
        kind="bug",
        guards="kept branches are scaled by 1 / (1 - rate), so training and evaluation see the same expectation",
        file=MODELS,
        find="return branch * mask / keep",
        replace="return branch * mask",
        killers=(T + "test_drop_path_is_identity_at_eval_and_drops_whole_branches_per_sample_at_train",),
    ),
    Mutant(
        name="drop-path-rate-constant-over-depth",
        kind="contribution",
        guards="stochastic depth's rate increases linearly from 0 (first block) to drop_path (last block)",
        file=MODELS,
        find="rate * i / (depth - 1) if depth > 1 else rate",
        replace="rate",
        killers=(T + "test_drop_path_rate_increases_linearly_over_the_vit_blocks_and_the_gpt_has_none",),
    ),
    Mutant(
        name="augmentation-reaches-eval",
        kind="bug",
        guards="evaluation reads the stored images, never augmented or mixed",
        file=COMPONENT,
        find="images = to_input(torch.from_numpy(shards.images(indices)), self.cfg.normalise).to(self.ctx.device)",
        replace=(
            "images = recipe_batch(self.cfg, shards.images(indices), torch.from_numpy(shards.labels[indices]), "
            "np.random.default_rng(start))[0].to(self.ctx.device)"
        ),
        killers=(T + "test_paper_path_vit_on_imagenet_jpegs_at_224_with_the_deit_recipe",),
    ),
    Mutant(
        name="eval-not-normalised",
        kind="bug",
        guards="evaluation sees the same ImageNet mean/std scale as training",
        file=COMPONENT,
        find="images = to_input(torch.from_numpy(shards.images(indices)), self.cfg.normalise).to(self.ctx.device)",
        replace="images = to_input(torch.from_numpy(shards.images(indices))).to(self.ctx.device)",
        killers=(T + "test_paper_path_vit_on_imagenet_jpegs_at_224_with_the_deit_recipe",),
    ),
    Mutant(
        name="mixup-lam-not-applied-to-targets",
        kind="contribution",
        guards="mixup / cutmix targets are lam * y + (1 - lam) * y_partner, the same lam as the pixels",
        file=AUGMENT,
        find="return images, targets * lam + targets.flip(0) * (1.0 - lam), lam, use_cutmix",
        replace="return images, targets, lam, use_cutmix",
        killers=(
            AUG + "test_mixup_mixes_pixels_and_targets_with_the_same_lam",
            T + "test_recipe_batch_mixes_images_and_targets_with_one_lam",
        ),
    ),
    Mutant(
        name="cutmix-lam-not-corrected-to-the-pasted-area",
        kind="contribution",
        guards="cutmix's lam is the unpasted area fraction of the clipped box (timm's correct_lam)",
        file=AUGMENT,
        find="        lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # timm's correct_lam\n",
        replace="",
        killers=(AUG + "test_cutmix_lam_is_the_unpasted_area_and_the_box_is_the_partners",),
    ),
    Mutant(
        name="crop-side-uniform-instead-of-area",
        kind="contribution",
        guards="the random-resized crop's area is uniform on scale (0.08, 1) of the image (torchvision)",
        file=AUGMENT,
        find="target_area = area * rng.uniform(scale[0], scale[1])",
        replace="target_area = area * rng.uniform(scale[0], scale[1]) ** 2",
        killers=(AUG + "test_crop_boxes_lie_in_the_scale_and_ratio_ranges_and_cover_them",),
    ),
    Mutant(
        name="crop-scale-ignored",
        kind="bug",
        guards="the Config's crop_scale is the one the crops are drawn with",
        file=COMPONENT,
        find="random_resized_crop_flip(images, cfg.image_size, rng, scale=cfg.crop_scale)",
        replace="random_resized_crop_flip(images, cfg.image_size, rng)",
        killers=(T + "test_the_configured_crop_scale_reaches_the_crop",),
    ),
    Mutant(
        name="flip-is-vertical",
        kind="bug",
        guards="the flip is a left-right mirror (an upside-down image is another picture)",
        file=AUGMENT,
        find="out[index] = crop[:, ::-1] if mirrored else crop",
        replace="out[index] = crop[::-1] if mirrored else crop",
        killers=(AUG + "test_flips_are_mirror_images_of_the_unflipped_crops_half_the_time",),
    ),
    Mutant(
        name="label-smoothing-dropped-from-the-mixed-targets",
        kind="contribution",
        guards="DeiT's label smoothing 0.1 is folded into the (mixed) soft targets",
        file=COMPONENT,
        find="        cfg.label_smoothing,\n",
        replace="        0.0,\n",
        killers=(T + "test_the_full_recipe_is_seeded_per_step_and_crops_to_the_train_size",),
    ),
    Mutant(
        name="augmentation-ignores-the-step",
        kind="bug",
        guards="augmentation is drawn per (seed, step, rank): fresh crops each step, the same after a resume",
        file=COMPONENT,
        find="rng = np.random.default_rng([self.seed, batch, self.rank])",
        replace="rng = np.random.default_rng([self.seed, self.rank])",
        killers=(T + "test_the_stream_draws_its_augmentation_per_seed_step_and_rank",),
    ),
    Mutant(
        name="recipe-on-in-the-digits-presets",
        kind="bug",
        guards="DeiT's ImageNet recipe is off on 8x8 grey digits (smoke and test presets), on by default",
        file=COMPONENT,
        find='    "mixup_alpha": 0.0,\n    "cutmix_alpha": 0.0,\n',
        replace="",
        killers=(T + "test_the_recipe_is_deits_by_default_and_off_on_digits",),
    ),
    Mutant(
        name="gradient-stats-skip-zero2-partitions",
        kind="bug",
        guards="the gradient-tail statistics read the whole gradient under ZeRO-2 (the strategy's full_grad)",
        file=COMPONENT,
        find="stats, histogram = gradient_stats(net, ctx.strategy.full_grad)",
        replace="stats, histogram = gradient_stats(net)",
        killers=(T + "test_gradient_statistics_under_zero2_match_the_plain_strategy",),
    ),
]
