"""hlop.md §6 checks A-C: Oja's subspace rule recovers (and extends, orthogonally) the principal subspace; the
projected-gradient op is exact; HLOP forgets far less than plain sequential fine-tuning from the same seed. Plus
the loop's pieces (subspace sizes, ACC/BWT, per-step activity, splits) and the paper preset end to end on MNIST's
IDX files at 28 x 28."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cluster.runner import execute, plan_run
from components.hlop import model as model_module
from components.hlop.component import component as hlop_component
from components.hlop.component import summary
from components.hlop.config import Config
from components.hlop.projection import projected_linear
from components.hlop.subspace import Subspace


def subspace_error(weight: torch.Tensor, basis: torch.Tensor) -> float:
    """||P_H - U U^T||_F / sqrt(2k), with P_H = H^T (H H^T)^-1 H."""
    projector = weight.T @ torch.linalg.solve(weight @ weight.T, weight)
    return float(torch.linalg.matrix_norm(projector - basis @ basis.T) / math.sqrt(2 * basis.shape[1]))


def synthetic(generator: torch.Generator, basis: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """x = U z + 0.05 eps, z ~ N(0, diag(linspace(3, 1.5))) (hlop.md §6 check A)."""
    scales = torch.linspace(3, 1.5, basis.shape[1], dtype=torch.float64).sqrt()
    z = torch.randn(batch, basis.shape[1], generator=generator, dtype=torch.float64) * scales
    return z @ basis.T + 0.05 * torch.randn(batch, basis.shape[0], generator=generator, dtype=torch.float64)


def orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def trained_subspace(basis: torch.Tensor, batches: int = 200, seed: int = 0) -> Subspace:
    generator = torch.Generator().manual_seed(seed)
    subspace = Subspace(basis.shape[0], dtype=torch.float64)
    subspace.add(basis.shape[1], torch.Generator().manual_seed(seed + 1))
    for _ in range(batches):
        subspace.update(synthetic(generator, basis), lr=0.01, iterations=5, momentum=0.9)
    return subspace


# Check A: the Hebbian / anti-Hebbian rule.
def test_oja_rule_recovers_the_principal_subspace_orthonormally():
    basis = orthonormal(64, 8, seed=0)
    subspace = trained_subspace(basis)
    assert subspace_error(subspace.weight, basis) < 0.05  # spec: 0.0075 after 100 batches
    assert subspace.orthonormality_error() < 0.01  # spec: 1e-4


def test_new_rows_learn_orthogonally_to_frozen_old_rows():
    old_basis = orthonormal(64, 8, seed=0)
    subspace = trained_subspace(old_basis)
    subspace.merge()
    frozen, frozen_momentum = subspace.weight.clone(), subspace.momentum.clone()
    # a different 8-d subspace that overlaps the old one: 4 shared directions, 4 new ones
    fresh = orthonormal(64, 16, seed=5)[:, 8:]
    fresh = fresh - old_basis @ (old_basis.T @ fresh)
    mixed, _ = torch.linalg.qr(torch.cat([old_basis[:, :4], fresh[:, :4]], dim=1))
    subspace.add(4, torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(3)
    for _ in range(200):
        subspace.update(synthetic(generator, mixed), lr=0.01, iterations=5, momentum=0.9)
    new = subspace.weight[8:]
    assert torch.equal(subspace.weight[:8], frozen) and torch.equal(subspace.momentum[:8], frozen_momentum)
    assert float(torch.linalg.matrix_norm(new @ frozen.T)) < 0.05
    # ... and they span what the old rows miss: the residual's directions
    residual = fresh[:, :4] / fresh[:, :4].norm(dim=0)
    residual, _ = torch.linalg.qr(residual)
    assert subspace_error(new, residual) < 0.1


def test_rule_extracts_the_uncentred_second_moment():
    # data = a large constant mean direction plus isotropic noise: E[x x^T]'s top direction is the mean, which the
    # centred covariance would not see (hlop.md §8: the GPM-style guarantee needs the uncentred moment)
    generator = torch.Generator().manual_seed(0)
    mean = torch.zeros(16, dtype=torch.float64)
    mean[3] = 2.0
    subspace = Subspace(16, dtype=torch.float64)
    subspace.add(1, torch.Generator().manual_seed(1))
    for _ in range(200):
        x = mean + 0.3 * torch.randn(64, 16, generator=generator, dtype=torch.float64)
        subspace.update(x, lr=0.01)
    assert abs(float(subspace.weight[0, 3])) > 0.99


def test_spiking_lateral_neurons_match_the_linear_ones():
    basis = orthonormal(64, 8, seed=0)
    generator = torch.Generator().manual_seed(0)
    subspace = Subspace(64, dtype=torch.float64)
    subspace.add(8, torch.Generator().manual_seed(1))
    for _ in range(100):
        subspace.update(synthetic(generator, basis), lr=0.01, lateral_steps=40, lateral_scale=20.0)
    assert subspace_error(subspace.weight, basis) < 0.1  # a review: T_h = 40 already matches the linear rule


# Check B: exactness of the projected-gradient op.
@pytest.mark.parametrize("kind", ["input", "weight"])
def test_projected_weight_gradient_is_orthogonal_to_the_old_subspace(kind):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(20, 32, generator=generator, dtype=torch.float64, requires_grad=True)
    x = torch.randn(50, 32, generator=generator, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(50, 20, generator=generator, dtype=torch.float64)
    basis = orthonormal(32, 6, seed=1).T
    out = projected_linear(x, weight, basis, kind)
    assert torch.equal(out, x @ weight.T)  # forward bit-identical with projection on and off
    out.backward(upstream)
    grad_w, grad_x = weight.grad.clone(), x.grad.clone()
    assert torch.linalg.matrix_norm(grad_w @ basis.T) < 1e-10 * torch.linalg.matrix_norm(grad_w)
    assert torch.allclose(grad_x, upstream @ weight.detach(), atol=1e-12)  # the error is not projected
    plain = upstream.T @ x.detach()
    assert torch.allclose(grad_w, plain - plain @ basis.T @ basis, atol=1e-12)  # only that component removed
    assert torch.linalg.matrix_norm(plain @ basis.T) > 0.1 * torch.linalg.matrix_norm(plain)  # a real removal


def test_first_task1_step_on_the_trained_model_is_nearly_orthogonal_to_the_hebbian_subspace():
    # check B on the network: Hebbian H is only approximately orthonormal, so the leak is bounded by ||H H^T - I||
    from sklearn.datasets import load_digits

    cfg = Config(**hlop_component.presets["smoke"])
    images = torch.from_numpy(load_digits().images).float() / 16
    labels = torch.from_numpy(load_digits().target)
    torch.manual_seed(0)
    model = model_module.build_model(cfg, 64, 10)
    subspace = Subspace(64)
    subspace.add(cfg.k0[0], torch.Generator().manual_seed(0))
    for start in range(0, 1280, 64):
        _, activities = model(images[start : start + 64])
        subspace.update(activities[0], lr=0.01)
    subspace.merge()
    basis = subspace.old_basis()
    ratios = {}
    for name, bases in {"projected": [basis, None, None], "plain": [None, None, None]}.items():
        model.zero_grad()
        model.bases = bases
        logits, _ = model(images[1280:1344])
        torch.nn.functional.cross_entropy(logits, labels[1280:1344]).backward()
        grad = model.layers[0].weight.grad
        ratios[name] = float(torch.linalg.matrix_norm(grad @ basis.T) / torch.linalg.matrix_norm(grad))
    gram = basis @ basis.T
    leak = float(torch.linalg.matrix_norm(gram - torch.eye(len(gram))))
    assert ratios["projected"] <= 1.5 * leak + 1e-4 and ratios["projected"] < 0.1
    assert ratios["plain"] > 0.5  # without projection most of the update lies in the old subspace


def test_forward_is_unchanged_by_the_projection_and_keeps_no_state():
    cfg = Config(**hlop_component.presets["smoke"])
    torch.manual_seed(0)
    model = model_module.build_model(cfg, 64, 10)
    x = torch.rand(8, 8, 8)
    plain, activities = model(x)
    model.bases = [orthonormal(dim, 4, seed=i).T.float() for i, dim in enumerate(model.input_dims)]
    projected, _ = model(x)
    assert torch.equal(plain, projected) and torch.equal(model(x)[0], projected)  # no state leaks between calls
    # HLOP learns from every time step's spikes (hlop.md §8: time-averaged rates forget), [T, B, n] per layer
    assert [tuple(a.shape) for a in activities] == [(4, 8, 64), (4, 8, 100), (4, 8, 100)]
    assert set(torch.unique(activities[1]).tolist()) <= {0.0, 1.0}


# The loop's bookkeeping.
def test_subspace_sizes_follow_the_official_schedule():
    cfg = Config()
    sizes = [cfg.subspace_sizes(task) for task in range(10)]
    assert sizes[0] == [80, 200, 100]
    assert [s[0] for s in sizes[1:]] == [70, 70, 50, 50, 50, 30, 30, 30, 10]
    assert Config(k_scale=0.5).subspace_sizes(0) == [40, 100, 50]


def test_acc_and_bwt_are_the_final_row_and_its_drop_from_the_diagonal():
    matrix = np.array([[0.9, 0.1, 0.0], [0.7, 0.8, 0.1], [0.5, 0.6, 0.95]])
    scores = summary(matrix)
    assert scores["ACC"] == pytest.approx((0.5 + 0.6 + 0.95) / 3)
    assert scores["BWT"] == pytest.approx(((0.5 - 0.9) + (0.6 - 0.8)) / 2)


def test_tasks_train_on_their_train_split_and_are_scored_on_the_test_split(data_root, tmp_path):
    from components.core.contract import RunContext
    from components.hlop.component import load_tasks

    cfg = Config(**hlop_component.presets["smoke"])
    tasks, inputs, classes = load_tasks(cfg, RunContext(run_dir=tmp_path, data_dir=data_root))
    assert [(t.train.split, t.evaluation.split) for t in tasks] == [
        (f"task{k}-train", f"task{k}-test") for k in range(3)
    ]
    assert (inputs, classes) == (64, 10)


def test_too_large_subspaces_are_a_config_error_before_training(params, data_root, tmp_path):
    from cluster.runner import RunFailed

    request = plan_run("hlop", params, preset="smoke", overrides={"k_scale": 2.0}, data_dir=data_root)
    with pytest.raises(RunFailed, match="layer 0's subspaces reach 80 of its 64 inputs") as failure:
        execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)
    assert not list(failure.value.run_dir.glob("*.safetensors"))  # raised before any training


# Check C: forgetting against the paired baseline (same seed, data, init and batches).
@pytest.mark.parametrize("seed", [0, 1])
def test_hlop_forgets_far_less_than_sequential_fine_tuning(params, data_root, tmp_path, seed):
    methods = ("hlop", "baseline", "svd") if seed == 0 else ("hlop", "baseline")
    request = plan_run("hlop", params, preset="smoke", seed=seed, overrides={"methods": methods}, data_dir=data_root)
    result = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)
    m = result.metrics
    # spec prototype: baseline ACC 0.52/0.56, BWT -0.60/-0.56; HLOP ACC 0.90/0.87, BWT -0.08/-0.09
    assert m["hlop/BWT"] - m["baseline/BWT"] >= 0.25, m
    assert m["hlop/ACC"] - m["baseline/ACC"] >= 0.15, m
    assert m["hlop/BWT"] > -0.2 and m["baseline/BWT"] < -0.3, m
    matrices = json.loads((result.run_dir / "acc_matrix.json").read_text())
    assert set(matrices) == set(methods) and len(matrices["hlop"]) == 3
    if seed == 0:  # the SVD subspace at HLOP's sizes protects as well (GPM-style control)
        assert m["svd/BWT"] - m["baseline/BWT"] >= 0.25, m
        assert (result.run_dir / "hlop-task2.safetensors").is_file()


# The paper preset end to end.


def test_paper_path_pmnist_from_idx_files_at_28x28(params, tmp_path, monkeypatch):
    """The paper preset (PMNIST: 10 permutations of MNIST's IDX files at 28 x 28, MLP 784-800-800-10 with BPTT
    T = 6, one epoch per task, SGD 0.1, the official subspace sizes and eta) shrunk only in counts."""
    from pipelines.datasets import prepare
    from tests.paper_path import record_inputs, run_paper_path
    from tests.pipelines.test_prepare_mnist import write_idx_files

    write_idx_files(tmp_path / "mnist", train=96, test=48)
    prepare("images/mnist", {"source": "mnist-idx", "src": str(tmp_path / "mnist")}, tmp_path / "data")
    prepare("continual/pmnist", {"source": "permuted-tasks", "parent": "images/mnist"}, tmp_path / "data")
    shapes = record_inputs(monkeypatch, model_module, "build_model")
    counts = {"tasks": 2, "hidden": [48, 48], "k0": [8, 16, 8], "k_inc": [4, 4, 4], "batch_size": 16}
    result = run_paper_path("hlop", params, counts, tmp_path / "data", tmp_path / "runs")
    assert shapes[0] == (16, 28, 28)  # MNIST's resolution, at the shrunk batch
    metrics = result.metrics
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"hlop/ACC", "baseline/BWT", "svd/ACC", "BWT_gain"} <= set(metrics)
    manifest = json.loads((tmp_path / "data/continual/pmnist/manifest.json").read_text())
    assert len(manifest["tasks"]) == 10 and manifest["shape"] == [28, 28]
