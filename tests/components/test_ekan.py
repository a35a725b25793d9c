"""ekan.md §6 checks 1, 2 and 4 as tests, plus the pieces under them (splines, projector, bilinear map,
Adan, the three-body generator). Check 3 (learning vs KAN) is reported in components/ekan/README.md; one
seed of it runs here as a sanity bound, never against the MLP (the spec: the MLP wins at this scale)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from cluster.runner import execute, load_request, plan_run
from components.core.errors import ConfigError, Preempted
from components.core.optim import Adan
from components.ekan.data import ThreeBodyTable, particle_scattering
from components.ekan.equivariant import Bilinear, HomProjector, count_parameters
from components.ekan.groups import get_group
from components.ekan.models import EKAN, EMLP, KAN
from components.ekan.reps import equivariant_basis, hom_projector_dense, scalars, tensor_rho, uniform_rep, vectors
from components.ekan.spline import bspline
from pipelines.datasets.procedural import energy, initial_state, integrate, prepare_three_body


def relative_equivariance(model, rep_in, rep_out, x, samples=5, seed=0):
    """Check 1's centred form: ||f(g x) - g f(x)||^2 / ||f(x) - mean f(x)||^2, averaged over g."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        fx = model(x)
        spread = torch.sum((fx - fx.mean(0)) ** 2)
        errors = []
        for _ in range(samples):
            g = rep_in.group.sample(rng)
            r_in, r_out = (torch.tensor(r.rho(g), dtype=x.dtype) for r in (rep_in, rep_out))
            errors.append((torch.sum((model(x @ r_in.T) - fx @ r_out.T) ** 2) / spread).item())
    return float(np.mean(errors)), fx.std().item()


# Check 2: projector sanity. A wrong dual (-A instead of -A^T), a float32 solve or a loose SVD cut changes
# these dimensions; a wrong Kronecker sum breaks them for k >= 2.
INVARIANTS = {
    "SO13p": [0, 1, 0, 4],
    "SO13": [0, 1, 0, 4],
    "O13": [0, 1, 0, 3],
    "SO2": [0, 2, 0, 6],
    "O2": [0, 1, 0, 3],
    "SO3": [0, 1, 1, 3],
}


@pytest.mark.parametrize("name", sorted(INVARIANTS))
def test_invariant_dimensions_of_tensor_powers(name):
    group = get_group(name)
    assert [equivariant_basis(group, (0,) * k).shape[1] for k in range(1, 5)] == INVARIANTS[name]


@pytest.mark.parametrize("name", ["SO13p", "O13", "SO2", "O2", "SO3"])
def test_projected_weights_are_equivariant_and_projector_idempotent(name):
    # catches Hom built as rho_out ⊗ rho_in instead of rho_out ⊗ rho_in* (Lorentz: V* != V), mixed-up
    # sub-block layouts in the lazy projector, and a projector that is not a projection
    group = get_group(name)
    rep_in = uniform_rep(20, group, np.random.RandomState(1))
    rep_out = uniform_rep(12, group, np.random.RandomState(2)).gated()
    dense = hom_projector_dense(rep_out, rep_in)
    assert np.abs(dense @ dense - dense).max() < 1e-6
    projector = HomProjector(rep_out, rep_in).double()
    raw = torch.randn(3, rep_out.size, rep_in.size, dtype=torch.float64)
    W = projector(raw)
    assert torch.allclose(W.reshape(3, -1), raw.reshape(3, -1) @ torch.from_numpy(dense).T, atol=1e-10)
    assert torch.allclose(projector(W), W, atol=1e-10)  # P^2 = P through the lazy path
    for g in (group.sample(np.random.default_rng(seed)) for seed in range(3)):
        r_in, r_out = torch.from_numpy(rep_in.rho(g)), torch.from_numpy(rep_out.rho(g))
        assert (r_out @ W @ torch.linalg.inv(r_in) - W).abs().max() < 1e-5
    assert W.abs().max() > 1e-3  # a zero projector would pass everything above


def test_lorentz_dual_is_not_the_vector():
    group = get_group("SO13p")
    assert not group.is_orthogonal
    assert equivariant_basis(group, (0, 1)).shape[1] == 1  # delta in V ⊗ V*
    assert equivariant_basis(group, (0, 0)).shape[1] == 1  # eta^{-1} in V ⊗ V
    Q = equivariant_basis(group, (1, 0, 1, 0))  # the unsorted kinds go through an axis permutation
    g = group.sample(np.random.default_rng(0))
    assert np.abs(tensor_rho((1, 0, 1, 0), g) @ Q - Q).max() < 1e-9 and Q.shape[1] == 4  # eta lowers: as V^{⊗4}


def test_uniform_rep_allocation():
    group = get_group("SO13p")
    rep = uniform_rep(200, group, np.random.RandomState(0))
    assert rep.size == 200 and str(rep) == "68V⁰+9V+8V*+V²+2V⊗V*+V*²"
    assert rep.gated().size == 221  # one gate per non-scalar block


# The pieces under the layer.
def test_bspline_matches_scipy_and_is_a_partition_of_unity():
    grid = torch.linspace(-1, 1, 4, dtype=torch.float64).expand(2, 4)
    x = torch.linspace(-0.999, 0.999, 57, dtype=torch.float64).expand(2, 57).T
    ours = bspline(x, grid, 3)  # (57, 2, G + k = 6)
    h = 2 / 3
    knots = np.concatenate([-1 - h * np.arange(3, 0, -1), np.linspace(-1, 1, 4), 1 + h * np.arange(1, 4)])
    reference = BSpline.design_matrix(x[:, 0].numpy(), knots, 3).toarray()
    assert np.abs(ours[:, 0].numpy() - reference).max() < 1e-12
    assert torch.allclose(ours.sum(-1), torch.ones(57, 2, dtype=torch.float64))


def test_bilinear_fast_path_matches_dense_reference_and_is_equivariant():
    group = get_group("SO13p")
    rep = uniform_rep(60, group, np.random.RandomState(0)).gated()
    layer = Bilinear(rep, np.random.default_rng(0)).double()
    x = torch.randn(5, rep.size, dtype=torch.float64)
    reference = (layer.dense(x) @ x[..., None])[..., 0]
    assert torch.allclose(layer(x), reference, atol=1e-10)
    R = torch.from_numpy(rep.rho(group.sample(np.random.default_rng(1))))
    assert torch.allclose(layer(x @ R.T), layer(x) @ R.T, atol=1e-8)
    assert layer(x).abs().max() > 1e-2


def test_adan_matches_hand_computed_steps():
    param = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = Adan([param], lr=0.1)
    b1, b2, b3 = 0.98, 0.92, 0.99
    grads = [2.0, -1.0]
    m = v = n = 0.0
    x, previous = 1.0, grads[0]
    for t, g in enumerate(grads, start=1):
        param.grad = torch.tensor([g], dtype=torch.float64)
        optimizer.step()
        diff = g - previous
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * diff
        n = b3 * n + (1 - b3) * (g + b2 * diff) ** 2
        denom = np.sqrt(n / (1 - b3**t)) + 1e-8
        x -= 0.1 * (m / (1 - b1**t) + b2 * v / (1 - b2**t)) / denom
        previous = g
        assert abs(param.item() - x) < 1e-12


# Check 4: the parameter anchors of the official code (seeded uniform_rep, same layer shapes).
def test_parameter_counts_match_the_official_code():
    lorentz, so2 = get_group("SO13p"), get_group("SO2")
    assert (
        count_parameters(
            EKAN(vectors(lorentz, 3), scalars(lorentz), [uniform_rep(200, lorentz, np.random.RandomState(0))])
        )
        == 34014
    )
    allocation = np.random.RandomState(0)
    emlp = EMLP(vectors(lorentz, 3), scalars(lorentz), [uniform_rep(200, lorentz, allocation) for _ in range(3)])
    assert count_parameters(emlp) == 132734  # 34,014 / 132,734 = 25.6 %: the abstract's "26 %"
    assert (
        count_parameters(
            EKAN(vectors(lorentz, 4), scalars(lorentz), [uniform_rep(1000, lorentz, np.random.RandomState(0))])
        )
        == 435493
    )
    assert count_parameters(KAN(16, 1, [3840])) == 460801
    three_body = EKAN(vectors(so2, 24), vectors(so2, 6), [uniform_rep(45, so2, np.random.RandomState(0))])
    assert 30000 < count_parameters(three_body) < 34000  # the ~32k budget of the smallest three-body EKAN


# Check 1: exact equivariance with the centred normalisation.
@pytest.mark.parametrize("name", ["SO2", "O2"])
def test_untrained_vector_output_ekan_is_equivariant(name):
    # the spec's setting A at init (24V -> 6V, vector outputs vary at init); evaluating splines on raw
    # (non-invariant) coordinates, or giving the channels of a block different gates, fails this
    group = get_group(name)
    torch.manual_seed(0)
    model = EKAN(vectors(group, 24), vectors(group, 6), [uniform_rep(45, group, np.random.RandomState(0))])
    error, spread = relative_equivariance(model, vectors(group, 24), vectors(group, 6), torch.randn(128, 48))
    assert error < 1e-8 and spread > 1e-4


def run_ekan(params, data_root, tmp_path, seed=0, **overrides):
    request = plan_run("ekan", params, preset="test", overrides=overrides, seed=seed, data_dir=data_root)
    return execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)


THIRTY = {
    "task": "three_body",
    "steps": 30,
    "n_train": 256,
    "n_test": 256,
    "batch_size": 128,
    "width": 45,
    "equivariance_points": 256,
}


@pytest.mark.parametrize("name", ["SO2", "O2"])
def test_trained_ekan_is_equivariant_and_kan_mlp_are_not(params, data_root, tmp_path, name):
    # through the component on the prepared three-body data, after 30 steps with grid updates;
    # the KAN and MLP baselines must fail the same check, so the check can fail
    ekan = run_ekan(params, data_root, tmp_path / "ekan", group=name, **THIRTY).metrics
    assert ekan["equivariance/rel_error"] < 1e-8  # spec: 1.8e-13 measured for SO(2) 24V -> 6V
    assert ekan["equivariance/output_std_ratio"] > 1e-3  # not a constant
    for baseline in ("kan", "mlp"):
        metrics = run_ekan(params, data_root, tmp_path / baseline, group=name, model=baseline, **THIRTY).metrics
        assert metrics["equivariance/rel_error"] > 1e-3


def test_trained_lorentz_ekan_is_equivariant_and_not_constant(params, data_root, tmp_path):
    # invariant output: at init the model is nearly constant (std ~1e-5 of the label's), so the centred
    # error only means something once the output varies; 100 steps get std(f) above 1e-3 std(y) (measured 6e-3)
    metrics = run_ekan(
        params,
        data_root,
        tmp_path,
        task="particle",
        group="O13",
        steps=100,
        n_train=256,
        n_test=256,
        batch_size=128,
        width=16,
        equivariance_points=256,
    ).metrics
    assert metrics["equivariance/output_std_ratio"] > 1e-3
    assert metrics["equivariance/rel_error"] < 1e-8


def test_without_bilinear_a_lorentz_invariant_output_ignores_the_input():
    # the spec's reason the bilinear residual is kept: without it no linear map turns vectors into the
    # gate scalars, so an invariant output of 4V cannot depend on x at all
    group = get_group("O13")
    torch.manual_seed(0)
    hidden = [uniform_rep(16, group, np.random.RandomState(0))]
    x = torch.randn(64, 16) * 0.25
    flat = EKAN(vectors(group, 4), scalars(group), hidden, bilinear=False)(x)
    assert flat.std().item() < 1e-6
    assert EKAN(vectors(group, 4), scalars(group), hidden, bilinear=True)(x).std().item() > 1e-7


# Check 3 (reported; one seed as a bound, EKAN vs KAN only).
def test_o2_toy_ekan_beats_kan_on_one_seed(params, data_root, tmp_path):
    smoke = {
        "task": "o2_toy",
        "group": "O2",
        "width": 16,
        "n_train": 128,
        "n_test": 1000,
        "steps": 300,
        "batch_size": 128,
    }
    ekan = run_ekan(params, data_root, tmp_path / "ekan", **smoke).metrics["test/mse"]
    kan = run_ekan(params, data_root, tmp_path / "kan", model="kan", **smoke).metrics["test/mse"]
    assert ekan < 0.5 * kan  # measured: EKAN 1.08, KAN 1.8e4 (seed 0); spec: 0.83 / 87


# Data and plumbing.
def test_particle_target_is_lorentz_invariant():
    x = np.random.default_rng(0).standard_normal((16, 16)) * 0.25
    rep = vectors(get_group("O13"), 4)
    g = rep.group.sample(np.random.default_rng(1))
    assert np.allclose(particle_scattering(x @ rep.rho(g).T), particle_scattering(x), rtol=1e-8, atol=1e-12)


def test_three_body_generator_is_physical_and_reproducible(tmp_path, data_root):
    rng = np.random.default_rng(0)
    circular = integrate(initial_state(rng, orbit_noise=0.0), np.linspace(0, 5, 50), 1e-9)
    radii = np.linalg.norm(circular[..., :2], axis=-1)
    assert np.ptp(radii) < 1e-4  # circular without noise (HNN speed factor); the solver tolerance leaves 1e-5
    first = prepare_three_body(tmp_path / "a" / "tables" / "tb", trajectories=4, seed=3)
    second = prepare_three_body(tmp_path / "b" / "tables" / "tb", trajectories=4, seed=3)
    assert [f["sha256"] for f in first["files"]] == [f["sha256"] for f in second["files"]]
    table = ThreeBodyTable(data_root, "tables/three_body")
    assert table.manifest["max_relative_energy_drift"] < 1e-3
    x, y = table.windows("train")
    orbits = table.arrays["train"]
    assert x.shape == (len(orbits) * 45, 48) and y.shape == (len(orbits) * 45, 12)
    assert np.array_equal(x[47].reshape(4, 3, 4), orbits[1, 2:6]) and np.array_equal(y[47], orbits[1, 6].reshape(-1))
    assert abs(energy(orbits[0, 0]) - energy(orbits[0, -1])) < 1e-3


def test_resume_after_preemption_is_bit_exact(params, data_root, tmp_path, preempt_at):
    # grids (buffers), Adan's state and the loss history all come back from the checkpoint
    sets = {"steps": 12, "stop_grid_update_step": 10, "grid_update_num": 5}
    request = plan_run("ekan", params, preset="test", overrides=sets, seed=1, data_dir=data_root)
    common = dict(data_dir=data_root, show_progress=False, checkpoint_every=3)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(4)], **common)
    (cut_dir,) = (tmp_path / "cut" / "ekan").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
    digest = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in (whole.run_dir, cut_dir)]
    assert digest[0] == digest[1]


def test_group_must_fit_the_task(params, data_root):
    with pytest.raises(ConfigError, match="group"):
        plan_run("ekan", params, preset="test", overrides={"task": "particle", "group": "O2"}, data_dir=data_root)
    with pytest.raises(ConfigError, match="augment"):
        plan_run("ekan", params, preset="test", overrides={"augment": True}, data_dir=data_root)


def test_presets_validate_test_preset_is_deterministic_and_paper_model_steps(params, data_root, tmp_path):
    from components.core.config import resolve_config
    from components.ekan.component import component

    for preset in ("test", "smoke", "paper"):
        cfg = resolve_config(component, preset, params.get("ekan"))
        assert cfg.model == "ekan"
    first = run_ekan(params, data_root, tmp_path / "a", seed=3).metrics
    second = run_ekan(params, data_root, tmp_path / "b", seed=3).metrics
    assert first == second and all(np.isfinite(v) for v in first.values())
    loss = component.random_step(resolve_config(component, "paper", params.get("ekan")))  # width 1000, O(1,3)
    assert isinstance(loss, float) and np.isfinite(loss)
