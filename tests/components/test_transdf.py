"""transdf.md §6 checks 1-5 (check 4 with the spec's margins, over 3 seeds), the warning, and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.runner import execute, load_request, plan_run
from components.core.errors import Preempted
from components.core.series import SeriesTable
from components.transdf.component import scale
from components.transdf.transform import fit_label_transform, transdf_loss


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
    "test MSE 1.11 over 3 seeds (spec prototype 0.86); see components/transdf/README",
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
