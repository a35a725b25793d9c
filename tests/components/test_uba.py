"""uba.md §6 checks 1-3 (check 4 is report-only: see components/uba/README.md and benchmarks/uba_budgets.py)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from cluster.runner import execute, plan_run
from components.core.schedules import ScheduleConfig, multiplier

T = 100


def shape(phi: float, t: int, min_ratio: float = 0.0) -> float:
    return multiplier(ScheduleConfig(name="uba", phi=phi, min_ratio=min_ratio), t, T)


# Check 1: formula identities, exact.
@pytest.mark.parametrize("phi", [0.1, 0.5, 1, 2, 5, 20])
def test_endpoints_and_monotone(phi):
    values = [shape(phi, t, 0.01) for t in range(T + 1)]
    assert abs(values[0] - 1.0) < 1e-12 and abs(values[-1] - 0.01) < 1e-12
    assert all(b <= a + 1e-15 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("phi", [0.5, 1, 2, 5, 20])
def test_midpoint_is_two_over_two_plus_phi(phi):
    # a stub returning cosine fails every phi != 2 here; a sign error in (2 - phi) fails too
    assert abs(shape(phi, T // 2) - 2 / (2 + phi)) < 1e-12


def test_phi_two_is_cosine():
    cosine = ScheduleConfig(name="cosine")
    assert max(abs(shape(2, t) - multiplier(cosine, t, T)) for t in range(T + 1)) < 1e-12


def test_harmonic_member():
    eta_max, eta_min = 1.0, 0.01
    for t in range(T + 1):
        eta = eta_max * shape(2 * eta_max / eta_min, t, eta_min / eta_max)
        inverse = ((1 / eta_min + 1 / eta_max) - (1 / eta_min - 1 / eta_max) * math.cos(math.pi * t / T)) / 2
        assert abs(eta - 1 / inverse) < 1e-10


# Check 2: the quadratic ground truth, through the component's quadratic mode.
def quadratic_residual(params, tmp_path, **overrides) -> float:
    sets = {"task": "quadratic", "budget": T, "schedule.warmup": 0, **overrides}
    request = plan_run("uba", params, preset="test", overrides=sets, data_dir=tmp_path)
    return execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False).metrics["quad/worst_residual"]


def test_quadratic_matched_phi_contracts_and_cosine_does_not(params, tmp_path):
    matched = quadratic_residual(
        params, tmp_path, **{"lr": 1.0, "schedule.name": "uba", "schedule.phi": 200, "schedule.min_ratio": 0.01}
    )
    cosine = quadratic_residual(params, tmp_path, **{"lr": 0.01, "schedule.name": "cosine", "schedule.min_ratio": 0.0})
    underestimated = quadratic_residual(
        params, tmp_path, **{"lr": 1.0, "schedule.name": "uba", "schedule.phi": 100, "schedule.min_ratio": 0.01}
    )
    assert matched < 1e-4  # measured 7.7e-6 in the spec for t = 0..T-1
    assert cosine > 0.3  # spec: 0.60
    assert underestimated > 1e3  # the large early steps are really there


# Check 3: plumbing on digits: UBA(phi=2) and a closed-form cosine give the same per-step losses.
def step_losses(run_dir) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


def digits_losses(params, data_root, tmp_path, name: str, phi: float) -> np.ndarray:
    sets = {
        "schedule.name": name,
        "schedule.phi": phi,
        "schedule.warmup": 5,
        "schedule.init_ratio": 0.1,
        "schedule.min_ratio": 0.01,
        "budget": 40,
    }
    request = plan_run("uba", params, preset="test", overrides=sets, data_dir=data_root)
    result = execute(request, run_root=tmp_path / name / str(phi), data_dir=data_root, show_progress=False)
    return np.array(step_losses(result.run_dir))


def test_uba_phi_two_matches_cosine_per_step(params, data_root, tmp_path):
    uba = digits_losses(params, data_root, tmp_path, "uba", 2.0)
    cosine = digits_losses(params, data_root, tmp_path, "cosine", 2.0)
    assert len(uba) == 40
    assert np.max(np.abs(uba - cosine) / np.abs(cosine)) < 1e-6
    other = digits_losses(params, data_root, tmp_path, "uba", 0.5)  # the comparison can tell schedules apart
    assert np.max(np.abs(other - cosine) / np.abs(cosine)) > 1e-6


# --- What the mutants of tests/mutants/uba.py break, checked as properties (each with a negative control).
KAPPA, MU, L = 100.0, 1.0, 100.0


def closed_form(t: float, T: float, phi: float) -> float:
    """uba.md §3.1 written out again: g = 2u / (2 phi + (2 - phi) u), u = 1 + cos(pi t / T)."""
    u = 1 + math.cos(math.pi * t / T)
    return 2 * u / (2 * phi + (2 - phi) * u)


def spec_multiplier(step: int, budget: int, warmup: int, init: float, low: float, phi: float) -> float:
    """uba.md §3.4: linear warm-up over W steps, then the closed form with t = step - W and T = budget - W."""
    if step < warmup:
        return init + (1 - init) * step / warmup
    return low + (1 - low) * closed_form(step - warmup, budget - warmup, phi)


def test_warmup_then_decay_restarts_t():
    budget, warmup, init, low, phi = 110, 10, 0.1, 0.01, 5.0
    cfg = ScheduleConfig(name="uba", phi=phi, warmup=warmup, init_ratio=init, min_ratio=low)
    got = np.array([multiplier(cfg, step, budget) for step in range(budget + 1)])
    want = np.array([spec_multiplier(step, budget, warmup, init, low, phi) for step in range(budget + 1)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got[warmup] == pytest.approx(1.0) and got[budget] == pytest.approx(low)  # peak after warm-up, eta_min at T
    # negative control: the global step with T = budget (uba.md §8) is a different curve, visibly so
    shifted = np.array(
        [low + (1 - low) * closed_form(s, budget, phi) if s >= warmup else want[s] for s in range(budget)]
    )
    assert np.max(np.abs(shifted - want[:budget])) > 1e-2


def test_worst_residual_counts_overshoot():
    from components.uba.quadratic import worst_residual

    # one step of size 1 on curvatures 0.5 and 3: residuals 0.5 and -2; the worst case is |-2| = 2
    assert worst_residual(np.array([1.0]), np.array([0.5, 3.0])) == pytest.approx(2.0)
    # two overshooting steps of opposite sign pattern: p(3) = (1 - 1*3)(1 - 0.1*3) = -1.4, p(0.5) = 0.475
    assert worst_residual(np.array([1.0, 0.1]), np.array([0.5, 3.0])) == pytest.approx(1.4)
    # negative control: the signed maximum, which an implementation without abs returns, is smaller
    assert np.max((1 - 1.0 * np.array([0.5, 3.0])) * (1 - 0.1 * np.array([0.5, 3.0]))) == pytest.approx(0.475)


def chebyshev_bound(kappa: float, steps: int) -> float:
    """1 / T_T((kappa + 1) / (kappa - 1)): the minimax residual, attained at lambda = mu (uba.md §3.3)."""
    return 1.0 / math.cosh(steps * math.acosh((kappa + 1) / (kappa - 1)))


def half_step_sizes(phi: float, eta_max: float = 1 / MU, eta_min: float = 1 / L) -> np.ndarray:
    from components.core.schedules import uba_shape

    return np.array([eta_min + (eta_max - eta_min) * uba_shape(j - 0.5, T, phi) for j in range(1, T + 1)])


def test_matched_phi_at_half_steps_is_the_chebyshev_bound():
    from components.uba.quadratic import eigenvalues, worst_residual

    steps = half_step_sizes(2 * KAPPA)
    chebyshev = 1 / ((L + MU) / 2 - (L - MU) / 2 * np.cos(np.pi * (np.arange(1, T + 1) - 0.5) / T))
    np.testing.assert_allclose(steps, chebyshev, rtol=1e-12)  # phi = 2 kappa reproduces the minimax steps
    curvatures = eigenvalues(MU, L, 20001)
    assert curvatures.dtype == np.float64 and curvatures[0] == MU and curvatures[-1] == L
    bound = chebyshev_bound(KAPPA, T)  # 3.85e-9
    assert worst_residual(steps, curvatures) == pytest.approx(bound, rel=1e-9)
    # negative controls: the same product in float32 misses the tolerance (or overflows), and so does phi = kappa
    residual32 = np.ones(curvatures.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for eta in steps:
            residual32 *= (1 - eta * curvatures).astype(np.float32)
        assert not abs(float(np.max(np.abs(residual32))) - bound) <= 1e-9 * bound
    assert worst_residual(half_step_sizes(KAPPA), curvatures) > 1e3


def test_quadratic_default_peak_is_one_over_mu(tmp_path):
    from types import SimpleNamespace

    from components.uba.component import learning_rate, run_quadratic
    from components.uba.config import Config

    def residual(**fields) -> float:
        cfg = Config(
            task="quadratic", budget=T, schedule=ScheduleConfig(name="uba", phi=2 * KAPPA, min_ratio=0.01), **fields
        )
        ctx = SimpleNamespace(run_dir=tmp_path, is_main=False, log=lambda *args, **kwargs: None)
        return run_quadratic(cfg, ctx)["quad/worst_residual"]

    assert learning_rate(Config(task="quadratic")) == 1.0 / MU
    assert residual() < 1e-4  # eta_max = 1/mu (the default), eta_min = 1/L, phi = 2 kappa: the matched schedule
    assert residual(lr=1.0 / L) > 0.3  # negative control: a peak of 1/L barely moves the flat directions


# One short digits run (seed 1: not the default seed) that the tests below take apart.
RUN = {
    "schedule.name": "uba",
    "schedule.phi": 0.5,
    "schedule.warmup": 2,
    "schedule.init_ratio": 0.1,
    "schedule.min_ratio": 0.1,
    "lr": 0.3,
    "budget": 10,
}
RUN_SEED = 1


@pytest.fixture(scope="module")
def digits_run(data_root, tmp_path_factory):
    from pipelines.params import load_params

    request = plan_run(
        "uba",
        load_params(Path(__file__).resolve().parents[2] / "params.yaml"),
        preset="test",
        overrides=RUN,
        seed=RUN_SEED,
        data_dir=data_root,
    )
    result = execute(request, run_root=tmp_path_factory.mktemp("uba-run"), data_dir=data_root, show_progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train/loss" in r]
    return request.config, result, steps


def reference_losses(cfg, data_root, *, split="train", seed=RUN_SEED, zero_grad=True) -> np.ndarray:
    """uba.md §3.4's loop written out: seeded init, the split's seeded batches, step, zero_grad, schedule."""
    import torch
    import torch.nn.functional as F

    from components.core.optim import build_optimizer
    from components.core.schedules import make_scheduler
    from components.core.shards import ImageShards
    from components.uba.models import build_model, to_input

    shards = ImageShards(data_root, cfg.dataset, split)
    torch.manual_seed(seed)
    model = build_model(cfg.task, len(shards.classes), cfg.width)
    optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.budget)
    stream = shards.batches(cfg.batch_size, seed=seed)
    losses = []
    for _ in range(cfg.budget):
        images, labels = next(stream)
        loss = F.cross_entropy(model(to_input(torch.from_numpy(images), cfg.task)), torch.from_numpy(labels))
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        if zero_grad:
            optimizer.zero_grad()
        scheduler.step()
    return np.array(losses)


def test_training_is_the_reference_loop(digits_run, data_root):
    cfg, _, steps = digits_run
    logged = np.array([r["train/loss"] for r in steps])
    assert len(logged) == cfg.budget
    np.testing.assert_allclose(logged, reference_losses(cfg, data_root), rtol=1e-5)
    # negative controls: training on the val split, with the seed ignored, or with gradients carried over
    # from the previous batch gives other losses, so the comparison above can fail
    for wrong in ({"split": "val"}, {"seed": 0}, {"zero_grad": False}):
        assert np.max(np.abs(reference_losses(cfg, data_root, **wrong) - logged) / logged) > 1e-4, wrong


def test_logged_lr_and_trace_are_the_schedule(digits_run):
    cfg, result, steps = digits_run
    s = cfg.schedule
    want = [
        cfg.lr * spec_multiplier(k, cfg.budget, s.warmup, s.init_ratio, s.min_ratio, s.phi) for k in range(cfg.budget)
    ]
    logged = [r["lr"] for r in steps]
    with open(result.run_dir / "lr.csv") as handle:
        trace = [float(row["lr"]) for row in csv.DictReader(handle)]
    np.testing.assert_allclose(logged, want, rtol=1e-12)  # the optimizer's LR at step k is the schedule at step k
    np.testing.assert_allclose(trace, logged, rtol=1e-12)  # lr.csv is that same LR, row for row
    # negative control: the schedule one step later (t = 1..T) is a different trace
    later = [
        cfg.lr * spec_multiplier(k + 1, cfg.budget, s.warmup, s.init_ratio, s.min_ratio, s.phi)
        for k in range(cfg.budget)
    ]
    assert np.max(np.abs(np.array(later) - np.array(logged))) > 1e-4


def test_final_metrics_are_on_their_own_splits(digits_run, data_root):
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    from components.core.shards import ImageShards
    from components.uba.models import build_model, to_input

    cfg, result, _ = digits_run
    model = build_model(cfg.task, 10, cfg.width)
    model.load_state_dict(load_file(str(result.run_dir / "model.safetensors")))
    measured = {}
    with torch.no_grad():
        for split in ("train", "val", "test"):
            images, labels = ImageShards(data_root, cfg.dataset, split).arrays()
            logits = model(to_input(torch.from_numpy(images), cfg.task))
            target = torch.from_numpy(labels)
            measured[split] = (
                F.cross_entropy(logits, target).item(),
                (logits.argmax(1) == target).float().mean().item(),
            )
    m = result.metrics
    assert m["final/train_loss"] == pytest.approx(measured["train"][0], rel=1e-5)
    assert m["val/loss"] == pytest.approx(measured["val"][0], rel=1e-5)
    assert m["val/acc"] == pytest.approx(measured["val"][1], abs=1e-6)
    assert m["test/acc"] == pytest.approx(measured["test"][1], abs=1e-6)
    # negative control: the splits give different numbers at this point, so a swapped split would show
    assert abs(measured["val"][0] - measured["test"][0]) > 1e-3 and measured["val"][1] != measured["test"][1]


# --- the paper's CIFAR recipe: pad-crop-flip augmentation, train-split normalisation, the paper path


def test_pad_crop_flip_is_a_window_of_the_padded_image_or_its_mirror():
    from components.core.augment import pad_crop_flip

    image = np.random.default_rng(0).integers(1, 256, (1, 8, 8, 3), dtype=np.uint8)  # no zero: windows are unique
    out = pad_crop_flip(np.repeat(image, 2000, axis=0), 2, np.random.default_rng(1))
    padded = np.pad(image[0], ((2, 2), (2, 2), (0, 0)))
    windows = {padded[dy : dy + 8, dx : dx + 8].tobytes(): (dy, dx, False) for dy in range(5) for dx in range(5)}
    windows |= {
        padded[dy : dy + 8, dx : dx + 8][:, ::-1].tobytes(): (dy, dx, True) for dy in range(5) for dx in range(5)
    }
    drawn = [windows.get(o.tobytes()) for o in out]
    assert None not in drawn  # every output is a window of the padded image, or its mirror
    assert len(set(drawn)) == 50  # every offset, each with and without the flip
    assert 0.45 < np.mean([d[2] for d in drawn]) < 0.55
    assert not np.array_equal(out, pad_crop_flip(np.repeat(image, 2000, axis=0), 2, np.random.default_rng(2)))


def test_normalised_input_has_zero_mean_unit_std_per_channel():
    import torch

    from components.core.augment import channel_stats
    from components.uba.models import to_input

    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    images[..., 1] //= 4  # channels with different statistics
    x = to_input(torch.from_numpy(images), "resnet18", channel_stats(images, chunk=10))
    assert x.shape == (64, 3, 32, 32)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    raw = to_input(torch.from_numpy(images), "resnet18")  # control: [-1, 1] mapping leaves channel 1 off-centre
    assert raw.mean(dim=(0, 2, 3))[1] < -0.5


def test_paper_path_trains_resnet18_on_cifar_batches_with_the_recipe(params, tmp_path, monkeypatch):
    """The paper preset on CIFAR-10's own python batches at 32 x 32, shrunk only in counts: ResNet-18 sees
    normalised [B, 3, 32, 32] inputs, training batches are pad-crop-flipped with a new draw each step, the
    statistics come from the train split alone and evaluation is never augmented."""
    import torch
    from safetensors.torch import load_file

    import components.uba.component as uba
    from components.core.augment import channel_stats
    from components.core.shards import ImageShards
    from components.uba.models import build_model, to_input
    from tests.cifar_format import prepared_cifar10
    from tests.paper_path import record_inputs, record_recipe, run_paper_path

    prepared_cifar10(tmp_path)
    seen = {"inputs": record_inputs(monkeypatch, uba, "build_model"), **record_recipe(monkeypatch, uba)}
    counts = {"budget": 3, "batch_size": 8, "width": 4, "eval_batch_size": 64}
    result = run_paper_path("uba", params, counts, data_dir=tmp_path, run_root=tmp_path / "runs")

    assert all(np.isfinite(v) for v in result.metrics.values())
    assert seen["inputs"][:3] == [(8, 3, 32, 32)] * 3  # the paper's input, at the shrunk batch
    assert len(seen["augment_draws"]) == 3 and len(set(seen["augment_draws"])) == 3  # a fresh draw every step
    splits = {s: ImageShards(tmp_path, "images/cifar10", s).arrays() for s in ("train", "val", "test")}
    assert len(seen["stats_of"]) == 1 and np.array_equal(seen["stats_of"][0], splits["train"][0])
    # evaluation: the saved model on the un-augmented, train-normalised splits gives the reported numbers
    cfg = uba.Config.model_validate(yaml.safe_load((result.run_dir / "config.yaml").read_text()))
    model = build_model(cfg.task, 10, cfg.width)
    model.load_state_dict(load_file(str(result.run_dir / "model.safetensors")))
    model.eval()
    stats = channel_stats(splits["train"][0])
    with torch.no_grad():
        logits = model(to_input(torch.from_numpy(splits["val"][0]), cfg.task, stats))
        val_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(splits["val"][1])).item()
        raw = model(to_input(torch.from_numpy(splits["val"][0]), cfg.task))
        raw_loss = torch.nn.functional.cross_entropy(raw, torch.from_numpy(splits["val"][1])).item()
    assert result.metrics["val/loss"] == pytest.approx(val_loss, rel=1e-5)
    assert abs(raw_loss - val_loss) > 1e-4  # control: un-normalised inputs give another number
