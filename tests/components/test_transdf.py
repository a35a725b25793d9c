"""transdf.md §6 checks 1-5 (check 4 with the spec's margins, over 3 seeds), the warning, and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.runner import execute, load_request, plan_run
from components.core.errors import Preempted
from components.core.series import SeriesTable
from components.transdf.component import epoch_lr_factor, scale
from components.transdf.config import Config
from components.transdf.model import Forecaster, decompose
from components.transdf.transform import components_kept, fit_label_transform, transdf_loss


def run(params, data_root, tmp_path, seed=0, **overrides) -> dict[str, float]:
    request = plan_run("transdf", params, preset="smoke", overrides=overrides, seed=seed, data_dir=data_root)
    return execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False).metrics


@pytest.fixture(scope="module")
def co2_labels(data_root) -> np.ndarray:
    table = SeriesTable(data_root, "series/co2")
    return table.windows(scale(table), "train", 96, 48)[1]


# Check 1: transform correctness on co2's training labels (float64, exact).
def test_transform_decorrelates_co2_labels(co2_labels):
    transform = fit_label_transform(co2_labels, 1.0)
    v = transform.components[0]
    assert np.abs(v @ v.T - np.eye(48)).max() < 1e-10
    z = transform.apply(co2_labels)[:, :, 0]
    cov = np.cov(z, rowvar=False)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() / np.diag(cov).max() < 1e-8
    assert (np.diff(np.diag(cov)) <= 1e-12).all()  # ordered by variance
    raw = np.corrcoef(co2_labels[:, :, 0], rowvar=False)
    mask = ~np.eye(48, dtype=bool)
    assert np.abs(raw[mask]).mean() > 0.9 and np.abs(raw[mask]).min() > 0.25  # spec: 0.96, all pairs > 0.25
    assert transform.explained[0, 0] > 0.95 and transform.explained[0, :5].sum() > 0.998  # spec: 0.96, 0.999


def test_a_basis_not_fitted_on_the_labels_fails_the_diagonal_test(co2_labels):
    # the control: a random orthonormal basis (a stub) leaves the components correlated
    transform = fit_label_transform(co2_labels, 1.0)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((48, 48)))
    z = np.einsum("nt,kt->nk", (co2_labels[:, :, 0] - transform.mean[:, 0]) / transform.std[:, 0], q)
    cov = np.cov(z, rowvar=False)
    assert np.abs(cov - np.diag(np.diag(cov))).max() / np.diag(cov).max() > 1e-2


# Check 2: Parseval - K = P with the L2 distance is the per-step-standardised TMSE.
def test_parseval_identity_catches_wrong_axes():
    generator = np.random.default_rng(1)
    labels = np.cumsum(generator.standard_normal((300, 24, 3)), axis=1)  # correlated steps, 3 channels
    transform = fit_label_transform(labels, 1.0)
    pred, label = torch.randn(16, 24, 3, dtype=torch.float64), torch.from_numpy(labels[:16])
    components, std = torch.from_numpy(transform.components), torch.from_numpy(transform.std)
    _, _, transformed = transdf_loss(pred, label, components, std, rec_lambda=0.0, distance="l2")
    standardised_tmse = ((pred - label) / std).pow(2).mean()
    torch.testing.assert_close(transformed, standardised_tmse, rtol=1e-5, atol=0)
    # the control: forgetting the per-step std (a common slip) breaks the identity
    unscaled = torch.einsum("btd,dkt->bkd", pred - label, components).pow(2).mean()
    assert abs(unscaled.item() - standardised_tmse.item()) > 1e-2 * standardised_tmse.item()


# Check 3: ground-truth subspace on the two-sine series.
def test_two_sine_components_span_the_sinusoids(data_root):
    table = SeriesTable(data_root, "series/two_sine")
    labels = table.windows(scale(table), "train", 96, 48)[1]
    transform = fit_label_transform(labels, 4)
    assert transform.rank == 4 and transform.explained[0, :4].sum() >= 0.99
    t = np.arange(48)
    truth = np.stack([f(2 * np.pi * t / p) for p in (24, 7) for f in (np.sin, np.cos)], axis=1)
    truth = truth / transform.std[:, :1]  # the per-step-scaled sinusoids
    q_truth, _ = np.linalg.qr(truth)
    cosines = np.linalg.svd(transform.components[0] @ q_truth, compute_uv=False)
    assert cosines.min() >= 0.999, cosines


# Check 4: training on co2, 3 seeds.
@pytest.fixture(scope="module")
def trained(params_module, data_root, tmp_path_factory) -> dict[str, list[dict[str, float]]]:
    root = tmp_path_factory.mktemp("transdf")
    return {
        loss: [run(params_module, data_root, root, seed=s, **{"loss.type": loss}) for s in range(3)]
        for loss in ("tmse", "transdf")
    }


@pytest.fixture(scope="module")
def params_module():
    from pathlib import Path

    from pipelines.params import load_params

    return load_params(Path(__file__).resolve().parents[2] / "params.yaml")


def mean_mse(runs: list[dict[str, float]]) -> float:
    return float(np.mean([m["test/mse"] for m in runs]))


def test_both_losses_beat_seasonal_naive_three_times(trained):
    for runs in trained.values():
        assert runs[0]["baseline_seasonal/mse"] >= 3 * mean_mse(runs)  # spec: 0.031 vs ~0.006


@pytest.mark.xfail(
    strict=True,
    reason="transdf.md check 4 (medium confidence) does not hold here: TransDF/TMSE "
    "test MSE 1.19 over 3 seeds (spec prototype 0.86); see components/transdf/README",
)
def test_transdf_is_not_worse_than_tmse(trained):
    assert mean_mse(trained["transdf"]) <= 1.05 * mean_mse(trained["tmse"])


# Check 5: truncation with no TMSE - momentum SGD stays fine; the component warns.
def test_truncated_loss_with_sgd_stays_near_tmse(params, data_root, tmp_path, trained):
    with pytest.warns(UserWarning, match="rank_ratio 0.5 < 1 with rec_lambda 0"):
        metrics = run(params, data_root, tmp_path, **{"loss.rank_ratio": 0.5, "optimizer": "sgd"})
    assert np.isfinite(metrics["test/mse"]) and metrics["test/mse"] <= 1.5 * trained["tmse"][0]["test/mse"]
    assert metrics["transform/rank"] == 24


def test_resume_after_preemption_is_bit_exact(params, data_root, tmp_path, preempt_at):
    request = plan_run("transdf", params, preset="test", overrides={"epochs": 3}, seed=3, data_dir=data_root)
    common = dict(data_dir=data_root, show_progress=False, checkpoint_every=10)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(30)], **common)
    (cut_dir,) = (tmp_path / "cut" / "transdf").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
    assert (cut_dir / "label_transform.npz").is_file() and (cut_dir / "forecasts.png").is_file()


# What the mutation table (tests/mutants/transdf.py) guards: each paper switch and classic bug, tested directly.
def correlated_labels(windows: int = 400, pred_len: int = 12, channels: int = 3, seed: int = 4) -> np.ndarray:
    """Random walks whose steps have very different scales (x1 .. x30 across the horizon), per channel."""
    generator = np.random.default_rng(seed)
    walks = np.cumsum(generator.standard_normal((windows, pred_len, channels)), axis=1)
    return walks * np.linspace(1.0, 30.0, pred_len)[None, :, None] + 5.0


def diagonality(basis: np.ndarray, matrix: np.ndarray) -> float:
    """Largest off-diagonal entry of basis @ matrix @ basis.T, relative to its largest diagonal entry."""
    rotated = basis @ matrix @ basis.T
    return float(np.abs(rotated - np.diag(np.diag(rotated))).max() / np.abs(np.diag(rotated)).max())


def test_label_transform_standardises_each_step_before_the_pca():
    # reinit=1 (§3.2 step 2): the per-step mean and POPULATION std of the training labels, then the PCA of the
    # standardised labels, i.e. the eigenvectors of the steps' correlation matrix (not of their covariance).
    labels = correlated_labels()
    transform = fit_label_transform(labels, 1.0)
    np.testing.assert_allclose(transform.mean, labels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(transform.std, labels.std(axis=0, ddof=0), rtol=1e-12)
    for d in range(labels.shape[2]):
        correlation = np.corrcoef(labels[:, :, d], rowvar=False)
        assert diagonality(transform.components[d], correlation) < 1e-10
        # the control: the PCA of the unstandardised labels (reinit=0) does not diagonalise the correlation
        _, eigenvectors = np.linalg.eigh(np.cov(labels[:, :, d], rowvar=False))
        assert diagonality(eigenvectors.T, correlation) > 1e-2


def projected_l1(transform, pred: np.ndarray, label: np.ndarray) -> float:
    """§3.3 from the fitted transform's own apply(): mean over B*K*D of |z(pred) - z(label)|."""
    return float(np.abs(transform.apply(pred) - transform.apply(label)).mean())


def test_transformed_loss_is_the_mean_abs_difference_of_projected_sequences():
    labels = correlated_labels()
    full = fit_label_transform(labels, 1.0)
    # errors along each channel's top component with random signs: z(pred) - z(label) is +-2 on component 0
    signs = np.random.default_rng(5).choice([-1.0, 1.0], size=(32, 1, 1))
    pred = labels[:32] + 2.0 * signs * full.std * np.moveaxis(full.components[:, 0], 0, 1)[None]
    pred += 0.1 * np.random.default_rng(6).standard_normal(pred.shape) * full.std
    for ratio in (1.0, 0.5):
        transform = fit_label_transform(labels, ratio)
        components, std = torch.from_numpy(transform.components), torch.from_numpy(transform.std)
        _, _, transformed = transdf_loss(torch.from_numpy(pred), torch.from_numpy(labels[:32]), components, std, 0.0)
        expected = projected_l1(transform, pred, labels[:32])
        assert transformed.item() == pytest.approx(expected, rel=1e-10), ratio
    # the controls, from the same projections: components as columns, a squared distance, and the abs of a
    # batch mean (module_first=0) all give other numbers, so the comparison above can fail
    z = full.apply(pred) - full.apply(labels[:32])
    columns = np.einsum("ntd,dtk->nkd", (pred - labels[:32]) / full.std, full.components)
    right = projected_l1(full, pred, labels[:32])
    for wrong in (np.abs(columns).mean(), (z**2).mean(), np.abs(z.mean(axis=0)).mean()):
        assert abs(wrong - right) > 0.2 * right


def test_loss_weighs_tmse_by_rec_lambda_and_the_transformed_term_by_alpha():
    labels = correlated_labels()
    transform = fit_label_transform(labels, 1.0)
    pred = torch.from_numpy(labels[:32] + 3.0)
    label = torch.from_numpy(labels[:32])
    components, std = torch.from_numpy(transform.components), torch.from_numpy(transform.std)
    tmse = 9.0  # every step is off by 3
    transformed = projected_l1(transform, pred.numpy(), labels[:32])
    assert abs(tmse - transformed) > 1.0  # the two terms differ, so a swapped weighting shows
    for rec_lambda in (0.0, 0.25, 1.0):
        loss, rec, trans = transdf_loss(pred, label, components, std, rec_lambda)
        assert rec.item() == pytest.approx(tmse, rel=1e-12)
        assert loss.item() == pytest.approx(rec_lambda * tmse + (1 - rec_lambda) * transformed, rel=1e-10)
    # the control: alpha and rec_lambda swapped is another number at rec_lambda = 0.25
    assert abs((0.75 * tmse + 0.25 * transformed) - (0.25 * tmse + 0.75 * transformed)) > 1.0


def test_rank_ratio_keeps_the_floor_of_p_times_gamma_leading_components():
    # K = int(P * rank_ratio) (a floor, as the official code's int()); cases where rounding would differ
    for pred_len, ratio, k in ((48, 0.6, 28), (10, 0.75, 7), (48, 0.99, 47), (336, 0.6, 201), (96, 1.0, 96)):
        assert components_kept(pred_len, ratio) == k, (pred_len, ratio)
        assert round(pred_len * ratio) != k or ratio == 1.0  # the control: rounding gives another K
    assert components_kept(48, 4) == 4 and components_kept(48, 100) == 48  # an absolute count, capped at P
    labels = correlated_labels(pred_len=10)
    full, truncated = fit_label_transform(labels, 1.0), fit_label_transform(labels, 0.75)
    assert truncated.rank == 7
    np.testing.assert_allclose(truncated.components, full.components[:, :7], atol=1e-12)  # the top-K rows


def test_scaler_uses_the_train_split_statistics_only():
    from types import SimpleNamespace

    generator = np.random.default_rng(6)
    values = generator.standard_normal((100, 2)) * [1.0, 4.0] + [0.0, 10.0]
    values[70:] += 50.0  # val and test sit far from train: their statistics must not reach the scaler
    table = SimpleNamespace(values=values, borders={"train": (0, 70), "val": (70, 80), "test": (80, 100)})
    scaled = scale(table)
    np.testing.assert_allclose(scaled[:70].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled[:70].std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(scaled[70:], (values[70:] - values[:70].mean(axis=0)) / values[:70].std(axis=0))
    # the control: statistics of the whole series leave the train rows far from zero mean
    leaked = (values - values.mean(axis=0)) / values.std(axis=0)
    assert np.abs(leaked[:70].mean(axis=0)).max() > 0.1


def test_epoch_schedules_are_timed_as_the_official_loop():
    # TSLib calls adjust_learning_rate(optimizer, epoch + 1, args) after each 0-based epoch: type3 holds the initial
    # lr for epochs 0-3 and is 0.9x from epoch 4; type1 first halves at epoch 2 (transdf.md §3.5, utils/tools.py)
    factors = [epoch_lr_factor("type3", epoch) for epoch in range(7)]
    np.testing.assert_allclose(factors, [1.0, 1.0, 1.0, 1.0, 0.9, 0.81, 0.729], rtol=1e-12)
    np.testing.assert_allclose([epoch_lr_factor("type1", e) for e in range(4)], [1.0, 1.0, 0.5, 0.25], rtol=1e-12)
    assert epoch_lr_factor("constant", 7) == 1.0


def test_decomposition_is_dlinears_moving_average_trend_plus_seasonal_rest():
    x = torch.randn(3, 96, 7, dtype=torch.float64)
    seasonal, trend = decompose(x, 25)
    torch.testing.assert_close(seasonal + trend, x, rtol=0, atol=1e-12)
    # the trend: a centred 25-step mean with the first and last value repeated 12 times at each end
    padded = np.concatenate([np.repeat(x[:, :1].numpy(), 12, 1), x.numpy(), np.repeat(x[:, -1:].numpy(), 12, 1)], 1)
    expected = np.stack([padded[:, t : t + 25].mean(axis=1) for t in range(96)], axis=1)
    np.testing.assert_allclose(trend.numpy(), expected, rtol=0, atol=1e-12)
    # each part has its own map: the forecast is W_s seasonal + W_t trend (+ biases)
    model = Forecaster("linear", 96, 24, decomposition=True, init="dlinear").double()
    with torch.no_grad():
        model.net.weight.normal_()
        model.trend.weight.normal_()
    bias = model(torch.zeros(1, 96, 7, dtype=torch.float64))
    w_s, w_t = model.net.weight.detach(), model.trend.weight.detach()
    expected = torch.einsum("pl,bld->bpd", w_s, seasonal) + torch.einsum("pl,bld->bpd", w_t, trend)
    torch.testing.assert_close(model(x) - bias, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("decomposition", [True, False])
def test_dlinear_init_starts_the_forecast_at_the_window_mean(decomposition):
    # DLinear sets every weight to 1/L: the first forecast of each channel is its input window's mean (+ the biases)
    torch.manual_seed(0)
    model = Forecaster("linear", 96, 48, decomposition=decomposition, init="dlinear")
    x = torch.randn(4, 96, 7) * 3 + torch.arange(7.0)
    with torch.no_grad():
        forecast = model(x) - model(torch.zeros_like(x))
    torch.testing.assert_close(forecast, x.mean(dim=1, keepdim=True).expand(-1, 48, -1), rtol=1e-5, atol=1e-5)
    assert x.mean(dim=1).std() > 1  # the control: the windows' means differ, so a zero init would fail
    cfg = Config()
    assert (cfg.decomposition, cfg.init, cfg.moving_avg, cfg.backbone) == (True, "dlinear", 25, "linear")


def spied_run(params, data_root, root, seed, **overrides):
    """A test-preset run on co2 whose every transdf_loss call and logged record are kept."""
    from components.transdf import component as transdf_component

    calls, logged = [], []
    real = transdf_component.transdf_loss

    def spy(pred, label, components, std, rec_lambda, distance="l1"):
        calls.append({"label": label.numpy().copy(), "components": components, "std": std, "rec_lambda": rec_lambda})
        return real(pred, label, components, std, rec_lambda, distance)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transdf_component, "transdf_loss", spy)
        request = plan_run("transdf", params, preset="test", overrides=overrides, seed=seed, data_dir=data_root)
        sink = lambda metrics, step=None: logged.append(dict(metrics))  # noqa: E731
        result = execute(request, run_root=root, data_dir=data_root, show_progress=False, sinks=[sink])
    return result, calls, logged


@pytest.fixture(scope="module")
def spied(params_module, data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("transdf-spied")
    return {
        name: spied_run(params_module, data_root, root / name, seed, **{"loss.type": loss})
        for name, seed, loss in (
            ("s0", 0, "transdf"),
            ("s0-again", 0, "transdf"),
            ("s1", 1, "transdf"),
            ("tmse", 0, "tmse"),
        )
    }


@pytest.fixture(scope="module")
def co2_splits(data_root):
    table = SeriesTable(data_root, "series/co2")
    values = scale(table)
    return {split: table.windows(values, split, 96, 48) for split in ("train", "val", "test")}


def test_training_fits_the_transform_on_training_labels_only(spied, co2_splits):
    _, calls, _ = spied["s0"]
    train = fit_label_transform(co2_splits["train"][1], 1.0)
    np.testing.assert_allclose(calls[0]["components"].numpy(), train.components, atol=1e-6)
    np.testing.assert_allclose(calls[0]["std"].numpy(), train.std, rtol=1e-6)
    # the control: a fit that also sees the val/test labels has another per-step std
    leaked = fit_label_transform(np.concatenate([co2_splits[s][1] for s in ("train", "val", "test")]), 1.0)
    assert np.abs(leaked.std / train.std - 1).max() > 1e-2


def batch_order(calls, co2_splits) -> list[int]:
    """The training-window index of every label row the loss saw, in order."""
    labels = co2_splits["train"][1].astype(np.float32)
    index = {row.tobytes(): n for n, row in enumerate(labels)}
    assert len(index) == len(labels)
    return [index[row.astype(np.float32).tobytes()] for call in calls for row in call["label"]]


def test_batches_are_training_windows_shuffled_by_the_seed(spied, co2_splits):
    orders = {name: batch_order(spied[name][1], co2_splits) for name in ("s0", "s0-again", "s1")}
    n, per_epoch = len(co2_splits["train"][1]), len(orders["s0"]) // 2  # the test preset: 2 epochs, drop_last
    for order in orders.values():
        assert len(set(order[:per_epoch])) == per_epoch == n - n % 64  # each epoch: distinct windows
        assert order[:per_epoch] != order[per_epoch:]  # a new permutation every epoch
    assert orders["s0"] == orders["s0-again"]  # the order is a function of the seed...
    assert orders["s0"] != orders["s1"]  # ...and the seed changes it


def test_tmse_baseline_trains_on_the_plain_temporal_mse(spied):
    for name, term in (("tmse", "train/loss_rec"), ("s0", "train/loss_trans")):
        _, calls, logged = spied[name]
        steps = [record for record in logged if "train/loss" in record]
        assert steps and all(record["train/loss"] == record[term] for record in steps), name
    assert {call["rec_lambda"] for call in spied["tmse"][1]} == {1.0}
    # the control: the transdf run's loss (rec_lambda 0) is not its TMSE, so the check can tell them apart
    assert any(r["train/loss"] != r["train/loss_rec"] for r in spied["s0"][2] if "train/loss" in r)


def test_model_is_selected_on_validation_mse(spied, co2_splits):
    from safetensors.torch import load_model

    result, _, logged = spied["s0"]
    model = Forecaster("linear", 96, 48)
    load_model(model, str(result.run_dir / "model.safetensors"))
    with torch.no_grad():
        mse = {
            split: (model(torch.from_numpy(x).float()) - torch.from_numpy(y).float()).pow(2).mean().item()
            for split, (x, y) in co2_splits.items()
        }
    epochs = [record["val/mse"] for record in logged if "val/mse" in record]
    assert result.metrics["val/mse_best"] == pytest.approx(min(epochs), rel=1e-12)
    assert result.metrics["val/mse_best"] == pytest.approx(mse["val"], rel=1e-5)  # the tested model's val MSE
    assert result.metrics["test/mse"] == pytest.approx(mse["test"], rel=1e-5)
    assert abs(mse["val"] - mse["test"]) > 0.05 * mse["val"]  # the control: the splits' errors differ


ETTH1_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


def write_etth1_csv(path, rows: int = 17420) -> None:
    """ETTh1.csv's layout: `date,HUFL,...,OT`, hourly from 2016-07-01 00:00:00, 17420 rows, values to 3 decimals."""
    t = np.arange(rows)[:, None]
    rng = np.random.default_rng(0)
    phase = rng.uniform(0, 2 * np.pi, len(ETTH1_COLUMNS))
    values = (
        5
        + 3 * np.sin(2 * np.pi * t / 24 + phase)
        + np.sin(2 * np.pi * t / 168)
        + 0.3 * rng.standard_normal((rows, len(ETTH1_COLUMNS)))
    )
    dates = np.datetime64("2016-07-01T00:00:00", "s") + np.arange(rows).astype("timedelta64[h]")
    lines = ["date," + ",".join(ETTH1_COLUMNS)]
    lines += [f"{str(d).replace('T', ' ')}," + ",".join(f"{v:.3f}" for v in row) for d, row in zip(dates, values)]
    path.write_text("\n".join(lines) + "\n")


def test_paper_path_runs_dlinear_on_an_etth1_csv(params, tmp_path):
    # issue 15: the paper preset (ETTh1, L 96, P 96, DLinear, K = P, alpha 1) on a CSV in ETTh1's own layout, prepared
    # with ETT's 12/4/4-month borders, shrunk in counts only (1 epoch of 128-window batches)
    from pipelines.datasets import prepare
    from tests.paper_path import run_paper_path

    csv = tmp_path / "ETTh1.csv"
    write_etth1_csv(csv)
    prepare("series/etth1", {"source": "csv", "path": str(csv), "split": "ett"}, tmp_path / "data")
    table = SeriesTable(tmp_path / "data", "series/etth1")
    assert table.borders == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}

    shapes = []
    forward = Forecaster.forward

    def spy(self, x):
        shapes.append(tuple(x.shape))
        return forward(self, x)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Forecaster, "forward", spy)
        result = run_paper_path("transdf", params, {"epochs": 1}, tmp_path / "data", tmp_path / "runs")
    assert result.status == "completed"
    assert shapes[0] == (128, 96, 7)  # [batch, L = 96, the 7 ETTh1 channels]
    assert {shape[1:] for shape in shapes} == {(96, 7)}
    metrics = result.metrics
    assert all(np.isfinite(metrics[key]) for key in ("test/mse", "test/mae", "val/mse_best"))
    assert metrics["transform/rank"] == 96  # K = P at rank_ratio 1.0
    assert metrics["test/mse"] < metrics["baseline_last/mse"]  # it learnt the daily cycle in one epoch
    weights = result.run_dir / "model.safetensors"
    assert weights.is_file()
    from safetensors.torch import load_file

    assert {name: tuple(w.shape) for name, w in load_file(str(weights)).items()} == {
        "net.weight": (96, 96),
        "net.bias": (96,),
        "trend.weight": (96, 96),
        "trend.bias": (96,),
    }
