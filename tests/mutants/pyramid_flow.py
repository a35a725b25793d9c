"""Mutants of pyramid_flow (Pyramidal Flow Matching, pyramid_flow.md): see tests/mutants/harness.py.

Written from the spec's method (§3), its falsifiable checks (§6) and its pitfalls (§8), one per switch the paper
names, plus the classic bugs that fit a component with train/val splits, a seed, per-step random draws and a
stateful sampler."""

from tests.mutants.harness import Mutant

PYRAMID = "components/pyramid_flow/pyramid.py"
SCHEDULE = "components/pyramid_flow/schedule.py"
SAMPLER = "components/pyramid_flow/sampler.py"
MODEL = "components/pyramid_flow/model.py"
COMPONENT = "components/pyramid_flow/component.py"
TESTS = "tests/components/test_pyramid_flow.py"
VIDEO = "pipelines/datasets/video.py"
RAW_VIDEO = "components/core/video.py"  # clip reading, resampling and cropping, shared with vact
VIDEO_TESTS = "tests/pipelines/test_prepare_video.py"

MUTANTS = [
    # --- contributions: the pyramid of noise and latents, the stage table, the jump, the temporal pyramid ---
    Mutant(
        name="noise-pyramid-missing-x2",
        kind="contribution",
        guards="n_{k-1} = 2 Down(n_k): every level of the noise pyramid (and the sampler's n_0) has unit variance",
        file=PYRAMID,
        find="levels.append(2.0 * down(levels[-1]))",
        replace="levels.append(down(levels[-1]))",
        killers=(f"{TESTS}::test_noise_pyramid_keeps_unit_variance_at_every_level_and_in_the_sampler",),
    ),
    Mutant(
        name="start-noise-not-corrected",
        kind="contribution",
        guards="the corrected start s_k = 1 - a/(2 - a) (gamma = 1/3) that the jump lands on, not the grid's e_{k-1}",
        file=SCHEDULE,
        find="start.append(1.0 - signal_start)",
        replace="start.append(nominal_start)",
        killers=(f"{TESTS}::test_stage_table_matches_the_spec",),
    ),
    Mutant(
        name="timeline-equal-slices",
        kind="contribution",
        guards="each stage's slice of the model timeline is proportional to its corrected path length s_k - e_k",
        file=SCHEDULE,
        find="lengths = [s - e for s, e in zip(start, end)]",
        replace="lengths = [s - e for s, e in zip(nominal, end)]",
        killers=(f"{TESTS}::test_stage_table_matches_the_spec",),
    ),
    Mutant(
        name="end-point-own-noise",
        kind="contribution",
        guards="S_k and E_k share one noise draw n_k, so the conditional path is straight and v* = S_k - E_k",
        file=PYRAMID,
        find="else e * noise[k] + (1 - e) * clean[k]",
        replace="else e * torch.randn_like(noise[k]) + (1 - e) * clean[k]",
        killers=(f"{TESTS}::test_training_targets_are_the_oracle_velocity_of_x_r",),
    ),
    Mutant(
        name="jump-iid-renoise",
        kind="contribution",
        guards="the jump adds block-correlated noise xi ~ N(0, Sigma), so the state has the start law s_k^2 I",
        file=PYRAMID,
        find="xi = block_noise(tuple(upsampled.shape), table.gamma, generator, dtype=z.dtype).to(z.device)",
        replace="xi = torch.randn(upsampled.shape, generator=generator, dtype=z.dtype).to(z.device)",
        killers=(f"{TESTS}::test_jump_function_lands_on_the_start_point_law",),
    ),
    Mutant(
        name="jump-bilinear-up",
        kind="contribution",
        guards="the jump upsamples nearest-neighbour (4 copies per block), the layout the correction assumes",
        file=PYRAMID,
        find="    upsampled = up(z)\n",
        replace='    upsampled = F.interpolate(z, scale_factor=2, mode="bilinear")\n',
        killers=(f"{TESTS}::test_jump_function_lands_on_the_start_point_law",),
    ),
    Mutant(
        name="sampler-model-time-is-local-ratio",
        kind="contribution",
        guards="the sampler feeds the model the stage's slice of the global timeline, never the local ratio r",
        file=SAMPLER,
        find="velocity(z, k, ratios[i], tau)",
        replace="velocity(z, k, ratios[i], ratios[i] * table.train_timesteps)",
        killers=(f"{TESTS}::test_sampler_feeds_the_model_the_stage_slice_of_the_timeline",),
    ),
    Mutant(
        name="history-levels-off-by-one",
        kind="contribution",
        guards="temporal pyramid: unit j-1 at the current stage's level, j-2 one level lower, ..., then level 0",
        file=PYRAMID,
        find="return [max(stage - (previous - unit) + 1, 0) for unit in range(previous)]",
        replace="return [max(stage - (previous - unit), 0) for unit in range(previous)]",
        killers=(f"{TESTS}::test_temporal_pyramid_history_levels_and_alignment",),
    ),
    Mutant(
        name="history-corruption-range-ignored",
        kind="contribution",
        guards="training history is corrupted with sig_h ~ U(0, corrupt_ratio), corrupt_ratio = 1/3",
        file=PYRAMID,
        find="sig = torch.rand(count, generator=generator, dtype=x.dtype) * corrupt_ratio",
        replace="sig = torch.rand(count, generator=generator, dtype=x.dtype)",
        killers=(f"{TESTS}::test_history_corruption_is_one_interpolation_level_per_sample_up_to_corrupt_ratio",),
    ),
    Mutant(
        name="history-corruption-keeps-full-signal",
        kind="contribution",
        guards="history corruption interpolates h <- sig eps + (1 - sig) h, on the flow's own path",
        file=PYRAMID,
        find="+ (1 - s) * level, layout.patch)",
        replace="+ level, layout.patch)",
        killers=(f"{TESTS}::test_history_corruption_is_one_interpolation_level_per_sample_up_to_corrupt_ratio",),
    ),
    Mutant(
        name="causal-mask-dropped",
        kind="contribution",
        guards="temporal-causal attention: history tokens never see the current (noisy) unit",
        file=MODEL,
        find="allowed = packed.valid[:, None, :] & (packed.frame[:, None, :] <= packed.frame[:, :, None])",
        replace="allowed = packed.valid[:, None, :]",
        killers=(f"{TESTS}::test_loss_reads_only_current_tokens_and_history_never_sees_the_current_unit",),
    ),
    Mutant(
        name="positions-not-interpolated",
        kind="contribution",
        guards="low-res tokens take the sin-cos position of their centre on the full-res grid (aligned history)",
        file=MODEL,
        find="ys = (torch.arange(grid_h, dtype=torch.float64) + 0.5) * factor - 0.5",
        replace="ys = torch.arange(grid_h, dtype=torch.float64)",
        killers=(f"{TESTS}::test_low_res_positions_sit_on_the_full_res_grid",),
    ),
    Mutant(
        name="stage-mix-uniform",
        kind="contribution",
        guards="the stage mix of every batch follows sample_ratios [1, 2, 1], not a uniform 1/3 each",
        file=COMPONENT,
        find="columns = np.repeat(np.arange(cfg.stages), cfg.sample_ratios)",
        replace="columns = np.arange(cfg.stages)",
        killers=(f"{TESTS}::test_stage_mix_of_every_batch_follows_sample_ratios",),
    ),
    # --- classic bugs ---
    Mutant(
        name="train-step-index-off-by-one",
        kind="bug",
        guards="r = 1 - i/T with i uniform on 0..T-1: r = 1 (the start point) is trained, r = 0 never is",
        file=PYRAMID,
        find="index = torch.randint(0, table.train_timesteps, (count,), generator=generator)",
        replace="index = torch.randint(1, table.train_timesteps + 1, (count,), generator=generator)",
        killers=(f"{TESTS}::test_training_ratios_cover_the_grid_from_one_and_never_reach_zero",),
    ),
    Mutant(
        name="seed-ignored-in-step-draws",
        kind="bug",
        guards="the per-step draws (units, noise, timesteps, corruption) change with the run's seed",
        file=COMPONENT,
        find="rng = np.random.default_rng([ctx.seed, step, ctx.rank])",
        replace="rng = np.random.default_rng([step, ctx.rank])",
        killers=(f"{TESTS}::test_run_trains_on_train_scores_on_val_and_seeds_its_draws",),
    ),
    Mutant(
        name="training-on-val-split",
        kind="bug",
        guards="training batches come from the train split only: no val clip reaches the optimiser",
        file=COMPONENT,
        find="stream = train_split.batches(",
        replace="stream = val_split.batches(",
        killers=(f"{TESTS}::test_run_trains_on_train_scores_on_val_and_seeds_its_draws",),
    ),
    Mutant(
        name="val-metric-on-train-split",
        kind="bug",
        guards="val/* metrics are computed on the val split, not on clips the model trained on",
        file=COMPONENT,
        find='val_split = LatentShards(ctx.data_dir, cfg.dataset, "val")',
        replace='val_split = LatentShards(ctx.data_dir, cfg.dataset, "train")',
        killers=(f"{TESTS}::test_run_trains_on_train_scores_on_val_and_seeds_its_draws",),
    ),
    Mutant(
        name="sampler-cache-leaks-between-units",
        kind="bug",
        guards="each unit's velocity packs its own history: no packed sequence is reused from an earlier unit",
        file=SAMPLER,
        find=(
            "    cache: dict[int, tuple] = {}\n\n"
            "    def velocity(z: torch.Tensor, k: int, r: float, tau: float) -> torch.Tensor:\n"
            "        k = k % table.stages  # -1: the full-resolution baseline\n"
            "        count = z.shape[0]\n"
        ),
        replace=(
            '    store = model.__dict__.setdefault("_packed_by_batch_size", {})  # memoised on the model\n\n'
            "    def velocity(z: torch.Tensor, k: int, r: float, tau: float) -> torch.Tensor:\n"
            "        k = k % table.stages  # -1: the full-resolution baseline\n"
            "        count = z.shape[0]\n"
            "        cache = store.setdefault(count, {})\n"
        ),
        killers=(f"{TESTS}::test_model_velocity_packs_each_units_own_history",),
    ),
    # --- the paper path (issue 15): real clips at 384p / 121 frames / 24 fps through the video-folder source ---
    Mutant(
        name="video-folder-val-rounds-to-none",
        kind="bug",
        guards="a small folder keeps one val clip at the default val_fraction 0.05, so a run has clips to score",
        file=VIDEO,
        find="num_val = max(1, round(len(files) * val_fraction)) if val_fraction > 0 else 0",
        replace="num_val = round(len(files) * val_fraction)",
        killers=(
            f"{VIDEO_TESTS}::test_video_folder_keeps_one_val_clip_when_the_fraction_rounds_to_none",
            f"{TESTS}::test_paper_path_trains_on_vae_latents_of_384p_121_frame_clips",
        ),
    ),
    Mutant(
        name="video-folder-stand-in-fitted-on-val",
        kind="bug",
        guards="the unshuffle stand-in's mean and std come from the train clips only, never from val",
        file=VIDEO,
        find='for f in split_files["train"]])',
        replace="for f in files])",
        killers=(f"{VIDEO_TESTS}::test_video_folder_stand_in_statistics_come_from_the_train_split_only",),
    ),
    Mutant(
        name="video-frame-rate-ignored",
        kind="bug",
        guards="clips are resampled to the paper's 24 fps by their timestamps, not cut to the first 121 decoded frames",
        file=RAW_VIDEO,
        find="resample_frames(timed, fps, frames)",
        replace="resample_frames(timed, 0, frames)",
        killers=(f"{VIDEO_TESTS}::test_video_clips_are_resampled_to_the_asked_frame_rate",),
    ),
    Mutant(
        name="video-frames-squashed",
        kind="bug",
        guards="frames keep their aspect (scaled to cover 640 x 384, centre-cropped), never squashed to 5:3",
        file=RAW_VIDEO,
        find="    size = (max(width, round(w * scale)), max(height, round(h * scale)))  # PIL's (width, height)\n",
        replace="    size = (width, height)\n",
        killers=(f"{VIDEO_TESTS}::test_frames_are_scaled_to_cover_then_centre_cropped_never_squashed",),
    ),
    Mutant(
        name="run-without-val-clips-crashes-late",
        kind="bug",
        guards="an empty val split (or too few train clips) is one line naming the fix, before the model is built",
        file=COMPONENT,
        find="    if len(val_split) == 0:\n",
        replace="    if False:\n",
        killers=(f"{TESTS}::test_a_dataset_without_val_clips_or_with_too_few_train_clips_fails_before_any_compute",),
    ),
    Mutant(
        name="grad-clip-not-handed-to-strategy",
        kind="bug",
        guards="the released recipe's clip at 1.0 reaches the strategy, which clips (DeepSpeed: in its engine)",
        file=COMPONENT,
        find="ctx.strategy.prepare(net, optimizer, scheduler, grad_clip=cfg.grad_clip)",
        replace="ctx.strategy.prepare(net, optimizer, scheduler)",
        killers=(f"{TESTS}::test_grad_clip_is_handed_to_the_strategy_and_the_pre_clip_norm_logged",),
    ),
]
