"""sgm.md §6 checks 1-4 (gamma = 1 is plain PGD bit for bit; the closed-form gradient identity; the official ReLU
hooks equal the explicit branch decay; transfer not worse than gamma = 1 minus 1 point), the attack loop against a
reference, the split discipline, bad inputs, and the paper path (ResNet-152 source, VGG-19 / DenseNet-201 targets
from safetensors, ImageNet-layout PNGs at 224)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import nn

from cluster.runner import execute, plan_run
from components.core.contract import RunContext
from components.core.errors import ConfigError, DataError
from components.core.shards import ImageShards
from components.sgm import component as sgm_component
from components.sgm.attack import pgd, quantise
from components.sgm.config import Config
from components.sgm.gradient import official_relu_hooks, skip_gradient
from components.sgm.models import Normalised, ResidualMLPBlock, build_model, family


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as the runner pins it: tiny convolutions on a shared 2-core machine run ~20x faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# tiny members of the paper's families: the architecture and its block structure, at width 4 and 32 px
TINY = {"resnet18": 4, "resnet50": 4, "densenet121": 4}


def tiny(arch: str, dtype=torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = Normalised(build_model(arch, num_classes=5, width=TINY.get(arch, 4))).to(dtype).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode BN is not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def resmlp(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("resmlp-16x4", num_classes=10).to(dtype).eval()


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# Check 1: gamma = 1 reproduces plain PGD, through the hooks themselves.
@pytest.mark.parametrize("mechanism", ["explicit", "official_hooks"])
@pytest.mark.parametrize("arch", ["resnet50", "densenet121", "resmlp"])
def test_gamma_one_reproduces_plain_pgd_bit_for_bit(arch, mechanism):
    model = resmlp() if arch == "resmlp" else tiny(arch)
    shape = (6, 8, 8) if arch == "resmlp" else (3, 3, 32, 32)
    x, y = torch.rand(shape, generator=torch.Generator().manual_seed(1)), torch.arange(shape[0]) % 5
    kind = family("resmlp-16x4" if arch == "resmlp" else arch)

    def decayed(gamma):
        return skip_gradient(model, gamma) if mechanism == "explicit" else official_relu_hooks(model, kind, gamma)

    plain = pgd(model, x, y, eps=0.1, steps=4, step_size=0.01)
    with decayed(1.0):
        same = pgd(model, x, y, eps=0.1, steps=4, step_size=0.01)
    assert torch.equal(same, plain)
    with decayed(0.3):  # control: the hooks are live, a gamma < 1 changes the attack
        assert not torch.equal(pgd(model, x, y, eps=0.1, steps=4, step_size=0.01), plain)


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "resmlp"])
def test_decay_leaves_the_forward_pass_bit_identical(arch):
    # sgm.md §8: decaying in the forward pass changes the loss and the predictions; SGM only touches backward
    model = resmlp() if arch == "resmlp" else tiny(arch)
    x = torch.rand((4, 8, 8) if arch == "resmlp" else (2, 3, 32, 32))
    with torch.no_grad():
        plain = model(x)
        with skip_gradient(model, 0.2):
            decayed = model(x)
    assert torch.equal(decayed, plain)


# Check 2: the closed-form gradient of a linear residual net.
class LinearResidual(nn.Module):
    sgm_branch_end = "branch"
    sgm_decay = True

    def __init__(self, d: int):
        super().__init__()
        self.branch = nn.Linear(d, d, bias=False)

    def forward(self, z):
        return z + self.branch(z)


@pytest.mark.parametrize("gamma", [0.2, 0.5, 1.0])
def test_gradient_is_the_closed_form_product(gamma):
    torch.manual_seed(0)
    d_in, d, classes = 12, 9, 5
    net = nn.Sequential(
        nn.Linear(d_in, d, bias=False), *(LinearResidual(d) for _ in range(4)), nn.Linear(d, classes, bias=False)
    ).double()
    with torch.no_grad():
        for block in net[1:5]:
            block.branch.weight.mul_(0.6)
    x, y = torch.randn(1, d_in, dtype=torch.float64), torch.tensor([2])
    with skip_gradient(net, gamma):
        got = input_grad(net, x, y)[0]
    logits = net(x)
    dlogits = torch.softmax(logits, dim=1)[0] - F.one_hot(y, classes)[0].double()
    jacobian = net[0].weight.T
    for block in net[1:5]:  # W_in^T (I + gamma A_1)^T ... (I + gamma A_4)^T W_out^T dl/dlogits
        jacobian = jacobian @ (torch.eye(d, dtype=torch.float64) + gamma * block.branch.weight.detach()).T
    expected = jacobian @ net[5].weight.T @ dlogits
    assert rel_err(got, expected.detach()) < 1e-10
    if gamma < 1:  # control: the ordinary gradient is a different vector
        assert rel_err(input_grad(net, x, y)[0], expected.detach()) > 1e-3


def test_residual_mlp_branch_gradient_is_scaled_by_gamma():
    # the smoke source: z + gamma f(z) + (1 - gamma) stop_grad(f(z)) has the same value and SGM's gradient
    model, gamma = resmlp(dtype=torch.float64), 0.4
    x, y = torch.rand(5, 8, 8, dtype=torch.float64), torch.arange(5)

    def reference(images):
        z = model.stem(model.flatten(images))
        for block in model.blocks:
            assert isinstance(block, ResidualMLPBlock)
            branch = block.fc2(block.relu(block.fc1(block.norm(z))))
            z = z + gamma * branch + (1 - gamma) * branch.detach()
        return model.head(model.norm(z))

    expected = input_grad(reference, x, y)
    with skip_gradient(model, gamma):
        assert rel_err(input_grad(model, x, y), expected) < 1e-10


# Check 3: the official ReLU hooks equal the explicit decay up to one global factor.
@pytest.mark.parametrize(
    ("arch", "global_factor"),
    [
        ("resnet18", lambda g: g**5),  # stem ReLU, then per decayed block (layerX.1) gamma on every path
        ("resnet50", lambda g: g ** (13 / 2)),  # stem + 12 blocks with index > 0, sqrt(gamma) each
        ("densenet121", lambda g: g**0.5),  # relu0; relu1 and relu2 give exactly gamma per dense layer
    ],
)
def test_official_relu_hooks_equal_the_explicit_decay(arch, global_factor):
    model, gamma = tiny(arch, torch.float64), 0.3
    x, y = torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 3])
    with skip_gradient(model, gamma):
        explicit = input_grad(model, x, y)
    with official_relu_hooks(model, family(arch), gamma):
        hooked = input_grad(model, x, y)
    assert rel_err(hooked, global_factor(gamma) * explicit) < 1e-10
    assert torch.equal(hooked.sign(), explicit.sign())
    assert rel_err(input_grad(model, x, y), explicit) > 1e-3  # control: the plain gradient differs


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_hooks_are_gone_after_the_context(arch):
    model = tiny(arch)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    plain = input_grad(model, x, y)
    with skip_gradient(model, 0.2):
        input_grad(model, x, y)
    with official_relu_hooks(model, family(arch), 0.2):
        input_grad(model, x, y)
    assert torch.equal(input_grad(model, x, y), plain)  # the next gamma (or target) sees the undecayed model


# The attack loop (sgm.md §3.2).
def reference_pgd(model, x, y, eps, steps, alpha, mu=0.0):
    adv, velocity = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        adv.requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(adv), y, reduction="sum"), adv)[0]
        if mu:
            velocity = mu * velocity + grad / grad.abs().sum(dim=(1, 2), keepdim=True)
            grad = velocity
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.clamp(torch.minimum(torch.maximum(adv, x - eps), x + eps), 0, 1)
    return adv


@pytest.mark.parametrize("mu", [0.0, 1.0])
def test_pgd_is_the_reference_loop_and_stays_in_the_ball(mu):
    model = resmlp()
    x, y = torch.rand(8, 8, 8), torch.arange(8)
    calls = []
    model.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    got = pgd(model, x, y, eps=0.05, steps=7, step_size=0.02, momentum=mu)
    assert len(calls) == 7  # T gradient evaluations, no more, no fewer
    assert torch.equal(got, reference_pgd(model, x, y, 0.05, 7, 0.02, mu))
    assert (got - x).abs().max() <= 0.05 + 1e-7 and got.min() >= 0 and got.max() <= 1
    assert (got - x).abs().max() > 0.049  # the budget is used


def test_random_start_is_in_the_ball_and_seeded():
    model = resmlp()
    x, y = torch.rand(4, 8, 8), torch.arange(4)
    first = pgd(
        model, x, y, eps=0.1, steps=0, step_size=0.01, rand_init=True, generator=torch.Generator().manual_seed(3)
    )
    again = pgd(
        model, x, y, eps=0.1, steps=0, step_size=0.01, rand_init=True, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(first, again) and not torch.equal(first, x)
    assert (first - x).abs().max() <= 0.1 + 1e-7


def test_run_evaluates_8_bit_images():
    # the paper saves PNGs and reloads them: what the targets see lies on the 1/255 grid, inside the budget
    cfg = Config(**{**sgm_component.DIGITS, "steps": 3})
    x, y = torch.rand(5, 8, 8).mul(255).round().div(255), torch.arange(5)
    adv = sgm_component.attack(cfg, RunContext(".", "."), resmlp(), x, y, cfg.gamma)
    assert torch.equal(adv, quantise(adv)) and torch.allclose(adv * 255, (adv * 255).round(), atol=1e-4)
    assert (adv - x).abs().max() <= cfg.eps + 1e-6


# Check 4 and the run: digits, in-process models, gamma 0.7 against the paired gamma = 1.
@pytest.fixture(scope="module")
def smoke_runs(data_root, tmp_path_factory):
    from pipelines.params import load_params
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    root = tmp_path_factory.mktemp("sgm_smoke")
    runs = []
    for seed in (0, 1, 2):
        request = plan_run("sgm", params, preset="smoke", seed=seed, data_dir=data_root)
        runs.append(execute(request, run_root=root / str(seed), data_dir=data_root, show_progress=False))
    return runs


def test_transfer_at_gamma_07_not_worse_than_plain_pgd_minus_one_point(smoke_runs):
    metrics = [run.metrics for run in smoke_runs]
    # sgm.md §6 check 4 (the weak gate): the paper's +20-35 points do not appear at digits scale
    assert (
        np.mean([m["asr_mean_blackbox"] for m in metrics]) >= np.mean([m["pgd/asr_mean_blackbox"] for m in metrics]) - 1
    )
    assert np.mean([m["white_box_asr"] for m in metrics]) >= 85
    for m in metrics:
        assert m["attacked"] >= 200  # the test digits every model classifies correctly (~250 of 269)
        assert 0.199 <= m["linf"] <= 0.2 + 1e-6
        assert m["delta_vs_gamma1"] == pytest.approx(m["asr_mean_blackbox"] - m["pgd/asr_mean_blackbox"])
        assert all(m[f"clean_acc/{arch}"] > 0.9 for arch in sgm_component.DIGITS["targets"])
        assert 10 < m["asr_mean_blackbox"] < 100  # black-box is harder than white-box
    deltas = [m["delta_vs_gamma1"] for m in metrics]
    print("sgm smoke deltas (gamma 0.7 - gamma 1, points):", deltas)


def test_models_train_on_the_train_split_and_adversarials_are_the_attacked_test_digits(smoke_runs, data_root):
    train = ImageShards(data_root, "images/digits", "train").arrays()[0]
    test_images, test_labels = ImageShards(data_root, "images/digits", "test").arrays()
    run = smoke_runs[0]
    stored = np.load(run.run_dir / "adversarial.npz")
    assert stored["images"].dtype == np.uint8 and len(stored["images"]) == run.metrics["attacked"]
    assert set(stored["labels"].tolist()) <= set(test_labels.tolist())
    # every adversarial digit lies within eps of a test digit with its label, none is a training digit
    flat_test = test_images.reshape(len(test_images), -1).astype(int)
    for image, label in zip(stored["images"][:20], stored["labels"][:20]):
        distance = np.abs(flat_test - image.reshape(-1).astype(int)).max(axis=1)
        assert distance.min() <= 51 and test_labels[distance.argmin()] == label
    assert (run.run_dir / "models" / "resmlp-64x8.safetensors").is_file()
    assert len(train) > len(test_images)


def test_saved_models_load_back_and_reproduce_the_run(smoke_runs, data_root, tmp_path):
    # the in-process models are written as safetensors, the format the paper path loads: a run on them repeats
    # the attack exactly, with no training
    first = smoke_runs[0]
    cfg = Config(**{**sgm_component.DIGITS, "weights": str(first.run_dir / "models")})
    again = sgm_component.run_sgm(cfg, RunContext(tmp_path, data_root, seed=0))
    assert not (tmp_path / "models").exists()  # nothing trained
    assert {k: v for k, v in first.metrics.items() if not k.startswith("train/")} == again


def test_fit_sees_exactly_the_train_split(data_root, tmp_path, monkeypatch):
    seen = []
    original = sgm_component.fit

    def spy(model, images, labels, cfg, seed):
        seen.append((images.clone(), labels.clone()))
        return original(model, images, labels, cfg, seed)

    monkeypatch.setattr(sgm_component, "fit", spy)
    cfg = Config(**{**sgm_component.DIGITS, "train": {"epochs": 1}, "steps": 1, "max_samples": 20})
    sgm_component.run_sgm(cfg, RunContext(tmp_path, data_root))
    train_images, train_labels = ImageShards(data_root, "images/digits", "train").arrays()
    assert len(seen) == 4  # source + 3 targets
    for images, labels in seen:
        assert torch.equal(images, sgm_component.to_input(train_images, False))
        assert torch.equal(labels, torch.from_numpy(train_labels).long())


# Bad input: one-line errors before any compute.
def test_bad_configs_are_config_errors():
    with pytest.raises(ConfigError, match="is the source"):
        Config(targets=("vgg19", "resnet152"))
    with pytest.raises(ConfigError, match="unknown architecture 'resnet99'"):
        build_model("resnet99", 10)
    with pytest.raises(ConfigError, match="no residual branch"):
        with skip_gradient(build_model("vgg16", 10, width=2), 0.5):
            pass
    with pytest.raises(ConfigError, match="gamma must be in"):
        with skip_gradient(resmlp(), 0.0):
            pass


def write_imagenet_folder(root, side: int, classes: int = 3, per_class: int = 2) -> None:
    """ImageNet's layout (train/ and val/ class folders of JPEGs, some wider than tall): each class its own colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 64, (side + 13 * i, side + 40 * i, 3)) + np.eye(3, dtype=np.int64)[c] * 180
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{c}_{i}.JPEG", quality=90)


def prepare_imagenet(tmp_path, size=224):
    from pipelines.datasets import prepare

    write_imagenet_folder(tmp_path / "raw", size)
    spec = {"source": "imagefolder", "src": str(tmp_path / "raw"), "size": size, "resize": 256, "format": "png"}
    prepare("images/imagenet", spec, tmp_path / "data")


def write_weights(folder, archs, width: int, num_classes: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, arch in enumerate(archs):
        torch.manual_seed(seed + i)
        state = build_model(arch, num_classes, width).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{arch}.safetensors"))


def test_missing_or_mismatched_weights_are_data_errors(tmp_path):
    prepare_imagenet(tmp_path, size=32)
    cfg = Config(image_size=32, num_classes=3, width=2, source="resnet18", targets=("vgg16",), max_samples=2)
    with pytest.raises(DataError, match=r"weights for 'resnet18' not found at .*resnet18.safetensors"):
        sgm_component.run_sgm(cfg, RunContext(tmp_path, tmp_path / "data"))
    write_weights(tmp_path / "data/weights/imagenet", ["resnet18", "vgg16"], width=4, num_classes=3)
    with pytest.raises(DataError, match=r"conv1.weight has shape .* \(check width and num_classes\)"):
        sgm_component.run_sgm(cfg, RunContext(tmp_path, tmp_path / "data"))
    with pytest.raises(ConfigError, match=r"holds 32x32x3 images, the models need 224x224x3"):
        sgm_component.run_sgm(cfg.model_copy(update={"image_size": 224}), RunContext(tmp_path, tmp_path / "data"))
    with pytest.raises(DataError, match="has 3 classes, the models have num_classes=1000"):
        sgm_component.run_sgm(cfg.model_copy(update={"num_classes": 1000}), RunContext(tmp_path, tmp_path / "data"))


# The paper path: ResNet-152 source (gamma 0.2), VGG-19 and DenseNet-201 targets, 224 px ImageNet-layout images.
def test_paper_path_resnet152_source_on_imagenet_pngs_at_224(params, tmp_path, monkeypatch):
    from tests.paper_path import record_inputs, run_paper_path

    prepare_imagenet(tmp_path)
    write_weights(tmp_path / "data/weights/imagenet", ["resnet152", "vgg19", "densenet201"], width=4, num_classes=3)
    shapes = record_inputs(monkeypatch, sgm_component, "build")
    modes = []
    original_pgd = sgm_component.pgd

    def spy_pgd(model, *args, **kwargs):
        modes.append((model.training, kwargs))
        return original_pgd(model, *args, **kwargs)

    monkeypatch.setattr(sgm_component, "pgd", spy_pgd)
    counts = {"max_samples": 3, "num_classes": 3, "width": 4}
    result = run_paper_path("sgm", params, counts, tmp_path / "data", tmp_path / "runs")
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (config["source"], config["targets"], config["gamma"]) == ("resnet152", ["vgg19", "densenet201"], 0.2)
    assert shapes and all(shape[1:] == (3, 224, 224) for shape in shapes)  # the paper's input, every model
    assert modes and all(not training for training, _ in modes)  # attacked in eval mode (BN running stats)
    assert modes[0][1] == {"eps": 16 / 255, "steps": 10, "step_size": 2 / 255, "momentum": 0.0, "rand_init": False,
                           "generator": modes[0][1]["generator"]}  # fmt: skip
    metrics = result.metrics
    assert metrics["attacked"] == 3 and metrics["linf"] <= 16 / 255 + 1e-6
    assert {"white_box_asr", "asr/vgg19", "asr/densenet201", "pgd/asr/vgg19", "delta_vs_gamma1"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    stored = np.load(result.run_dir / "adversarial.npz")
    clean = ImageShards(tmp_path / "data", "images/imagenet", "val").arrays()[0][:3]
    assert stored["images"].shape == (3, 224, 224, 3) and stored["images"].dtype == np.uint8
    assert np.abs(stored["images"].astype(int) - clean.astype(int)).max() <= 16  # 16/255 in 8-bit levels
    assert json.loads((result.run_dir / "metrics.json").read_text())["attacked"] == 3
