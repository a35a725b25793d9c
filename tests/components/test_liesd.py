"""liesd.md §6 checks 1-4 (the spec's smoke checks) plus the pieces they rest on: the gap rule, the subspace
metric, Adan, and the plumbing (determinism, resume, config errors). Checks 2-3 and the two-body runs are
gated on the network's fit first: a network above the spec's error threshold FAILS the test with its
numbers (it never skips), because the symmetry result of an unfitted network means nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cluster.runner import execute, load_request, plan_run
from components.core.config import resolve_config
from components.core.errors import ConfigError, Preempted
from components.core.optim import Adan
from components.liesd import evaluation, systems, tasks
from components.liesd.component import component, make_data
from components.liesd.discovery import discover, gram_matrix

FIT_THRESHOLD = 1e-3  # liesd.md §6: checks 2-3 need the network at relative MSE <~ 1e-3 (above the noise floor)


def inertia_spectrum(form: str, rows=None, n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Singular values and G of the exact inertia function (no network) in `form`."""
    x = torch.from_numpy(tasks.inertia_split(n, 3, 0.0, np.random.default_rng(seed))[0].x)
    out_shape = (3, 3) if form == "tensor" else (1, 9)
    if rows is None:
        gram = gram_matrix(lambda v: tasks.inertia_torch(v, 3), x, form, out_shape)
    else:  # a hand-modified assembly, to show the check can fail
        from torch.func import jacrev, vmap

        flat = x.reshape(n, 9)
        fn = lambda v: tasks.inertia_torch(v, 3)  # noqa: E731
        block = rows(x, vmap(fn)(flat).reshape(n, 3, 3), vmap(jacrev(fn))(flat).reshape(n, 3, 3, 3, 3))
        gram = systems.gram(block).numpy()
    return systems.spectrum(gram).sigma, gram


def check_one_holds(sigma: np.ndarray, gram: np.ndarray) -> bool:
    """liesd.md §6 check 1: exactly 5 singular values below 1e-4 sigma_6, and so(3) + scaling in that null space."""
    truth = tasks.true_unknowns("inertia", "tensor", 3)
    return int(np.sum(sigma < 1e-4 * sigma[5])) == 5 and np.linalg.norm(gram @ truth.T) < 1e-8 * np.linalg.norm(gram)


# Check 1: the assembly with the exact function (no network).
def test_exact_inertia_tensor_form_has_exactly_five_null_directions():
    sigma, gram = inertia_spectrum("tensor")
    assert int(np.sum(sigma < 1e-4 * sigma[5])) == 5, sigma[:8]
    assert check_one_holds(sigma, gram)


def test_input_vec_mismatch_breaks_check_one():
    # x flattened (point, coordinate) for the network but the Jacobian read back as (coordinate, point):
    # the shapes agree (k = d = 3), so only the count can tell
    def swapped_jacobian(x, f, jac):
        return systems.tensor_rows(x, f, jac.transpose(3, 4))

    sigma, gram = inertia_spectrum("tensor", rows=swapped_jacobian)
    assert int(np.sum(sigma < 1e-4 * sigma[5])) != 5 and not check_one_holds(sigma, gram)


def test_missing_b2_block_breaks_check_one():
    # without F B2^T a rotation cannot be written: only scaling (A = I, B1 = 2I) stays null
    def without_b2(x, f, jac):
        rows = systems.tensor_rows(x, f, jac).clone()
        rows[:, :, 18:] = 0.0
        return rows

    sigma, gram = inertia_spectrum("tensor", rows=without_b2)
    nonzero = sigma[sigma > 1e-4 * sigma[-1]]
    assert len(sigma) - len(nonzero) - 9 != 5  # the 9 zeroed B2 columns aside, the null space is no longer 5-dim
    assert not check_one_holds(sigma, gram)


@pytest.mark.parametrize("block", ["A", "B2"])
def test_transposed_block_breaks_check_one(block):
    # (x^T kron J) instead of (J kron x^T) on row-major vec(A), or vec(F B2) instead of vec(F B2^T): a
    # relabelling keeps the count at 5, but so(3) leaves the null space
    columns = slice(0, 9) if block == "A" else slice(18, 27)

    def transposed(x, f, jac):
        rows = systems.tensor_rows(x, f, jac).clone()
        rows[:, :, columns] = rows[:, :, columns].reshape(len(x), 9, 3, 3).transpose(2, 3).reshape(len(x), 9, 9)
        return rows

    sigma, gram = inertia_spectrum("tensor", rows=transposed)
    assert not check_one_holds(sigma, gram)


# Check 4: invariance (B = 0) with the exact scalar sum_i |r_i|^2: so(3) only, no scaling direction.
def test_invariant_scalar_has_so3_and_no_scaling():
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((300, 3, 3)))
    jac = (2.0 * x).reshape(300, 1, 1, 3, 3)  # d/dr_l sum_i |r_i|^2 = 2 r_l
    f = (x**2).sum(dim=(1, 2)).reshape(300, 1, 1)
    block = systems.multichannel_rows(x, f, jac, invariant=True)
    assert block.shape[-1] == 9  # the B column is dropped
    result = systems.spectrum(systems.gram(block).numpy())
    assert int(np.sum(result.sigma < 1e-6 * result.sigma[-1])) == 3, result.sigma
    null = result.vectors[:, :3].T.reshape(3, 3, 3)
    assert np.allclose(null + null.transpose(0, 2, 1), 0.0, atol=1e-8)  # antisymmetric: so(3), not I


def test_exact_equivariant_multichannel_function_gives_rotation_in_every_form():
    # f_k = sum_l a_kl(<x_i, x_j>) x_l is O(2)-equivariant on (R^2)^4; a wrong channel-block placement
    # in the channelwise rows (the official two-body system) loses the exact null direction
    rng = np.random.default_rng(2)
    mix, weights = torch.from_numpy(rng.standard_normal((4, 4))), torch.from_numpy(rng.standard_normal((4, 4)))

    def fn(v):
        channels = v.reshape(4, 2)
        inner = channels @ channels.T
        return (
            (mix * (1 + torch.tanh((inner * weights).sum()))) @ channels
            + torch.sin(inner).sum(1, keepdim=True) * channels
        ).reshape(8)

    x = torch.from_numpy(rng.standard_normal((400, 4, 2)))
    for form in ("channelwise", "multichannel"):
        system = systems.layout(form, 4, 2, (4, 2))
        result = systems.spectrum(gram_matrix(fn, x, form, (4, 2)))
        assert result.sigma[0] < 1e-6 * result.sigma[1], (form, result.sigma[:3])
        found = evaluation.compared(result.vectors[:, :1].T, form, system)
        truth = evaluation.compared(tasks.true_unknowns("two_body", form, 4), form, system)
        assert evaluation.error_space(found, truth) < 1e-12


# The gap rule of liesd.md §3.4, with the measured spectrum it quotes.
def test_gap_rule_skips_the_gauge_and_finds_the_quoted_gap():
    sigma = np.array([0.0, 13.7, 14.0, 14.2, 26.7, 129.6, 133.8, 140.0, 150.0, 160.0, 170.0, 180.0, 900.0])
    d, ratio = systems.gap_rule(sigma, skip=1)
    assert d == 5 and ratio == pytest.approx(129.6 / 26.7)
    assert systems.gap_rule(sigma, skip=0)[0] == 1  # the pitfall: the gauge's infinite ratio wins without the skip
    d, _ = systems.gap_rule(np.concatenate([[1.0, 50.0], np.full(10, 60.0), [1e4]]), skip=0, j_max=12)
    assert d == 1  # only the 12 smallest are read: the jump at index 13 is outside


def test_subspace_error_is_zero_for_the_truth_and_large_for_a_random_subspace():
    system = systems.layout("tensor", 3, 3, (3, 3))
    raw = tasks.true_unknowns("inertia", "tensor", 3)
    truth = evaluation.compared(raw, "tensor", system)
    gauge = np.concatenate([np.zeros(9), np.eye(3).ravel(), -np.eye(3).ravel()])
    mixed = np.linalg.qr(np.vstack([raw, gauge]).T)[0].T  # any orthonormal basis of truth + gauge
    assert evaluation.error_space(evaluation.compared(mixed, "tensor", system), truth) < 1e-20
    rng = np.random.default_rng(0)
    for _ in range(3):
        random = np.linalg.qr(rng.standard_normal((27, 5)))[0].T
        assert evaluation.error_space(evaluation.compared(random, "tensor", system), truth) > 1.0


def test_subspace_error_counts_residuals_numpy_would_drop():
    # A found basis with a zero column (the gauge after the Kronecker-sum map) is rank-deficient: numpy's
    # lstsq then returns no residuals, which would score a wrong basis 0 (liesd.md §8).
    system = systems.layout("tensor", 3, 3, (3, 3))
    truth = evaluation.compared(tasks.true_unknowns("inertia", "tensor", 3), "tensor", system)
    wrong = np.vstack([np.zeros(90), np.random.default_rng(1).standard_normal((4, 90))])
    assert evaluation.error_space(wrong, truth) > 1.0


def test_adan_matches_its_update_formula_for_two_steps():
    # A missing bias correction, a wrong sign of the gradient difference or a coupled decay all fail this.
    lr, (b1, b2, b3), eps, wd = 0.1, (0.98, 0.92, 0.99), 1e-8, 0.05
    start = np.array([1.5, -0.7, 0.2])
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = Adan([param], lr=lr, betas=(b1, b2, b3), eps=eps, weight_decay=wd)
    x, m, v, n, previous = start.copy(), 0.0, 0.0, 0.0, None
    for k in (1, 2):
        grad = 3.0 * x**2  # loss = sum x^3
        optimizer.zero_grad()
        (param**3).sum().backward()
        optimizer.step()
        diff = np.zeros_like(grad) if previous is None else grad - previous
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * diff
        n = b3 * n + (1 - b3) * (grad + b2 * diff) ** 2
        step = (m / (1 - b1**k) + b2 * v / (1 - b2**k)) / (np.sqrt(n / (1 - b3**k)) + eps)
        x, previous = (x - lr * step) / (1 + lr * wd), grad
        assert np.allclose(param.detach().numpy(), x, rtol=1e-12, atol=1e-14), k


# Checks 2-3 and the two-body runs go through the component at the smoke preset.
def smoke(params, tmp_path, seed: int = 0, **overrides):
    request = plan_run("liesd", params, preset="smoke", overrides=overrides, seed=seed, data_dir=tmp_path)
    return execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False)


def require_fit(metrics: dict[str, float]) -> None:
    """The gate: fail loudly (never skip) when the network did not fit, with the numbers."""
    excess = metrics["train_excess_rel_mse"]
    if not excess <= FIT_THRESHOLD:
        pytest.fail(
            f"the network did not fit: train relative MSE {metrics['train_rel_mse']:.3g} is "
            f"{excess:.3g} above the noise floor {metrics['noise_floor_rel_mse']:.3g} (threshold "
            f"{FIT_THRESHOLD:g}); the symmetry result cannot be judged"
        )
    assert metrics["fitted"] == 1.0


def test_check2_trained_inertia_finds_so3_and_scaling(params, tmp_path):
    # A wrong vec convention, a gap rule that counts the gauge ratio, or Jacobians of the wrong output
    # layout give D != 5 or a large subspace error. Measured (4 seeds): gap 4.65-4.95, error 6.8e-4-8.8e-4.
    result = smoke(params, tmp_path)
    metrics = result.metrics
    require_fit(metrics)
    assert metrics["num_bases_detected"] == 5
    assert metrics["gap_ratio"] > 3.0
    assert metrics["error_space"] < 1e-2
    assert metrics["sigma/01"] < 1e-6 * metrics["sigma/02"]  # the gauge is an exact zero
    for name in ("spectrum.png", "bases.png", "bases.npz", "model.safetensors", "timing.json"):
        assert (result.run_dir / name).is_file(), name
    assert np.load(result.run_dir / "bases.npz")["B1"].shape == (5, 3, 3)


def test_check3_noise_keeps_the_five_bases(params, tmp_path):
    # Measured (4 seeds): train relative MSE 6.6e-3 under a noise floor of 8.6e-3; gap 3.9-4.2, error 1.9e-3-2.8e-3.
    metrics = smoke(params, tmp_path, **{"inertia.noise": 0.1}).metrics
    require_fit(metrics)
    assert metrics["noise_floor_rel_mse"] > 1e-3  # the noise really is there
    assert metrics["num_bases_detected"] == 5
    assert metrics["gap_ratio"] > 3.0
    assert metrics["error_space"] < 1e-2


def test_vector_baseline_has_spurious_directions(params, tmp_path):
    # The paper's claim for inertia: the vector form (B in R^{9x9}) has no clean gap and its 26 smallest
    # directions do not span so(3) + scaling. A tensor-form system mislabelled as vector would pass as good.
    metrics = smoke(params, tmp_path, form="multichannel").metrics
    require_fit(metrics)
    assert metrics["num_unknowns"] == 90 and metrics["expected_bases"] == 26
    assert metrics["gap_ratio"] < 2.0
    assert metrics["error_space_expected"] > 1.0


@pytest.mark.parametrize("non_uniform", [False, True])
def test_two_body_finds_the_rotation(params, tmp_path, non_uniform):
    # Not a spec threshold (the spec's checks are inertia's): D = 1 is the paper's claim, and the inertia
    # bounds are reused. Measured at smoke: gap 8.2-9.7 (uniform), 5.1-5.9 (non-uniform); error < 1e-3.
    metrics = smoke(params, tmp_path, task="two_body", **{"two_body.non_uniform": non_uniform}).metrics
    require_fit(metrics)
    assert metrics["num_unknowns"] == 16
    assert metrics["num_bases_detected"] == 1
    assert metrics["gap_ratio"] > 3.0
    assert metrics["error_space"] < 1e-2


def test_under_trained_network_fails_the_gate(params, tmp_path):
    # The gate can say no: 3 epochs of a width-32 net (the test preset) are far from fitted.
    request = plan_run("liesd", params, preset="test", data_dir=tmp_path)
    metrics = execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False).metrics
    assert metrics["fitted"] == 0.0 and metrics["train_excess_rel_mse"] > FIT_THRESHOLD


# Plumbing.
@pytest.mark.parametrize("preset", ["test", "smoke", "paper"])
def test_every_preset_validates(params, preset):
    cfg = resolve_config(component, preset, params.get("liesd"))
    assert cfg.unknowns == 27 and cfg.resolved_form == "tensor"


def test_test_preset_is_deterministic(params, tmp_path):
    request = plan_run("liesd", params, preset="test", seed=2, data_dir=tmp_path)
    first = execute(request, run_root=tmp_path / "a", data_dir=tmp_path, show_progress=False)
    second = execute(request, run_root=tmp_path / "b", data_dir=tmp_path, show_progress=False)
    assert first.metrics == second.metrics


def test_resume_after_preemption_is_bit_exact(params, tmp_path, preempt_at):
    request = plan_run("liesd", params, preset="test", seed=1, data_dir=tmp_path)
    common = dict(data_dir=tmp_path, show_progress=False, checkpoint_every=5)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(8)], **common)  # after epoch 2 of 3
    (cut_dir,) = (tmp_path / "cut" / "liesd").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics


def test_random_step_of_the_paper_model(params):
    for task in ("inertia", "two_body"):
        loss = component.random_step(resolve_config(component, "paper", params.get("liesd"), {"task": task}))
        assert isinstance(loss, float) and math.isfinite(loss)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"form": "tensor", "task": "two_body"}, "form 'tensor' does not apply to task 'two_body'"),
        ({"form": "channelwise"}, "form 'channelwise' does not apply to task 'inertia'"),
        ({"num_bases": 28}, "num_bases 28 exceeds the 27 unknowns"),
        ({"inertia.nosie": 0.1}, "did you mean 'inertia.noise'"),
    ],
)
def test_bad_config_is_a_one_line_error(params, tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        plan_run("liesd", params, preset="smoke", overrides=overrides, data_dir=tmp_path)


# ---------------------------------------------------------------- what the mutants (tests/mutants/liesd.py) guard
# Direct tests of each mechanism, each with a negative control that shows the check can fail.


def so3_scaling_and_gauge_gram(sigma_head: np.ndarray) -> tuple[np.ndarray, systems.Layout]:
    """A tensor-form G whose smallest singular values are sigma_head, with so(3) + scaling + the gauge as the
    right singular vectors of the first five and a random orthonormal complement for the rest."""
    system = systems.layout("tensor", 3, 3, (3, 3))
    gauge = np.concatenate([np.zeros(9), np.eye(3).ravel(), -np.eye(3).ravel()])
    span = np.vstack([tasks.true_unknowns("inertia", "tensor", 3), gauge]).T
    rest = np.random.default_rng(4).standard_normal((27, 22))
    vectors = np.linalg.qr(np.hstack([span, rest]))[0]
    sigma = np.concatenate([sigma_head, np.linspace(sigma_head[-1] + 10.0, 900.0, 27 - len(sigma_head))])
    return vectors @ np.diag(sigma**2) @ vectors.T, system


def test_discover_skips_the_gauge_and_returns_the_smallest_sigma_bases():
    # The spectrum liesd.md §3.4 quotes for a trained network (gauge exactly 0, so(3) + scaling at 13.7-26.7):
    # discover() must skip the gauge's infinite ratio (D = 5, not 1) and return the SMALLEST sigma's vectors.
    gram, system = so3_scaling_and_gauge_gram(np.array([0.0, 13.7, 14.0, 14.2, 26.7, 129.6, 133.8]))
    found = discover(gram, system)
    assert found.detected == 5 and found.used == 5
    assert found.gap_ratio == pytest.approx(129.6 / 26.7, rel=1e-6)
    truth = evaluation.compared(tasks.true_unknowns("inertia", "tensor", 3), "tensor", system)
    assert evaluation.error_space(evaluation.compared(found.bases, "tensor", system), truth) < 1e-12
    assert np.allclose(found.bases @ found.bases.T, np.eye(5), atol=1e-12)  # orthonormal, as SVD gives
    # negative controls: the gauge not skipped stops at D = 1; the largest sigma's vectors miss the algebra
    assert systems.gap_rule(found.spectrum.sigma, skip=0)[0] == 1
    largest = evaluation.compared(found.spectrum.vectors[:, -5:].T, "tensor", system)
    assert evaluation.error_space(largest, truth) > 1.0


def test_kronecker_sum_is_the_two_sided_action_on_row_major_vec():
    # The metric's representation of (B1, B2) must be the action F -> B1 F + F B2^T on row-major vec(F)
    # (liesd.md §3.4), so that two output parts score alike only when they act alike.
    rng = np.random.default_rng(5)
    for d1, d2 in ((3, 3), (2, 4)):
        b1, b2, f = rng.standard_normal((d1, d1)), rng.standard_normal((d2, d2)), rng.standard_normal((d1, d2))
        action = (b1 @ f + f @ b2.T).reshape(-1)
        assert np.allclose(tasks.kronecker_sum(b1, b2) @ f.reshape(-1), action, atol=1e-12)
        wrong = np.kron(b1, np.eye(d2)) + np.kron(b2, np.eye(d1))  # the Kronecker factors in the wrong order
        assert not np.allclose(wrong @ f.reshape(-1), action, atol=1e-3)  # negative control: the check can fail
    # consequence for the metric: (G, 2G, 0) acts unlike the truth (G, G, G) and must not score as it
    system = systems.layout("tensor", 3, 3, (3, 3))
    g = tasks.so3_and_scaling()[0]
    truth = evaluation.compared(np.concatenate([g.ravel(), g.ravel(), g.ravel()])[None], "tensor", system)
    other = evaluation.compared(np.concatenate([g.ravel(), 2 * g.ravel(), 0 * g.ravel()])[None], "tensor", system)
    assert evaluation.error_space(other, truth) > 0.1


def test_subspace_error_counts_missing_and_extra_directions():
    # error_space is the residual both ways (liesd.md §3.4): a missing or an extra direction, orthogonal to the
    # rest, costs its squared norm in the compared representation.
    system = systems.layout("tensor", 3, 3, (3, 3))
    truth = evaluation.compared(tasks.true_unknowns("inertia", "tensor", 3), "tensor", system)
    subset = truth[:3]  # so(3) found, scaling missed
    assert evaluation.error_space(subset, truth) == pytest.approx(np.sum(truth[3] ** 2), rel=1e-9)
    assert np.sum(truth[3] ** 2) > 1.0
    extra = np.zeros((1, truth.shape[1]))
    extra[0, 1] = extra[0, 3] = math.sqrt(0.5)  # (A symmetric off-diagonal, B = 0): orthogonal to so(3) and I
    assert evaluation.error_space(np.vstack([truth, extra]), truth) == pytest.approx(1.0, rel=1e-9)
    # negative control: each one-sided residual alone scores one of the two wrong answers as perfect
    assert evaluation.residual(truth.T, subset.T) < 1e-20
    assert evaluation.residual(np.vstack([truth, extra]).T, truth.T) < 1e-20


def non_uniform_pairs_hold(split: tasks.Split, uniform: tasks.Split) -> bool:
    """q1 only in quadrants II and IV, and every pair either untouched or rotated by +90 degrees as a whole."""
    q1 = split.x[:, 0]
    quadrants = bool(np.all(q1[:, 0] * q1[:, 1] < 0))
    rotated = np.all(np.isclose(split.x, tasks.rotate_quarter(uniform.x)), axis=(1, 2))
    kept = np.all(split.x == uniform.x, axis=(1, 2))
    moved = (uniform.x[:, 0, 0] > 0) == (uniform.x[:, 0, 1] > 0)  # q1 in I or III before
    targets = np.where(moved[:, None, None], tasks.rotate_quarter(uniform.y), uniform.y)
    return quadrants and bool(np.all(rotated == moved) and np.all(kept == ~moved)) and np.allclose(split.y, targets)


def test_non_uniform_split_rotates_pairs_into_quadrants_two_and_four():
    # liesd.md §4: rotate inputs AND targets of the samples with q1 in I or III: the data lose the symmetry
    # while the map keeps it. Rotating the inputs alone would make the map itself non-equivariant.
    orbits = np.random.default_rng(6).standard_normal((8, 6, 4, 2))
    uniform = tasks.two_body_split(orbits, non_uniform=False)
    split = tasks.two_body_split(orbits, non_uniform=True)
    moved = (uniform.x[:, 0, 0] > 0) == (uniform.x[:, 0, 1] > 0)
    assert 0 < moved.sum() < len(moved)
    assert non_uniform_pairs_hold(split, uniform)
    inputs_only = tasks.Split(np.where(moved[:, None, None], tasks.rotate_quarter(uniform.x), uniform.x), uniform.y)
    assert not non_uniform_pairs_hold(inputs_only, uniform)  # negative control


def test_gram_is_accumulated_in_float64():
    # liesd.md §8: float32 accumulation lifts the null singular values off zero. Exact inertia, tensor form:
    # measured sigma_5 / sigma_6 = 8e-8 in float64, 9e-4 in float32.
    n = 100
    x = torch.from_numpy(tasks.inertia_split(n, 3, 0.0, np.random.default_rng(0))[0].x)
    fn = lambda v: tasks.inertia_torch(v, 3)  # noqa: E731
    gram = gram_matrix(fn, x, "tensor", (3, 3))
    assert gram.dtype == np.float64
    sigma = systems.spectrum(gram).sigma
    assert sigma[4] < 1e-5 * sigma[5], sigma[:6]
    rows = systems.rows("tensor", x, x.new_zeros(n, 3, 3), x.new_zeros(n, 3, 3, 3, 3)).float()
    assert systems.gram(rows).dtype == torch.float64  # float32 rows are promoted before the sum
    # negative control: the same rows summed in float32
    from torch.func import jacrev, vmap

    flat = x.reshape(n, 9)
    rows = systems.tensor_rows(x, vmap(fn)(flat).reshape(n, 3, 3), vmap(jacrev(fn))(flat).reshape(n, 3, 3, 3, 3))
    single = torch.einsum("bpu,bpv->uv", rows.float(), rows.float()).double().numpy()
    sigma32 = systems.spectrum(single).sigma
    assert not sigma32[4] < 1e-5 * sigma32[5]


def test_gram_matrix_does_not_depend_on_the_chunk_size():
    # G = sum over ALL discovery samples, however they are chunked (discovery_batch is memory only).
    x = torch.from_numpy(tasks.inertia_split(50, 3, 0.0, np.random.default_rng(7))[0].x)
    fn = lambda v: tasks.inertia_torch(v, 3)  # noqa: E731
    whole = gram_matrix(fn, x, "tensor", (3, 3), chunk=50)
    assert np.allclose(gram_matrix(fn, x, "tensor", (3, 3), chunk=7), whole, rtol=1e-12, atol=1e-9)
    assert np.allclose(gram_matrix(fn, x[:21], "tensor", (3, 3)) + gram_matrix(fn, x[21:], "tensor", (3, 3)), whole)
    last = gram_matrix(fn, x[49:], "tensor", (3, 3))  # negative control: the last chunk of 7 alone
    assert not np.allclose(last, whole, rtol=1e-3)


def test_make_data_keeps_test_apart_and_follows_the_seed(params):
    # Held-out orbits (HNN's first 20 %) and inertia's fresh test draws never appear in training; the data
    # follow the run's seed (same seed, same data; another seed, other data).
    def shared_rows(a: np.ndarray, b: np.ndarray) -> int:
        return len({row.tobytes() for row in a.reshape(len(a), -1)} & {row.tobytes() for row in b.reshape(len(b), -1)})

    small = {"task": "two_body", "two_body.trajectories": 10, "two_body.time_steps": 6, "two_body.t_end": 1.0}
    for overrides, train_rows in ((small, 8 * 4), ({"task": "inertia", "inertia.samples": 100}, 100)):
        cfg = resolve_config(component, "test", params.get("liesd"), overrides)
        data = make_data(cfg, 0)
        assert len(data["train"].x) == train_rows and len(data["test"].x) > 0
        assert shared_rows(data["train"].x, data["test"].x) == 0
        assert shared_rows(data["train"].x, data["train"].x) == train_rows  # negative control: overlap is seen
        again, other = make_data(cfg, 0), make_data(cfg, 1)
        assert np.array_equal(again["train"].x, data["train"].x) and np.array_equal(again["test"].y, data["test"].y)
        assert shared_rows(other["train"].x, data["train"].x) == 0 and shared_rows(other["test"].x, data["test"].x) == 0


def test_reported_errors_are_measured_on_their_own_splits(params, tmp_path):
    # train / train_clean / test relative errors, recomputed from the saved network on the splits rebuilt from
    # the seed, match what the run reports; they differ from each other, so a metric on the wrong split shows.
    from safetensors.torch import load_model

    from components.liesd.component import relative_mse
    from components.liesd.models import mlp

    overrides = {"inertia.noise": 0.1}
    request = plan_run("liesd", params, preset="test", overrides=overrides, seed=3, data_dir=tmp_path)
    result = execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False)
    cfg = resolve_config(component, "test", params.get("liesd"), overrides)
    data = make_data(cfg, 3)
    model = mlp(9, 9, cfg.width, cfg.resolved_activation)
    load_model(model, str(result.run_dir / "model.safetensors"))
    model.eval()
    measured = {split: relative_mse(model, data[split], "cpu")[1] for split in ("train", "train_clean", "test")}
    reported = {"train": "train_rel_mse", "train_clean": "train_rel_mse_clean", "test": "test_rel_mse"}
    for split, key in reported.items():
        assert result.metrics[key] == pytest.approx(measured[split], rel=1e-6), key
        others = [measured[s] for s in measured if s != split]  # negative control: the splits are told apart
        assert all(abs(result.metrics[key] - value) > 1e-4 * value for value in others), (key, measured)


def one_step_pairs_hold(split: tasks.Split, orbits: int, steps: int) -> bool:
    """Orbit states encoded as 100 * orbit + time: every pair is (t, t + 1) of one orbit, all t = 0 .. steps - 3."""
    x, y = split.x[:, 0, 0], split.y[:, 0, 0]
    expected = np.array([100.0 * i + t for i in range(orbits) for t in range(steps - 2)])
    return len(x) == orbits * (steps - 2) and np.array_equal(x, expected) and np.array_equal(y, expected + 1)


def test_two_body_pairs_are_one_step_within_each_orbit():
    # The official dataset: (state_t, state_{t+1}), 48 pairs per 50-step orbit, none across two orbits.
    orbits, steps = 3, 7
    encoded = (100.0 * np.arange(orbits)[:, None] + np.arange(steps)[None, :])[:, :, None, None] * np.ones((4, 2))
    assert one_step_pairs_hold(tasks.two_body_split(encoded, non_uniform=False), orbits, steps)
    two_step = tasks.Split(encoded[:, : steps - 2].reshape(-1, 4, 2), encoded[:, 2:].reshape(-1, 4, 2))
    assert not one_step_pairs_hold(two_step, orbits, steps)  # negative control


def test_paper_preset_resolves_to_the_official_commands(params):
    # config.yaml holds the numbers the run uses (liesd.md §3.6): inertia, tensor form, N = 100,000 with k = 3
    # points, MLP 9-384-384-9 ReLU, 100 epochs of Adan at its defaults (lr 1e-3, no decay), batch 64, no
    # schedule, discovery on the whole training set; a sweep to two_body takes that task's 10 epochs
    cfg = resolve_config(component, "paper", params.get("liesd"))
    assert (cfg.task, cfg.resolved_form, cfg.inertia.samples, cfg.inertia.points) == ("inertia", "tensor", 100_000, 3)
    assert (cfg.width, cfg.resolved_activation, cfg.epochs, cfg.batch_size) == (384, "relu", 100, 64)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.schedule.name) == ("adan", 1e-3, 0.0, "constant")
    assert cfg.discovery_samples is None and cfg.num_bases is None
    two_body = resolve_config(component, "paper", params.get("liesd"), {"task": "two_body"})
    assert (two_body.epochs, two_body.resolved_activation, two_body.resolved_form) == (10, "tanh", "channelwise")
    assert resolve_config(component, "paper", params.get("liesd"), {"task": "two_body", "epochs": 2}).epochs == 2


def test_paper_path_inertia_tensor_form(params, tmp_path, monkeypatch):
    # The paper preset end to end (moment of inertia from 3 point masses in R^3 -> the 3x3 tensor, MLP
    # 9-384-384-9 ReLU, Adan, tensor-form discovery over 27 unknowns), shrunk only in counts: 256 samples
    # instead of 100,000 and 1 epoch instead of 100 (4 steps of the paper's batch 64). Data are the
    # procedural generator's (no data stage), at the paper's dimensions.
    import components.liesd.component as module
    from tests.paper_path import run_paper_path

    seen = []
    build = module.mlp

    def recording_mlp(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda _, inputs: seen.append(tuple(inputs[0].shape)))
        return model

    monkeypatch.setattr(module, "mlp", recording_mlp)
    result = run_paper_path("liesd", params, {"inertia.samples": 256, "epochs": 1}, tmp_path / "data", tmp_path / "run")
    metrics = result.metrics
    assert result.status == "completed" and all(math.isfinite(v) for v in metrics.values())
    assert seen[0] == (64, 9) and all(shape[-1] == 9 for shape in seen)  # 3 points x 3 coordinates (vmap: (9,))
    assert metrics["num_unknowns"] == 27 and metrics["expected_bases"] == 5  # so(3) + scaling + the gauge
    assert 1 <= metrics["num_bases_detected"] <= 12 and metrics["sigma/01"] >= 0
    weights = result.run_dir / "model.safetensors"
    assert weights.stat().st_size > 4 * (9 * 384 + 384 * 384 + 384 * 9)  # the 9-384-384-9 MLP, float32
    assert np.load(result.run_dir / "bases.npz")["sigma"].shape == (27,)
    assert (result.run_dir / "spectrum.png").is_file()
