"""Mutants of transdf (TransDF / Time-o1, transformed label alignment): see tests/mutants/harness.py."""

from tests.mutants.harness import Mutant

TRANSFORM = "components/transdf/transform.py"
COMPONENT = "components/transdf/component.py"

MUTANTS = [
    # The paper's switches (transdf.md §3.2-3.3, §8).
    Mutant(
        name="per-step-standardisation-dropped",
        kind="contribution",
        guards="reinit=1: each label step is divided by its training std before the PCA (and in the loss); "
        "without it the PCA is dominated by the high-variance steps",
        file=TRANSFORM,
        find="std = np.where(std > 0, std, 1.0)",
        replace="std = np.ones_like(std)",
        killers=("tests/components/test_transdf.py::test_label_transform_standardises_each_step_before_the_pca",),
    ),
    Mutant(
        name="components-used-as-columns",
        kind="contribution",
        guards="the projection z[k, d] = sum_t C[d, k, t] (...)[t, d]: components are rows (K x P) of the "
        "per-channel basis, projected over time",
        file=TRANSFORM,
        find='torch.einsum("btd,dkt->bkd", (pred - label) / std, components)',
        replace='torch.einsum("btd,dtk->bkd", (pred - label) / std, components)',
        killers=(
            "tests/components/test_transdf.py::test_transformed_loss_is_the_mean_abs_difference_of_projected_sequences",
        ),
    ),
    Mutant(
        name="l2-distance-in-transformed-domain",
        kind="contribution",
        guards="the L1 (MAE) distance between z(pred) and z(label), not the squared one (component variances "
        "span decades)",
        file=TRANSFORM,
        find="z.abs().mean()",
        replace="z.pow(2).mean()",
        killers=(
            "tests/components/test_transdf.py::test_transformed_loss_is_the_mean_abs_difference_of_projected_sequences",
        ),
    ),
    Mutant(
        name="batch-mean-before-abs",
        kind="contribution",
        guards="module_first=1: |z(pred) - z(label)| per sample, component and channel, then the mean over "
        "B*K*D (not the abs of a batch mean)",
        file=TRANSFORM,
        find="z.abs().mean()",
        replace="z.mean(dim=0).abs().mean()",
        killers=(
            "tests/components/test_transdf.py::test_transformed_loss_is_the_mean_abs_difference_of_projected_sequences",
        ),
    ),
    Mutant(
        name="alpha-and-rec-lambda-swapped",
        kind="contribution",
        guards="L = rec_lambda * TMSE + (1 - rec_lambda) * L_trans: rec_lambda weighs TMSE, alpha = 1 - rec_lambda "
        "the transformed loss",
        file=TRANSFORM,
        find="rec_lambda * tmse + (1.0 - rec_lambda) * transformed",
        replace="(1.0 - rec_lambda) * tmse + rec_lambda * transformed",
        killers=(
            "tests/components/test_transdf.py::test_loss_weighs_tmse_by_rec_lambda_and_the_transformed_term_by_alpha",
        ),
    ),
    Mutant(
        name="rank-ratio-rounded",
        kind="contribution",
        guards="truncation K = int(P * rank_ratio) (Python int, a floor), the top-K components",
        file=TRANSFORM,
        find="int(pred_len * rank_ratio)",
        replace="round(pred_len * rank_ratio)",
        killers=(
            "tests/components/test_transdf.py::test_rank_ratio_keeps_the_floor_of_p_times_gamma_leading_components",
        ),
    ),
    # Classic bugs of a forecaster with a fitted transform, splits, early stopping and a seed.
    Mutant(
        name="scaler-fit-on-all-splits",
        kind="bug",
        guards="the per-channel z-score uses the train split's mean and std only (no val/test statistics)",
        file=COMPONENT,
        find="mean, std = table.values[start:end].mean(axis=0), table.values[start:end].std(axis=0)",
        replace="mean, std = table.values.mean(axis=0), table.values.std(axis=0)",
        killers=("tests/components/test_transdf.py::test_scaler_uses_the_train_split_statistics_only",),
    ),
    Mutant(
        name="transform-fit-on-all-labels",
        kind="bug",
        guards="the label PCA is fitted on the training windows' labels only, never on val/test labels",
        file=COMPONENT,
        find="load_or_fit_transform(cfg, table, y_train, ctx.run_dir)",
        replace="load_or_fit_transform(cfg, table, np.concatenate([y_train, y_val, y_test]), ctx.run_dir)",
        killers=("tests/components/test_transdf.py::test_training_fits_the_transform_on_training_labels_only",),
    ),
    Mutant(
        name="model-selected-on-test-split",
        kind="bug",
        guards="early stopping / best-checkpoint selection read the validation split's MSE, not the test split's",
        file=COMPONENT,
        find='errors(predict(model, x_val, cfg, ctx.device), y_val, "val")',
        replace='errors(predict(model, x_test, cfg, ctx.device), y_test, "val")',
        killers=("tests/components/test_transdf.py::test_model_is_selected_on_validation_mse",),
    ),
    Mutant(
        name="shuffle-seed-ignored",
        kind="bug",
        guards="the run's seed picks the training batch order (the linear model is zero-initialised, so the order "
        "is all a seed changes)",
        file=COMPONENT,
        find="np.random.default_rng([ctx.seed, epoch])",
        replace="np.random.default_rng(epoch)",
        killers=("tests/components/test_transdf.py::test_batches_are_training_windows_shuffled_by_the_seed",),
    ),
    Mutant(
        name="tmse-baseline-uses-transdf-loss",
        kind="bug",
        guards="loss.type=tmse trains on the plain temporal MSE (rec_lambda = 1), the baseline TransDF is "
        "compared against",
        file=COMPONENT,
        find='rec_lambda = 1.0 if cfg.loss.type == "tmse" else cfg.loss.rec_lambda',
        replace="rec_lambda = cfg.loss.rec_lambda",
        killers=("tests/components/test_transdf.py::test_tmse_baseline_trains_on_the_plain_temporal_mse",),
    ),
    Mutant(
        name="type3-decay-off-by-one",
        kind="bug",
        guards="TSLib's type3 schedule as the official loop times it (adjust_learning_rate(epoch + 1) after each "
        "epoch): lr constant for 0-based epochs 0-3, then x0.9 per epoch (0.9 at epoch 4, not 3)",
        file=COMPONENT,
        find="0.9 ** (epoch - 3)",
        replace="0.9 ** (epoch - 2)",
        killers=("tests/components/test_transdf.py::test_epoch_schedules_are_timed_as_the_official_loop",),
    ),
    Mutant(
        name="type1-halves-one-epoch-early",
        kind="bug",
        guards="TSLib's type1 schedule as the official loop times it: lr held for epochs 0-1, halved from epoch 2",
        file=COMPONENT,
        find="0.5 ** max(epoch - 1, 0)",
        replace="0.5**epoch",
        killers=("tests/components/test_transdf.py::test_epoch_schedules_are_timed_as_the_official_loop",),
    ),
    # The paper preset's backbone: DLinear (series decomposition, weights at 1/L), the paper's DLinear baseline.
    Mutant(
        name="dlinear-init-at-zero",
        kind="bug",
        guards="DLinear's init: every weight 1/L, so the first forecast is the input window's mean (not zero)",
        file="components/transdf/model.py",
        find="nn.init.constant_(net.weight, 1.0 / seq_len)",
        replace="nn.init.zeros_(net.weight)",
        killers=("tests/components/test_transdf.py::test_dlinear_init_starts_the_forecast_at_the_window_mean",),
    ),
    Mutant(
        name="trend-without-edge-replication",
        kind="bug",
        guards="DLinear's moving average repeats the first and last value (kernel - 1) // 2 times at the ends; "
        "zero padding drags the trend to 0 at both edges of the window",
        file="components/transdf/model.py",
        find="padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)",
        replace="padded = F.pad(x, (0, 0, pad, pad))",
        killers=(
            "tests/components/test_transdf.py::test_decomposition_is_dlinears_moving_average_trend_plus_seasonal_rest",
        ),
    ),
    Mutant(
        name="trend-through-the-seasonal-map",
        kind="bug",
        guards="DLinear maps the trend and the seasonal part with their own weights (Linear_Trend, Linear_Seasonal)",
        file="components/transdf/model.py",
        find="self.over_time(self.net, seasonal) + self.over_time(self.trend, trend)",
        replace="self.over_time(self.net, seasonal) + self.over_time(self.net, trend)",
        killers=(
            "tests/components/test_transdf.py::test_decomposition_is_dlinears_moving_average_trend_plus_seasonal_rest",
        ),
    ),
    Mutant(
        name="paper-preset-without-decomposition",
        kind="bug",
        guards="the paper preset's model is DLinear with its series decomposition (Config default), not a bare "
        "linear map",
        file="components/transdf/config.py",
        find="decomposition: bool = True",
        replace="decomposition: bool = False",
        killers=(
            "tests/components/test_transdf.py::test_dlinear_init_starts_the_forecast_at_the_window_mean",
            "tests/components/test_transdf.py::test_paper_path_runs_dlinear_on_an_etth1_csv",
        ),
    ),
]
