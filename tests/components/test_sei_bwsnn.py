"""sei_bwsnn.md §6 checks A-C, no state between calls, KD, teacher reuse, and the T sweep."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cluster.runner import RunFailed, execute, load_request, plan_run
from components.core.errors import ConfigError, Preempted
from components.sei_bwsnn.binary import BinaryLinear, binarise, channel_scale, sign
from components.sei_bwsnn.config import Config
from components.sei_bwsnn.distill import sei_loss
from components.sei_bwsnn.model import build_model, make_neuron, to_input
from components.snn import spike
from pipelines.sweep import expand_sweep, run_sweep


# Check A: binarisation exactness.
def test_binary_weights_take_two_values_per_output_channel():
    # catches a scale over the whole tensor (one value pair for all rows) and torch.sign's third value 0
    torch.manual_seed(0)
    layer = BinaryLinear(20, 7)
    with torch.no_grad():
        layer.weight[0, 0] = 0.0
        layer.weight[3] *= 5  # rows at different scales
    wb = layer.binary_weight().detach()
    a = layer.weight.detach().abs().mean(dim=1)
    for o in range(7):
        magnitudes = wb[o].abs().unique()
        assert len(magnitudes) == 1 and abs(magnitudes.item() - a[o].item()) < 1e-7
        assert len(wb[o].unique()) == 2
    assert wb[0, 0] > 0  # sign(0) = +1
    spikes = (torch.rand(16, 20) > 0.5).float()
    integer = spikes @ sign(layer.weight.detach()).T
    assert torch.equal(integer, integer.round())  # add/subtract arithmetic on spikes


def test_straight_through_gradient_is_clipped_identity():
    # catches an unclipped STE (latent weights drift, never flip back) and a gradient scaled by a_o
    w = (torch.randn(6, 9) * 1.2).requires_grad_(True)
    wb = binarise(w, "detach")
    wb.retain_grad()
    (wb * torch.randn_like(wb)).sum().backward()
    assert torch.equal(w.grad, wb.grad * (w.detach().abs() <= 1))
    assert (w.detach().abs() > 1).any()  # the mask is exercised


def test_autograd_scale_adds_the_gradient_through_a():
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 5, dtype=torch.float64)
    (binarise(w, "autograd") * g).sum().backward()
    s = sign(w.detach())
    expected = channel_scale(w.detach()) * g * (w.detach().abs() <= 1) + s * (g * s).mean(dim=1, keepdim=True)
    torch.testing.assert_close(w.grad, expected)


def test_trained_run_keeps_exactly_binary_weights(params, data_root, tmp_path):
    request = plan_run(
        "sei_bwsnn", params, preset="test", overrides={"kd.beta": 0.0, "kd.teacher": "none"}, data_dir=data_root
    )
    metrics = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False).metrics
    assert metrics["binary_weight_fraction"] == 1.0


# Check B: the self-ensemble identity.
def ensemble_gradient_gap(temporal_grad: str) -> float:
    """Gradients of CE(mean_t o[t]) for the SNN vs T explicit BNNs with constant noise eps[t] (12-16-3, T=4)."""
    torch.manual_seed(0)
    cfg = Config(arch="mlp", neuron={"tau": 2.0, "temporal_grad": temporal_grad})  # lambda = 1 - 1/tau = 0.5
    steps = 4
    w1 = torch.randn(16, 12, dtype=torch.float64) * 0.8
    w2 = torch.randn(3, 16, dtype=torch.float64) * 0.8
    x = torch.randn(32, 12, dtype=torch.float64) * 2
    y = torch.randint(0, 3, (32,))

    def snn_grads():
        a, b = w1.clone().requires_grad_(True), w2.clone().requires_grad_(True)
        current = x @ binarise(a).T
        spikes, membrane = make_neuron(cfg, spiking=True)(current.expand(steps, *current.shape), return_membrane=True)
        out = spikes @ binarise(b).T
        F.cross_entropy(out.mean(0), y).backward()
        return a.grad, b.grad, (membrane - current).detach()  # eps[t] = H[t] - I[t]

    def bnn_ensemble_grads(eps):
        a, b = w1.clone().requires_grad_(True), w2.clone().requires_grad_(True)
        current = x @ binarise(a).T
        outs = [spike(current + eps[t] - 1.0, "sigmoid", 4.0) @ binarise(b).T for t in range(steps)]
        F.cross_entropy(torch.stack(outs).mean(0), y).backward()
        return a.grad, b.grad

    g1, g2, eps = snn_grads()
    assert eps[0].abs().max() == 0 and eps[1:].abs().max() > 0  # step 1 is the noise-free BNN
    h1, h2 = bnn_ensemble_grads(eps)
    return max((g1 - h1).abs().max().item(), (g2 - h2).abs().max().item())


def test_detached_snn_is_exactly_an_ensemble_of_bnns():
    assert ensemble_gradient_gap("detach") < 1e-10


def test_bptt_is_not_the_ensemble():
    # negative control: a mode silently switched to BPTT (or a detach that does nothing) fails here
    assert ensemble_gradient_gap("bptt") > 1e-6


# Check C: learning sanity at smoke scale (spec: >= 0.85; measured 0.96 with seed 0).
def test_smoke_binary_weight_snn_learns_digits(params, data_root, tmp_path):
    request = plan_run("sei_bwsnn", params, preset="smoke", data_dir=data_root)
    metrics = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False).metrics
    assert metrics["test/acc"] >= 0.85, metrics
    assert metrics["binary_weight_fraction"] == 1.0
    assert 0.0 < metrics["spike_rate"] < 1.0
    assert {"test/acc_step_1", "test/acc_step_2", "test/ensemble_gain", "synops_per_sample", "teacher/test_acc"} <= set(
        metrics
    )


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_same_input_twice_gives_the_same_output(arch):
    # catches membrane state kept on a module between batches
    torch.manual_seed(0)
    cfg = Config(arch=arch, width=16, depth=2, heads=2, patch=2, steps=3)
    model = build_model(cfg, (8, 8), 10).eval()
    a = to_input(torch.randint(0, 256, (5, 8, 8), dtype=torch.uint8), arch)
    b = to_input(torch.randint(0, 256, (5, 8, 8), dtype=torch.uint8), arch)
    first = model(b)
    model(a)
    torch.testing.assert_close(model(b), first, rtol=0, atol=0)


def test_distillation_loss():
    torch.manual_seed(0)
    teacher = torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    same = teacher.expand(3, 8, 10)
    assert sei_loss(same, labels, teacher, 1.0, 2.0, "mean").abs() < 1e-6  # KL(p || p) = 0
    steps = torch.randn(3, 8, 10)
    mean_kd = sei_loss(steps, labels, teacher, 1.0, 1.0, "mean")
    per_step = sei_loss(steps, labels, teacher, 1.0, 1.0, "per_step")
    assert per_step > mean_kd  # KL is convex: distilling each member costs more than distilling their mean
    ce_only = sei_loss(steps, labels, None, 0.0, 1.0, "mean")
    torch.testing.assert_close(ce_only, F.cross_entropy(steps.mean(0), labels))


def test_teacher_is_reused_from_a_run_directory(params, data_root, tmp_path):
    first = execute(
        plan_run("sei_bwsnn", params, preset="test", data_dir=data_root),
        run_root=tmp_path,
        data_dir=data_root,
        show_progress=False,
    )
    assert (first.run_dir / "teacher.safetensors").is_file()
    reuse = plan_run(
        "sei_bwsnn", params, preset="test", overrides={"kd.teacher": str(first.run_dir)}, data_dir=data_root
    )
    second = execute(reuse, run_root=tmp_path, data_dir=data_root, show_progress=False)
    assert second.metrics["teacher/test_acc"] == first.metrics["teacher/test_acc"]
    missing = plan_run(
        "sei_bwsnn", params, preset="test", overrides={"kd.teacher": str(tmp_path / "nowhere")}, data_dir=data_root
    )
    with pytest.raises(RunFailed, match="kd.teacher: no teacher weights at"):  # it started: a failed run, exit 1
        execute(missing, run_root=tmp_path / "bad", data_dir=data_root, show_progress=False)


def test_resume_after_preemption_reuses_the_teacher_and_is_bit_exact(params, data_root, tmp_path, preempt_at):
    request = plan_run("sei_bwsnn", params, preset="test", overrides={"epochs": 3}, seed=1, data_dir=data_root)
    common = dict(data_dir=data_root, show_progress=False, checkpoint_every=4)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(20)], **common)
    (cut_dir,) = (tmp_path / "cut" / "sei_bwsnn").iterdir()
    written = (cut_dir / "teacher.safetensors").stat().st_mtime_ns
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
    assert (cut_dir / "teacher.safetensors").stat().st_mtime_ns == written  # loaded, not trained again


def test_kd_without_teacher_is_a_config_error(params, data_root):
    with pytest.raises(ConfigError, match="kd.beta > 0 needs a teacher"):
        plan_run("sei_bwsnn", params, preset="test", overrides={"kd.teacher": "none"}, data_dir=data_root)


def test_snn_timesteps_sweep_reports_accuracy_and_spike_rate(params, data_root, tmp_path):
    trials = expand_sweep(params["sweeps"]["snn_timesteps"])
    assert {(t.overrides["steps"], t.overrides["binary"]) for t in trials} == {
        (s, b) for s in (1, 2, 4, 6) for b in (True, False)
    }
    outcome = run_sweep(
        "snn_timesteps", params, grid={"steps": [1, 2]}, seeds=[0], preset="test", run_root=tmp_path, data_dir=data_root
    )
    rows = [json.loads(line) for line in (outcome.directory / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    assert all({"test/acc", "spike_rate"} <= set(r["metrics"]) for r in rows)
    summary = (outcome.directory / "summary.md").read_text()
    assert "spike_rate mean" in summary and "test/acc mean" in summary
