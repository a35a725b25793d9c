"""sei_bwsnn.md §6 checks A-C, no state between calls, KD, teacher reuse, and the T sweep."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from cluster.runner import RunFailed, execute, load_request, plan_run
from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted
from components.core.optim import build_optimizer
from components.core.shards import ImageShards
from components.core.strategy import plain_strategy
from components.sei_bwsnn import component as sei_component
from components.sei_bwsnn.binary import BinaryLinear, binarise, channel_scale, sign
from components.sei_bwsnn.component import SEIBWSNN, evaluate
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
    result = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)
    assert result.metrics["binary_weight_fraction"] == 1.0
    # and the trained model's forward pass computes with them: its binary FFN layers cannot tell their latent
    # weights from a_o sign(W) (binary_weight_fraction only inspects the binariser's output)
    model = build_model(request.config, (8, 8), 10)
    model.load_state_dict(load_file(str(result.run_dir / "model.safetensors")))
    torch.manual_seed(0)
    x = to_input(torch.randint(0, 256, (32, 8, 8), dtype=torch.uint8), request.config.arch).double()
    moved = invariant_linears(model, x)
    assert {name for name, gap in moved.items() if gap < 1e-9} == {"blocks.0.fc1", "blocks.0.fc2"}, moved


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


# Mechanism tests written against tests/mutants/sei_bwsnn.py: each checks one property of the spec directly, with a
# negative control that shows the check can fail.
def invariant_linears(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """For every linear layer: how much the output moves when its latent W is replaced by a_o sign(W) (float64).

    A layer that computes with its binarised weights cannot tell W from a_o sign(W) (same signs, same row means
    of |W|); a full-precision one can."""
    model = model.double().train()  # batch statistics: BN keeps the pre-activations near the threshold
    reference = model(x)
    moved = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            saved = module.weight.detach().clone()
            with torch.no_grad():
                module.weight.copy_(channel_scale(saved) * sign(saved))
                moved[name] = (model(x) - reference).abs().max().item()
                module.weight.copy_(saved)
    return moved


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_forward_pass_uses_binarised_weights_in_exactly_the_binary_layers(arch, monkeypatch):
    # spec 3.3: binary layers compute with a_o sign(W); stem, head and (transformer) attention and patch embedding
    # stay full precision, only the FFN/MLP linears are binary [abs]
    torch.manual_seed(0)
    cfg = Config(arch=arch, width=16, depth=2, heads=2, patch=2, steps=2)
    model = build_model(cfg, (8, 8), 10)
    x = to_input(torch.randint(0, 256, (32, 8, 8), dtype=torch.uint8), arch).double()
    expected = {"layers.0", "layers.1"} if arch == "mlp" else {f"blocks.{i}.fc{j}" for i in (0, 1) for j in (1, 2)}
    moved = invariant_linears(model, x)
    assert {name for name, gap in moved.items() if gap < 1e-9} == expected, moved
    assert all(gap > 1e-3 for name, gap in moved.items() if name not in expected), moved  # FP layers matter

    layer = BinaryLinear(12, 5).double()
    spikes = (torch.rand(7, 12, dtype=torch.float64) > 0.5).double()
    w = layer.weight.detach()
    torch.testing.assert_close(layer(spikes), spikes @ (channel_scale(w) * sign(w)).T, rtol=0, atol=1e-12)

    # negative control: a forward pass on the latent weights is seen (no layer is invariant any more)
    monkeypatch.setattr(BinaryLinear, "forward", lambda self, inp: F.linear(inp, self.weight))
    moved = invariant_linears(build_model(cfg, (8, 8), 10), x)
    assert not {name for name, gap in moved.items() if gap < 1e-9}, moved


def recorded(model: torch.nn.Module, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """Run-time tensors by forward hooks: names maps a module name to 'in' (its input) or 'out' (its output)."""
    seen: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    for name, which in names.items():

        def hook(module, inputs, output, name=name, which=which):
            seen[name] = (inputs[0] if which == "in" else output).detach()

        modules[name].register_forward_hook(hook)
    return seen


def mlp_shortcut_gaps(shortcut: str | None) -> list[float]:
    """|h_{l+1} - (h_l + BN(W_b SN(h_l)))| per binary layer of the MLP, h_l the real-valued input of neuron l."""
    torch.manual_seed(0)
    cfg = Config(arch="mlp", width=16, depth=3, steps=2, **({"shortcut": shortcut} if shortcut else {}))
    model = build_model(cfg, (8, 8), 10).double()  # float64: (h + out) - h - out is 0 up to 1e-15
    seen = recorded(model, {f"neurons.{i}": "in" for i in range(4)} | {f"norms.{i}": "out" for i in range(3)})
    model(torch.rand(8, 64, dtype=torch.float64) * 4)
    assert not torch.equal(seen["neurons.1"], seen["neurons.1"].round())  # the stream is real-valued, not spikes
    return [(seen[f"neurons.{i + 1}"] - seen[f"neurons.{i}"] - seen[f"norms.{i}"]).abs().max().item() for i in range(3)]


def ffn_shortcut_gaps(shortcut: str | None) -> tuple[float, float]:
    """The FFN's inner shortcut (W2_b's neuron gets BN(W1_b SN(x)) + R(x)) and its outer one (y = x + BN(...))."""
    torch.manual_seed(0)
    chosen = {"shortcut": shortcut} if shortcut else {}
    cfg = Config(arch="transformer", width=8, depth=1, heads=2, patch=2, mlp_ratio=3, steps=2, **chosen)
    model = build_model(cfg, (8, 8), 10).double()
    names = {"blocks.0.ffn_in": "in", "blocks.0.norm1": "out", "blocks.0.ffn_mid": "in", "blocks.0.norm2": "out"}
    seen = recorded(model, names | {"blocks.0": "out"})
    model(torch.rand(4, 1, 8, 8, dtype=torch.float64))
    x = seen["blocks.0.ffn_in"]
    inner = seen["blocks.0.ffn_mid"] - seen["blocks.0.norm1"] - torch.cat([x] * 3, dim=-1)  # R(x): x, x, x
    outer = seen["blocks.0"] - x - seen["blocks.0.norm2"]
    return inner.abs().max().item(), outer.abs().max().item()


def test_every_binary_layer_has_a_real_valued_shortcut():
    # spec 3.4, the default "multiple shortcuts": h <- h + BN(W_b SN(h)) around every binary layer of the MLP, and
    # y = x + BN(W2_b SN(BN(W1_b SN(x)) + R(x))) in the Transformer's FFN; the shortcut adds h, never the spikes
    assert max(mlp_shortcut_gaps(None)) < 1e-9
    assert max(ffn_shortcut_gaps(None)) < 1e-9
    # negative controls: without the per-layer shortcuts the same checks fail
    assert min(mlp_shortcut_gaps("none")) > 1e-2
    inner, outer = ffn_shortcut_gaps("block")
    assert inner > 1e-2 and outer < 1e-9


def lif_by_hand(currents: list[float], decay: float, reset: str, gain: float = 1.0) -> list[float]:
    """Spec 3.1: u[t] = decay (u[t-1] - theta s[t-1]) + I[t] (soft) or decay u[t-1] (1 - s[t-1]) + I[t] (hard)."""
    u, s, membranes = 0.0, 0.0, []
    for current in currents:
        u = decay * (u - s if reset == "soft" else u * (1 - s)) + gain * current
        s = float(u >= 1.0)
        membranes.append(u)
    return membranes


def test_neuron_is_the_soft_reset_lif_of_the_spec():
    # u[t] = lambda (u[t-1] - theta s[t-1]) + I[t], lambda = 1 - 1/tau, theta = 1, the input not scaled by 1/tau;
    # tau = 1.25 (lambda 0.2) tells lambda from 1/tau, which are equal at the default tau = 2
    cfg = Config(arch="mlp", neuron={"tau": 1.25})
    currents = [1.6, 0.3, 0.9, 1.2, 0.0, 0.7]
    spikes, membranes = make_neuron(cfg, spiking=True)(
        torch.tensor(currents, dtype=torch.float64)[:, None], return_membrane=True
    )
    expected = lif_by_hand(currents, 0.2, "soft")
    torch.testing.assert_close(membranes[:, 0], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(spikes[:, 0], (torch.tensor(expected) >= 1).double())
    # negative controls: a hard reset, a leak of 1/tau, and an input scaled by 1/tau each give other membranes
    for wrong in (
        lif_by_hand(currents, 0.2, "hard"),
        lif_by_hand(currents, 0.8, "soft"),
        lif_by_hand(currents, 0.2, "soft", gain=0.8),
    ):
        assert (membranes[:, 0] - torch.tensor(wrong, dtype=torch.float64)).abs().max() > 0.05


def test_distillation_gradient_is_the_tempered_softmax_difference():
    # spec 3.5: L = (1 - beta) CE(o, y) + beta tau^2 KL(p_T || softmax(o / tau)), o = mean_t o[t]. Its gradient in
    # the student's logits: (1 - beta)(softmax(o) - onehot(y)) / B + beta tau (softmax(o / tau) - p_T) / B, spread
    # over the T steps with weight 1/T; per_step distils each o[t] alike
    torch.manual_seed(0)
    steps, batch, classes, tau, beta = 3, 6, 5, 3.0, 0.3
    teacher = torch.randn(batch, classes, dtype=torch.float64) * 3
    labels = torch.randint(0, classes, (batch,))
    logits = (torch.randn(steps, batch, classes, dtype=torch.float64) * 3).requires_grad_(True)
    p_teacher = F.softmax(teacher / tau, dim=-1)

    def expected(o: torch.Tensor, kl_grad) -> torch.Tensor:
        ce = (F.softmax(o, dim=-1) - F.one_hot(labels, classes)) / batch
        return ((1 - beta) * ce + beta * kl_grad(o)) / steps

    def forward_kl(o: torch.Tensor) -> torch.Tensor:
        return tau * (F.softmax(o / tau, dim=-1) - p_teacher) / batch

    def gradient(target: str) -> torch.Tensor:
        logits.grad = None
        sei_loss(logits, labels, teacher, beta, tau, target).backward()
        return logits.grad

    mean = logits.detach().mean(0)
    right = expected(mean, forward_kl).expand(steps, batch, classes)
    torch.testing.assert_close(gradient("mean"), right)
    per_step = gradient("per_step")
    ce_part = (1 - beta) * (F.softmax(mean, dim=-1) - F.one_hot(labels, classes)) / batch / steps
    torch.testing.assert_close(per_step, ce_part + beta * forward_kl(logits.detach()) / steps)

    # negative controls: the reverse KL(student || teacher), the KL without tau^2, and an unweighted KD term
    # have other gradients
    def reverse_kl(o: torch.Tensor) -> torch.Tensor:
        o = o.clone().requires_grad_(True)
        log_q = F.log_softmax(o / tau, dim=-1)
        (tau * tau * (log_q.exp() * (log_q - p_teacher.log())).sum() / batch).backward()
        return o.grad

    for wrong in (
        expected(mean, reverse_kl),
        expected(mean, lambda o: forward_kl(o) / tau**2),
        expected(mean, lambda o: forward_kl(o) / beta),
    ):
        assert (gradient("mean") - wrong.expand(steps, batch, classes)).abs().max() > 1e-4


class FixedLogits(torch.nn.Module):
    """A 'model' whose per-step logits [T, N, C] are given: evaluate() sees exactly these."""

    def __init__(self, step_logits: torch.Tensor):
        super().__init__()
        self.step_logits = step_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step_logits[:, : len(x)]


class FixedSplit:
    def __init__(self, labels: torch.Tensor):
        self.labels = labels.numpy()

    def arrays(self):
        return torch.zeros(len(self.labels), 8, 8, dtype=torch.uint8).numpy(), self.labels


def test_reported_accuracy_is_the_self_ensembles():
    # spec 3.2: the readout is the mean of the T members' logits; each member alone gives acc_step_t, and
    # ensemble_gain = acc - mean_t acc_step_t. Here each member is right on half the samples, their mean on all
    labels = torch.zeros(4, dtype=torch.long)
    first = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    second = first.flip(0)
    step_logits = torch.stack([first, second])
    cfg = Config(arch="mlp", steps=2, normalise=False)  # FixedSplit's placeholder images are not RGB
    metrics = evaluate(FixedLogits(step_logits), FixedSplit(labels), cfg, "cpu", "test", fanout={})
    mean = step_logits.mean(0)
    assert metrics["test/acc"] == 1.0 and metrics["test/acc_step_1"] == metrics["test/acc_step_2"] == 0.5
    assert metrics["test/ensemble_gain"] == 0.5
    assert metrics["test/loss"] == pytest.approx(F.cross_entropy(mean, labels).item())
    # negative control: one member's readout (the last step's) would report 0.5, not 1.0
    assert (step_logits[-1].argmax(-1) == labels).float().mean() == 0.5


def small_run_config(**overrides) -> Config:
    """The smoke MLP shrunk to a second: 16 wide, 2 binary layers, T = 2, one epoch (teacher: one epoch)."""
    fields = {**SEIBWSNN.presets["smoke"], "width": 16, "depth": 2, "epochs": 1, "batch_size": 32, "lr": 5e-3}
    return Config(**fields | {"kd": {"teacher_width": 16, "teacher_epochs": 1}} | overrides)


def test_run_fits_on_train_only_reports_each_split_and_leaves_binary_weights_undecayed(
    data_root, tmp_path, monkeypatch
):
    # the teacher and the student draw batches from the train split only; test/* and val/* metrics are those of
    # the saved model on the test and val splits; the latent binary weights get weight_decay = cfg.weight_decay = 0
    cfg = small_run_config()
    drawn, optimizers = [], []
    original_batches = ImageShards.batches

    def spy_batches(self, *args, **kwargs):
        drawn.append(self.split)
        return original_batches(self, *args, **kwargs)

    def spy_optimizer(*args, **kwargs):
        optimizers.append((args[1], build_optimizer(*args, **kwargs)))
        return optimizers[-1][1]

    monkeypatch.setattr(ImageShards, "batches", spy_batches)
    monkeypatch.setattr(sei_component, "build_optimizer", spy_optimizer)
    metrics = sei_component.train_student(cfg, RunContext(tmp_path, data_root, strategy=plain_strategy()))
    assert drawn == ["train", "train"]  # the teacher's stream, then the student's

    model = build_model(cfg, (8, 8), 10)
    model.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    loss = {}
    for split in ("val", "test"):
        images, labels = ImageShards(data_root, cfg.dataset, split).arrays()
        labels = torch.from_numpy(labels)
        with torch.no_grad():
            logits = model.eval()(to_input(torch.from_numpy(images), "mlp")).mean(0)
        loss[split] = F.cross_entropy(logits, labels).item()
        assert metrics[f"{split}/loss"] == pytest.approx(loss[split], rel=1e-6)
        assert metrics[f"{split}/acc"] == (logits.argmax(-1) == labels).float().mean().item()
    assert abs(loss["val"] - loss["test"]) > 1e-3  # negative control: the two splits are told apart

    def binary_decay(model, optimizer) -> set[float]:
        binary = {id(m.weight) for m in model.modules() if isinstance(m, BinaryLinear)}
        return {g["weight_decay"] for g in optimizer.param_groups for p in g["params"] if id(p) in binary}

    student, optimizer = optimizers[-1]
    assert binary_decay(student, optimizer) == {0.0}
    assert binary_decay(student, build_optimizer("adamw", student)) == {0.01}  # negative control: AdamW's default


def student_initial_weights(data_root, tmp_path, monkeypatch, seed: int) -> dict[str, torch.Tensor]:
    """The student's weights as train_student builds them for this seed (the run stops before training)."""

    class Built(Exception):
        pass

    def stop(name, model, **kwargs):
        raise Built({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(sei_component, "build_optimizer", stop)
    cfg = small_run_config(kd={"teacher": "none", "beta": 0.0})
    with pytest.raises(Built) as built:
        sei_component.train_student(cfg, RunContext(tmp_path, data_root, seed=seed, strategy=plain_strategy()))
    return built.value.args[0]


def test_seed_sets_the_students_initial_weights(data_root, tmp_path, monkeypatch):
    # seeds are independent repeats: a different seed gives different initial weights, the same seed the same
    first, again, other = (student_initial_weights(data_root, tmp_path, monkeypatch, s) for s in (0, 0, 1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["layers.0.weight"], other["layers.0.weight"])


def write_imagenet_layout(root, side: int, classes: int = 3, train: int = 4, val: int = 2) -> None:
    """ImageNet's layout, train/ and val/ only (no test split): <root>/<split>/n0000000<c>/*.JPEG, each class
    its own colour plus noise; odd images are wider than tall (the prepare centre-crops them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (side, side + side // 4 * (i % 2), 3)
                pixels = rng.integers(0, 64, shape) + np.eye(3, dtype=np.int64)[c % 3] * 180
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{split}_{c}_{i}.JPEG", quality=90)


def prepare_imagenet_layout(root, side: int) -> None:
    from pipelines.datasets import prepare

    write_imagenet_layout(root / "raw", side)
    spec = {"source": "imagefolder", "src": str(root / "raw"), "size": side, "format": "jpg"}
    prepare("images/imagenet", spec, root / "data")


def test_run_without_a_test_split_saves_weights_and_reports_val(tmp_path, monkeypatch):
    # ImageNet's layout has train/ and val/ only: the empty test split is not evaluated (no torch.cat of
    # nothing), the self-ensemble report goes to val, and the weights are saved before any evaluation
    prepare_imagenet_layout(tmp_path, 16)
    cfg = Config(
        image_size=16, width=16, depth=1, heads=2, patch=8, epochs=2, batch_size=4, eval_batch_size=4,
        kd={"teacher_width": 16, "teacher_epochs": 1},
    )  # fmt: skip
    ctx = RunContext(tmp_path / "run", tmp_path / "data", strategy=plain_strategy())
    (tmp_path / "run").mkdir()
    try:
        metrics = sei_component.train_student(cfg, ctx)
    except (RuntimeError, ValueError) as error:  # e.g. torch.cat of the empty test split's chunks
        pytest.fail(f"a run on a train/val-only dataset failed after training: {error}")
    assert {"val/acc", "val/acc_step_1", "val/ensemble_gain", "spike_rate", "teacher/val_acc"} <= set(metrics)
    assert not any(key.startswith("test/") for key in metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert (tmp_path / "run/model.safetensors").is_file() and (tmp_path / "run/ensemble.png").is_file()

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(sei_component, "evaluate", broken)
    (tmp_path / "run/model.safetensors").unlink()
    with pytest.raises(RuntimeError, match="evaluation failed"):
        sei_component.train_student(cfg.model_copy(update={"epochs": 1}), ctx)
    assert (tmp_path / "run/model.safetensors").is_file()  # saved first


def test_dataset_at_another_resolution_is_a_config_error(tmp_path):
    prepare_imagenet_layout(tmp_path, 16)
    # image_size 224, the paper's; patch 16 divides 16, so without the check this run would train on 1 token
    cfg = Config(
        width=16, depth=1, heads=2, epochs=1, batch_size=4, eval_batch_size=4, kd={"teacher": "none", "beta": 0.0}
    )
    with pytest.raises(ConfigError, match=r"holds 16x16 images, the run needs 224x224: prepare it with --set size"):
        sei_component.train_student(cfg, RunContext(tmp_path, tmp_path / "data", strategy=plain_strategy()))
    assert (
        sei_component.train_student(  # control: image_size=None accepts the dataset's side
            cfg.model_copy(update={"image_size": None}),
            RunContext(tmp_path, tmp_path / "data", strategy=plain_strategy()),
        )["val/acc"]
        >= 0
    )


def test_paper_path_spiking_transformer_on_imagenet_jpegs_at_224(params, tmp_path, monkeypatch):
    """The paper preset (ImageNet at 224, patch 16: 14 x 14 tokens, T = 2, KD from an in-run ANN teacher, random-
    resized crop + flip and ImageNet mean/std) on ImageNet-layout JPEGs (train/ and val/ only) prepared through
    imagefolder, shrunk only in counts. The teacher distils from the very input the student trains on; the
    evaluation reads the stored val images, normalised and never augmented."""
    from components.core.augment import imagenet_normalise
    from tests.paper_path import run_paper_path

    prepare_imagenet_layout(tmp_path, 224)
    seen = []
    original = sei_component.build_model

    def spy_build(*args, **kwargs):
        model = original(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, inputs: seen.append((kwargs.get("teacher", False), module.training, inputs[0].clone()))
        )
        return model

    monkeypatch.setattr(sei_component, "build_model", spy_build)
    counts = {
        "epochs": 1, "batch_size": 4, "eval_batch_size": 8, "width": 16, "depth": 1,
        "kd.teacher_width": 16, "kd.teacher_epochs": 1,
    }  # fmt: skip
    result = run_paper_path("sei_bwsnn", params, counts, tmp_path / "data", tmp_path / "runs")
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (config["augment"], config["crop_scale"], config["normalise"]) == (
        "random-resized-crop-flip",
        [0.08, 1.0],
        True,
    )
    student = [x for teacher, training, x in seen if not teacher and training]
    assert student[0].shape == (4, 3, 224, 224)  # the paper's input at the shrunk batch: 14 x 14 patches of 16
    # the student's training steps come in order; the teacher (in eval mode) sees each one's exact input
    distilled = [x for teacher, training, x in seen if teacher and not training][: len(student)]
    assert len(student) == 3 and all(torch.equal(s, t) for s, t in zip(student, distilled))
    train = ImageShards(tmp_path / "data", "images/imagenet", "train").arrays()[0]
    stored = {to_input(torch.from_numpy(train), "transformer", normalise=True)[i].numpy().tobytes() for i in range(12)}
    assert not any(x.numpy().tobytes() in stored for batch in student for x in batch)  # training is augmented
    val = ImageShards(tmp_path / "data", "images/imagenet", "val").arrays()[0]
    evaluated = [x for teacher, training, x in seen if not teacher and not training]
    assert torch.equal(evaluated[0], to_input(torch.from_numpy(val), "transformer", normalise=True))  # never augmented
    assert torch.allclose(  # ImageNet's mean/std: the stored val images' channel means sit where they should
        evaluated[0].mean(dim=(0, 2, 3)), imagenet_normalise(torch.from_numpy(val)).mean(dim=(0, 1, 2))
    )
    assert result.metrics["val/acc_step_2"] >= 0 and "test/acc" not in result.metrics  # T = 2 members, no test
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    assert (result.run_dir / "model.safetensors").is_file() and (result.run_dir / "teacher.safetensors").is_file()
    weights = load_file(str(result.run_dir / "model.safetensors"))
    assert weights["position"].shape == (1, 196, 16)  # 224 / 16 = 14 x 14 tokens


def test_imagenet_recipe_by_default_and_off_on_digits(params):
    from components.core.config import resolve_config

    defaults = Config()
    assert (defaults.augment, defaults.crop_scale, defaults.normalise) == (
        "random-resized-crop-flip",
        (0.08, 1.0),
        True,
    )
    for preset in ("test", "smoke"):
        cfg = resolve_config(SEIBWSNN(), preset, params.get("sei_bwsnn"))
        assert (cfg.augment, cfg.normalise) == ("none", False), preset


def test_training_input_is_the_random_resized_crop_and_flip_normalised():
    import numpy as np

    from components.core.augment import random_resized_crop_flip

    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    cfg = Config(image_size=32, patch=8, width=16, heads=2, crop_scale=(0.25, 0.5))
    got = sei_component.train_input(cfg, images, np.random.default_rng([0, 3, 0]), "cpu")
    crops = random_resized_crop_flip(images, 32, np.random.default_rng([0, 3, 0]), scale=(0.25, 0.5))
    assert torch.equal(got, to_input(torch.from_numpy(crops), "transformer", normalise=True))
    assert got.shape == (6, 3, 32, 32)
    assert torch.equal(got, sei_component.train_input(cfg, images, np.random.default_rng([0, 3, 0]), "cpu"))
    assert not torch.equal(got, sei_component.train_input(cfg, images, np.random.default_rng([0, 4, 0]), "cpu"))
    off = cfg.model_copy(update={"augment": "none", "normalise": False})
    assert torch.equal(
        sei_component.train_input(off, images, None, "cpu"), to_input(torch.from_numpy(images), "transformer")
    )


def test_imagenet_normalisation_on_grey_images_is_a_config_error(data_root, tmp_path):
    cfg = Config(**{**sei_component.DIGITS_MLP, "normalise": True, "epochs": 1, "kd": {"beta": 0.0, "teacher": "none"}})
    try:
        sei_component.train_student(cfg, RunContext(tmp_path, data_root, strategy=plain_strategy()))
    except ConfigError as error:
        assert "normalise" in str(error)
    except Exception as error:  # e.g. the normalisation failing mid-run, after the teacher trained
        pytest.fail(f"not refused before any compute: {type(error).__name__}: {error}")
    else:
        pytest.fail("grey images were normalised with ImageNet's RGB statistics without a word")


def test_external_teacher_of_another_architecture_distils_through_its_own_input(tmp_path):
    # kd.teacher = a run directory (heads from its config.yaml) or a bare .safetensors file, holding an ANN of
    # another shape (width, depth, patch, FFN ratio) or arch than the student: built from its weights alone, it
    # gives the same logits as that ANN on its own input form (RGB: the MLP flattens H, W, C)
    from safetensors.torch import save_file

    prepare_imagenet_layout(tmp_path, 16)
    train = ImageShards(tmp_path / "data", "images/imagenet", "train")
    images = torch.from_numpy(train.arrays()[0][:4])
    student = dict(image_size=16, width=16, depth=1, heads=2, patch=8, epochs=1, batch_size=4, eval_batch_size=4)
    vit = Config(width=24, depth=2, heads=3, patch=4, mlp_ratio=2, kd={"teacher_width": 24})
    mlp = Config(arch="mlp", width=32, depth=2, kd={"teacher_width": 32})
    (tmp_path / "vit_run").mkdir()
    (tmp_path / "vit_run/config.yaml").write_text("heads: 3\nwidth: 8\n")
    sources = {  # name: (its architecture, kd.teacher, the weights' file)
        "vit": (vit, tmp_path / "vit_run", tmp_path / "vit_run/teacher.safetensors"),
        "mlp": (mlp, tmp_path / "mlp.safetensors", tmp_path / "mlp.safetensors"),
    }
    for name, (teacher_cfg, given, file) in sources.items():
        torch.manual_seed(1)
        reference = build_model(teacher_cfg, (16, 16, 3), 3, teacher=True).eval()
        with torch.no_grad():  # peaked attention, as a trained teacher's (at init it is near uniform: heads moot)
            for block in getattr(reference, "blocks", []):
                block.qkv.weight.mul_(8)
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(file))
        cfg = Config(**student, kd={"teacher": str(given)})
        ctx = RunContext(tmp_path / name, tmp_path / "data", strategy=plain_strategy())
        teacher = sei_component.load_or_train_teacher(cfg, ctx, train)
        with torch.no_grad():
            got = teacher(to_input(images, "transformer"))[0]
            expected = reference(to_input(images, teacher_cfg.arch))[0]
        torch.testing.assert_close(got, expected)
        if name == "vit":  # control: the student's 2 heads over the teacher's weights give other logits
            two_heads = build_model(teacher_cfg.model_copy(update={"heads": 2}), (16, 16, 3), 3, teacher=True)
            two_heads.load_state_dict(reference.state_dict())
            with torch.no_grad():
                assert (two_heads.eval()(to_input(images, "transformer"))[0] - expected).abs().max() > 1e-3
        if name == "mlp":  # control: the channels-first flattening of the student's input is another input
            with torch.no_grad():
                wrong = reference(to_input(images, "transformer").flatten(1))[0]
            assert (wrong - expected).abs().max() > 1e-3
    (tmp_path / "run").mkdir()
    metrics = sei_component.train_student(
        Config(**student, kd={"teacher": str(tmp_path / "vit_run")}),
        RunContext(tmp_path / "run", tmp_path / "data", strategy=plain_strategy()),
    )
    assert "teacher/val_acc" in metrics and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert not (tmp_path / "run/teacher.safetensors").exists()  # loaded, not trained
