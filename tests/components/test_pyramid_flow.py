"""pyramid_flow.md §6 checks 1, 2, 4, 5 (no training), check 3 at the smoke budget, the training pairs and the
temporal pyramid, the model's mask and positions, the run's artefacts, determinism and resume."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from cluster.runner import execute, load_request, plan_run
from components.core.config import resolve_config
from components.core.contract import PRESETS
from components.core.errors import ConfigError, Preempted
from components.pyramid_flow import sampler
from components.pyramid_flow.component import build_model, component
from components.pyramid_flow.model import sincos
from components.pyramid_flow.pyramid import (
    Layout,
    down,
    history_levels,
    latent_pyramid,
    patchify,
    per_sample_loss,
    training_batch,
    unpatchify,
    up,
)
from components.pyramid_flow.sampler import oracle_velocity, sample_unit, sampling_cost
from components.pyramid_flow.schedule import block_noise, jump_coefficients, stage_table

SMOKE_SHAPE = (5, 4, 8, 8)  # moving squares: 5 latent frames of 4 x 8 x 8


def smoke_config(**overrides):
    return resolve_config(component, "smoke", overrides)


# Check 1: the stage table, exact. A sigma/signal mix-up, a missing start correction or a wrong gamma fails here.
def test_stage_table_matches_the_spec():
    table = stage_table()
    assert np.allclose(table.start, (1.0, 0.8002, 0.5007), atol=1e-4)
    assert np.allclose(table.end, (0.667, 0.334, 0.0), atol=1e-12)
    assert np.allclose(table.tau_max, (1000.0, 744.0, 386.0), atol=0.5)
    assert np.allclose(table.tau_min, (744.0, 386.0, 1.0), atol=0.5)
    for k in (1, 2):
        a = 1 - table.end[k - 1]
        b = 1 - table.start[k]
        assert abs(b - a / (2 - a)) < 1e-6  # gamma = 1/3: b = a / (2 - a)
        assert abs(table.alpha[k] - (1 + b) / 2) < 1e-6
        assert abs(table.beta[k] - math.sqrt(3) * (1 - b) / 2) < 1e-6
        assert abs(table.start[k] - 2 * table.end[k - 1] / (1 + table.end[k - 1])) < 1e-6  # the noise form
    # the model time at local step i is the stage's slice of the timeline, linear in i (never r itself)
    assert abs(table.tau(2, torch.tensor(999)).item() - 1.385) < 1e-9


@pytest.mark.parametrize("gamma", [1 / 3, 0.2, 0.1])
def test_jump_coefficients_match_signal_and_covariance(gamma):
    # alpha a = b, beta^2 gamma = alpha^2 (1-a)^2 (off-diagonal), beta^2 (1+gamma) = (1-b)^2 (diagonal)
    for a in (0.333, 0.5, 0.666):
        alpha, beta, b = jump_coefficients(a, gamma)
        assert abs(alpha * a - b) < 1e-12
        assert abs(beta**2 * gamma - alpha**2 * (1 - a) ** 2) < 1e-12
        assert abs(beta**2 * (1 + gamma) - (1 - b) ** 2) < 1e-12


def test_gamma_above_a_third_and_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="gamma"):
        resolve_config(component, "smoke", {"gamma": 0.5})
    with pytest.raises(ConfigError, match="multiple of sum.sample_ratios"):
        resolve_config(component, "smoke", {"batch_size": 30})
    with pytest.raises(ConfigError, match="stage_range needs stages"):
        resolve_config(component, "smoke", {"stage_range": [0, 0.5, 1]})
    with pytest.raises(ConfigError, match="sample_steps needs one entry per stage"):
        resolve_config(component, "smoke", {"stages": 2, "stage_range": [0, 0.5, 1], "sample_ratios": [1, 1]})


# Check 2: the jump gives exactly the start-point law of stage k (Monte Carlo, 4e5 draws, no model).
def jump_moments(k: int, renoise: str, draws: int = 400_000):
    table = stage_table()
    generator = torch.Generator().manual_seed(k)
    clean = latent_pyramid(torch.randn(1, 8, 8, generator=generator, dtype=torch.float64), 3)
    a, b = 1 - table.end[k - 1], 1 - table.start[k]
    previous = clean[k - 1][..., :2, :2]  # a fixed 2x2 clean latent at the lower level
    end_point = (1 - a) * torch.randn(draws, 1, 2, 2, generator=generator, dtype=torch.float64) + a * previous
    if renoise == "block":
        xi = block_noise((draws, 1, 4, 4), table.gamma, generator, torch.float64)
        jumped = table.alpha[k] * up(end_point) + table.beta[k] * xi
    else:  # the naive renoise: i.i.d. noise scaled to the same per-element variance
        alpha = b / a
        beta = math.sqrt((1 - b) ** 2 - alpha**2 * (1 - a) ** 2)
        jumped = alpha * up(end_point) + beta * torch.randn(draws, 1, 4, 4, generator=generator, dtype=torch.float64)
    centred = jumped - b * up(previous)
    blocks = centred.reshape(draws, 2, 2, 2, 2).permute(0, 1, 3, 2, 4).reshape(draws, 4, 4)
    cov = torch.einsum("nbi,nbj->bij", blocks, blocks) / draws
    return blocks.mean(dim=0), cov, (1 - b) ** 2


@pytest.mark.parametrize("k", [1, 2])
def test_jump_preserves_start_point_statistics(k):
    mean, cov, variance = jump_moments(k, "block")
    assert mean.abs().max() < 0.01
    diagonal = torch.diagonal(cov, dim1=1, dim2=2)
    assert ((diagonal - variance).abs() / variance).max() < 0.02
    off = cov - torch.diag_embed(diagonal)
    assert off.abs().max() < 0.01


@pytest.mark.parametrize("k", [1, 2])
def test_naive_iid_renoise_fails_the_covariance_check(k):
    # the same check with i.i.d. renoising keeps the 1 1^T covariance of Up(): off-diagonals 0.064-0.159
    _, cov, _ = jump_moments(k, "iid", draws=100_000)
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
    assert off.abs().max() > 0.05


def test_block_noise_has_the_block_covariance_and_zero_block_sums():
    generator = torch.Generator().manual_seed(0)
    xi = block_noise((50_000, 2, 2), 0.2, generator, torch.float64).reshape(50_000, 4)
    sigma = 1.2 * torch.eye(4, dtype=torch.float64) - 0.2
    assert (xi.T @ xi / 50_000 - sigma).abs().max() < 0.03
    at_third = block_noise((100, 4, 4), 1 / 3, generator, torch.float64)
    assert down(at_third).abs().max() < 1e-12  # gamma = 1/3: rank 3, every block sums to zero


# Check 4: sampling cost, FLOPs counted, against the predicted ratio (untrained model: cost does not need training).
@pytest.mark.parametrize("steps", [3, 10])
def test_sampling_cost_matches_the_prediction(steps):
    cfg = smoke_config()
    torch.manual_seed(0)
    model = build_model(cfg, SMOKE_SHAPE)
    cost = sampling_cost(model, stage_table(), 4, steps)
    measured, predicted = cost["sample/flops_ratio_vs_fullres"], cost["sample/flops_ratio_predicted"]
    assert abs(measured - predicted) / predicted < 0.01  # measured 0.4361 vs 0.4342 (linear only: 0.4375)
    assert abs(cost["sample/flops_ratio_linear_only"] - 21 / 48) < 1e-12


# Check 5: the full sampler with the closed-form oracle lands on x1 (Euler grids, jumps, fresh block noise).
@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_sampler_lands_on_the_clean_latent(steps, seed):
    table = stage_table()
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(2, 4, 8, 8, generator=generator)
    landed = sample_unit(oracle_velocity(x1, table), table, [steps] * 3, tuple(x1.shape), generator)
    assert (landed - x1).abs().max() < 1e-5  # measured 2.4e-7 in float32


@pytest.mark.parametrize("broken", ["final ratio 1/T", "reversed direction"])
def test_oracle_check_catches_a_broken_euler_grid(broken, monkeypatch):
    # the oracle's field is exact, so only the grid can miss: a last ratio that never reaches 0, or steps
    # taken the wrong way, leave the sampler off x1
    table = stage_table()
    right = sampler.stage_grid

    def wrong(table, k, steps):
        ratios, taus = right(table, k, steps)
        return (ratios[:-1] + [ratios[-2]], taus) if broken == "final ratio 1/T" else (ratios[::-1][1:] + [1.0], taus)

    monkeypatch.setattr(sampler, "stage_grid", wrong)
    generator = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, 4, 8, 8, generator=generator)
    landed = sample_unit(oracle_velocity(x1, table), table, [3] * 3, tuple(x1.shape), generator)
    assert not (landed - x1).abs().max() < 1e-5


# The training pairs: the target is S_k - E_k of the SAME noise as x_r, tau is the stage's slice.
def test_training_targets_are_the_oracle_velocity_of_x_r():
    table = stage_table()
    layout = Layout(3, 2, 8, 8)
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(8, 5, 4, 8, 8, generator=generator)
    stages = np.array([0, 1, 1, 2, 0, 1, 1, 2])
    units = np.array([0, 1, 2, 3, 4, 0, 4, 4])
    batch = training_batch(clips, stages, units, table, layout, 1 / 3, generator)
    for b in range(8):
        k, n = int(stages[b]), layout.tokens[int(stages[b])]
        size = layout.sizes[k]
        current = batch.packed.current[b]
        x_r = unpatchify(batch.packed.tokens[b, current], 2, 4, *size)
        target = unpatchify(batch.target[b, current], 2, 4, *size)
        r = batch.ratio[b].item()
        expected = oracle_velocity(clips[b, units[b]], table)(x_r, k, r, 0.0)
        assert current.sum() == n and torch.allclose(target, expected, atol=1e-4)
        index = round((1 - r) * 1000)
        assert abs(batch.tau[b].item() - table.tau(k, torch.tensor(index)).item()) < 1e-3
        assert table.tau_min[k] - 1 <= batch.tau[b].item() <= table.tau_max[k]


def test_temporal_pyramid_history_levels_and_alignment():
    # unit j-1 at the current stage's level, j-2 one lower, older at level 0 (the off-by-one of §8)
    assert history_levels(2, 4) == [0, 0, 1, 2]
    assert history_levels(1, 3) == [0, 0, 1]
    assert history_levels(0, 2) == [0, 0]
    table = stage_table()
    layout = Layout(3, 2, 8, 8)
    clips = torch.randn(1, 5, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    batch = training_batch(clips, np.array([2]), np.array([4]), table, layout, 0.0, torch.Generator().manual_seed(2))
    packed = batch.packed
    pyramid = latent_pyramid(clips[0], 3)
    at = 0
    for unit, level in enumerate([0, 0, 1, 2]):  # clean history when corrupt_ratio = 0
        n = layout.tokens[level]
        assert torch.equal(packed.frame[0, at : at + n], torch.full((n,), unit))
        assert torch.allclose(packed.tokens[0, at : at + n], patchify(pyramid[level][unit], 2))
        assert torch.equal(packed.pos[0, at : at + n], torch.arange(layout.offsets[level], layout.offsets[level] + n))
        at += n
    assert packed.current[0, at:].all() and at + 16 == packed.tokens.shape[1]
    corrupted = training_batch(
        clips, np.array([2]), np.array([4]), table, layout, 1 / 3, torch.Generator().manual_seed(2)
    ).packed.tokens[0, :at]
    assert not torch.allclose(corrupted, packed.tokens[0, :at])  # training history is noised


def test_loss_reads_only_current_tokens_and_history_never_sees_the_current_unit():
    cfg = smoke_config()
    torch.manual_seed(0)
    model = build_model(cfg, SMOKE_SHAPE)
    table = stage_table()
    clips = torch.randn(4, 5, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    batch = training_batch(
        clips,
        np.array([0, 1, 1, 2]),
        np.array([3, 2, 0, 4]),
        table,
        model.layout,
        1 / 3,
        torch.Generator().manual_seed(1),
    )
    out = model(batch.packed, batch.tau)
    changed = out.clone()
    changed[~batch.packed.current] += 5.0
    assert torch.equal(per_sample_loss(out, batch), per_sample_loss(changed, batch))
    history = batch.packed.valid & ~batch.packed.current
    batch.packed.tokens[batch.packed.current] += 1.0  # perturb the noisy current unit only
    again = model(batch.packed, batch.tau)
    assert torch.allclose(again[history], out[history], atol=1e-6)  # temporal-causal mask
    assert not torch.allclose(again[batch.packed.current], out[batch.packed.current])


def test_low_res_positions_sit_on_the_full_res_grid():
    cfg = smoke_config()
    model = build_model(cfg, SMOKE_SHAPE)
    layout = model.layout
    # level 0 (2x2 latent, 1 token) covers the 4x4 full-res token grid: centre (1.5, 1.5)
    expected = torch.cat([sincos(torch.tensor([1.5]), 32), sincos(torch.tensor([1.5]), 32)], dim=1)
    assert torch.allclose(model.spatial[layout.offsets[0]], expected[0])
    # level 1 token (1, 0) covers full-res rows 2-3, columns 0-1: centre (2.5, 0.5)
    expected = torch.cat([sincos(torch.tensor([2.5]), 32), sincos(torch.tensor([0.5]), 32)], dim=1)
    assert torch.allclose(model.spatial[layout.offsets[1] + 2], expected[0])


# Check 3 (smoke budget) and check 6 (logged), with the run's artefacts.
def test_smoke_run_learns_and_writes_its_artefacts(params, data_root, tmp_path):
    request = plan_run("pyramid_flow", params, preset="smoke", data_dir=data_root)
    assert request.config.steps >= 150
    result = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)
    m = result.metrics
    # untrained: worse than predicting zero (spec ~1.5x); after the budget: < 0.6 of the zero predictor
    assert m["val/loss_ratio_init"] > 1.0
    assert m["val/loss_ratio_vs_zero"] < 0.6  # measured 0.30 at 400 steps (spec prototype: 0.37 at 200)
    assert all(m[f"val/loss_ratio_stage{k}"] < 1.0 for k in range(3))
    assert math.isfinite(m["val/history_gain"])  # check 6: logged, not gated
    assert m["jump/cov_err"] < 0.01 and m["sample/oracle_max_err"] < 1e-9
    run = result.run_dir
    with open(run / "stage_table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [round(float(r["start_noise"]), 4) for r in rows] == [1.0, 0.8002, 0.5007]
    assert "| stage |" in (run / "stage_table.md").read_text()
    with open(run / "losses.csv") as handle:
        losses = list(csv.DictReader(handle))
    assert len(losses) == request.config.steps and set(losses[0]) >= {"loss_stage0", "loss_stage1", "loss_stage2"}
    for name in ("samples.png", "losses.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "model.safetensors").is_file()


def test_presets_validate_and_test_preset_is_deterministic(params, data_root, tmp_path):
    for preset in PRESETS:
        resolve_config(component, preset, params.get("pyramid_flow"))
    request = plan_run("pyramid_flow", params, preset="test", seed=3, data_dir=data_root)
    first = execute(request, run_root=tmp_path / "a", data_dir=data_root, show_progress=False)
    second = execute(request, run_root=tmp_path / "b", data_dir=data_root, show_progress=False)
    assert first.metrics == second.metrics


def test_resume_after_preemption_is_bit_exact(params, data_root, tmp_path, preempt_at):
    request = plan_run("pyramid_flow", params, preset="test", overrides={"steps": 12}, seed=1, data_dir=data_root)
    common = dict(data_dir=data_root, show_progress=False, checkpoint_every=4)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(6)], **common)
    (cut_dir,) = (tmp_path / "cut" / "pyramid_flow").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
    with open(cut_dir / "losses.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 12


def test_pyramid_flow_stages_sweep_is_valid(params):
    from pipelines.sweep import expand_sweep

    sweep = params["sweeps"]["pyramid_flow_stages"]
    trials = expand_sweep(sweep)
    assert sweep["component"] == "pyramid_flow" and set(sweep["grid"]) == {"gamma", "stage_range"}
    for trial in trials:
        plan_run("pyramid_flow", params, preset="test", overrides=trial.overrides, check_data=False)
