"""DI-SINDy's checks (di_sindy.md §6): the Route-B invariant solver (check 1), numerical invariance of the DI
features under an exact Galilean boost (check 2), ground-truth recovery on clean data (check 3), the built-in
symmetry of every fitted model (check 4); then the regression's parity with pysindy, the data path (splits,
noise, identical derivatives for the baseline) and the paper preset end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import sympy as sp

from cluster.runner import execute, plan_run
from components.core.errors import ConfigError, DataError
from components.core.fields import FieldDataset
from components.core.pdes import PDES, grid, monomial, trajectories
from components.di_sindy import component as di_component
from components.di_sindy import invariants, regression
from components.di_sindy.config import Config
from components.di_sindy.derivatives import jets
from components.di_sindy.invariants import U_T, Generator, jet_symbol, monomials, null_space, prolong, route_a, route_b
from pipelines.datasets import prepare

UUX_T = invariants.with_time(monomial(u=1, u_x=1))
U, UX, UXX, UXXX, UT = (jet_symbol(j, k) for j, k in ((0, 0), (1, 0), (2, 0), (3, 0), (0, 1)))
KDV_BOOST = Generator("galilean", invariants.T, sp.Integer(0), sp.Integer(1))


def span_contains(basis: list[dict], vector: dict) -> bool:
    keys = sorted({k for b in basis for k in b} | set(vector))
    matrix = np.array([[b.get(k, 0.0) for k in keys] for b in basis])
    extended = np.vstack([matrix, [vector.get(k, 0.0) for k in keys]])
    return np.linalg.matrix_rank(extended) == np.linalg.matrix_rank(matrix)


def same_span(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(span_contains(a, v) for v in b)


# --- check 1: the invariant solver -----------------------------------------------------------------------------


def test_prolongation_of_the_kdv_generators():
    """pr v(u_t + u u_x) = 0, pr v(u_x) = pr v(u_xxxx) = 0, pr v(u) = c (§3.2); scalings give lambda Delta (§3.3)."""
    assert prolong(KDV_BOOST, UT + U * UX) == 0
    assert prolong(KDV_BOOST, UX) == 0 and prolong(KDV_BOOST, jet_symbol(4, 0)) == 0
    assert prolong(KDV_BOOST, U) == 1
    assert prolong(KDV_BOOST, UT) == -UX
    kdv = UT + U * UX + UXXX
    scaling = invariants.known_generators(PDES["kdv"], use_scaling=True)[-1]
    assert sp.expand(prolong(scaling, kdv) + 5 * kdv) == 0
    burgers = UT + U * UX - sp.Rational(1, 10) * UXX
    projective = invariants.known_generators(PDES["burgers"], True, projective=True)[-1]
    assert sp.expand(prolong(projective, burgers) + 3 * invariants.T * burgers) == 0


def test_route_b_kdv_null_space_is_the_specs():
    """Check 1: 21 raw monomials of degree <= 2 in (u, u_x, u_xx, u_xxx, u_t); translations + boost leave a null
    space of dimension 11 containing u_t + u u_x; the KdV scaling leaves exactly span{u_xxx, u_t + u u_x}."""
    raw = monomials([0, 1, 2, 3, 5], 2)
    assert len(raw) == 21
    gens = invariants.known_generators(PDES["kdv"], use_scaling=False)
    basis = null_space(gens, raw)
    assert len(basis) == 11
    assert span_contains(basis, {U_T: 1.0, UUX_T: 1.0})
    assert not span_contains(basis, {invariants.with_time(monomial(u=1)): 1.0})  # u is not invariant
    scaled = null_space(invariants.known_generators(PDES["kdv"], use_scaling=True), raw)
    assert same_span(scaled, [{invariants.with_time(monomial(u_xxx=1)): 1.0}, {U_T: 1.0, UUX_T: 1.0}])


@pytest.mark.parametrize(
    "pde, scaling, degree",
    [("kdv", False, 2), ("kdv", True, 2), ("burgers", True, 2), ("ks", False, 2), ("mkdv", True, 3)],
)
def test_route_a_closed_forms_equal_route_b(pde, scaling, degree):
    """Both routes give the same target and the same span of features (the library of the §3.3 table)."""
    a = route_a(PDES[pde].galilean_c, 4, degree, PDES[pde].scaling if scaling else None)
    b = route_b(invariants.known_generators(PDES[pde], scaling), 4, degree)
    assert a.target == b.target
    assert same_span(list(a.features), list(b.features))
    expected = {("kdv", False): 15, ("kdv", True): 1, ("burgers", True): 1, ("ks", False): 15, ("mkdv", True): 4}
    assert len(a.features) == expected[(pde, scaling)]


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_target_follows_the_galilean_coefficient(c):
    """For u_t + a u u_x + ... the boost is t d_x + (1/a) d_u and the target u_t + (1/c) u u_x (§8's first pitfall)."""
    library = route_a(c, 4, 2)
    assert library.target == {U_T: 1.0, UUX_T: pytest.approx(1 / c)}
    boost = Generator("galilean", invariants.T, sp.Integer(0), sp.nsimplify(c))
    target = UT + sp.nsimplify(1 / c) * U * UX
    assert prolong(boost, target) == 0


# --- check 2: numerical invariance ---------------------------------------------------------------------------


def boosted(u: np.ndarray, t: np.ndarray, length: float, epsilon: float) -> np.ndarray:
    """u'(x, t) = u(x - eps t, t) + eps by a Fourier phase shift per snapshot (exact for band-limited u)."""
    k = 2 * np.pi / length * np.arange(u.shape[1] // 2 + 1)
    return np.fft.irfft(np.fft.rfft(u, axis=1) * np.exp(-1j * np.outer(epsilon * t, k)), n=u.shape[1], axis=1) + epsilon


def shifted_back(a: np.ndarray, t: np.ndarray, length: float, epsilon: float) -> np.ndarray:
    k = 2 * np.pi / length * np.arange(a.shape[1] // 2 + 1)
    return np.fft.irfft(np.fft.rfft(a, axis=1) * np.exp(1j * np.outer(epsilon * t, k)), n=a.shape[1], axis=1)


def test_di_features_are_invariant_under_a_boost_and_raw_ones_are_not():
    """Check 2: boost a KdV field by eps = 0.3, recompute the jets, shift back: the DI library agrees to 1e-3, the
    raw u u_xx and u_t differ by more than 1e-2."""
    setting = PDES["kdv"].settings["smoke"]
    x, t = grid(setting)
    u = trajectories(PDES["kdv"], setting, 1, 0)[0]
    dt, length, eps = t[1] - t[0], setting.length, 0.3
    before = jets(u, dt, length)
    after = jets(boosted(u, t, length, eps), dt, length)
    inner = t[2:-2]
    after = {name: shifted_back(a, inner, length, eps) for name, a in after.items()}
    library = route_a(1.0, 4, 2)

    def change(term):
        reference = invariants.evaluate(term, before)
        return np.linalg.norm(invariants.evaluate(term, after) - reference) / np.linalg.norm(reference)

    assert change(library.target) < 1e-3
    assert max(change(f) for f in library.features if f != {invariants.with_time(monomial()): 1.0}) < 1e-3
    for raw in ({invariants.with_time(monomial(u=1, u_xx=1)): 1.0}, {U_T: 1.0}):
        assert change(raw) > 1e-2
    assert max(change(f) for f in invariants.raw_library().features if f != {(0,) * 6: 1.0}) > 1e-2


# --- check 3: recovery on clean data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_fields(tmp_path_factory):
    root = tmp_path_factory.mktemp("fields")
    for pde in ("kdv", "burgers", "ks"):
        prepare(f"fields/{pde}", {"source": "pde-fields", "pde": pde, "trajectories": 6}, root)
    return root


def run(params, data_root, run_root, preset="smoke", seed=0, **overrides):
    request = plan_run("di_sindy", params, preset=preset, overrides=overrides, seed=seed, data_dir=data_root)
    return execute(request, run_root=run_root, data_dir=data_root, show_progress=False)


@pytest.mark.parametrize("pde", ["kdv", "burgers", "ks"])
def test_recovers_each_pde_on_clean_data(params, smoke_fields, tmp_path, pde):
    """Check 3: 5 trials at tau = 0.05: support exact 5/5 and max relative coefficient error < 2 %."""
    result = run(params, smoke_fields, tmp_path, pde=pde, noise=0.0, diff_method="spectral", tau=0.05)
    assert result.metrics["success_rate"] == 1.0
    assert result.metrics["coef_rel_err_max"] < 0.02
    rows = list(csv.DictReader(open(result.run_dir / "coefficients.csv")))
    for name, value in PDES[pde].rhs.items():
        found = [
            float(r["coefficient"])
            for r in rows
            if r["method"] == "di" and r["term"] == invariants.term_name({invariants.with_time(name): 1.0})
        ]
        assert len(found) == 5 and all(abs(f - value) < 0.02 * abs(value) for f in found)
    assert result.metrics["rollout_rel_err@1"] < 0.02


def test_a_wrong_target_or_a_stub_regression_fails(smoke_fields):
    """Negative controls of check 3: forgetting the u u_x part of the target (or a wrong boost coefficient), and a
    regression that returns its least-squares fit unthresholded, do not recover KdV."""
    data = FieldDataset(smoke_fields, "fields/kdv")
    derivs = jets(data.trajectory("train", 0), data.dt, data.length)
    truth = PDES["kdv"].rhs
    good = di_component.fit(Config(pde="kdv"), route_a(1.0, 4, 2), derivs)
    assert regression.success(good, truth)
    for c in (None, 2.0):  # no u u_x in the target / u_t + 0.5 u u_x
        library = invariants.Library(invariants.target_term(c), route_a(1.0, 4, 2).features, "A")
        assert not regression.success(di_component.fit(Config(pde="kdv"), library, derivs), truth)
    theta = np.stack([invariants.evaluate(f, derivs).ravel() for f in route_a(1.0, 4, 2).features], axis=1)
    y = invariants.evaluate(route_a(1.0, 4, 2).target, derivs).ravel()
    dense = invariants.raw_equation(route_a(1.0, 4, 2), np.linalg.lstsq(theta, y, rcond=None)[0])
    assert not regression.success(dense, truth)


def test_mkdv_placeholder_is_recovered_through_route_b(tmp_path):
    """The nKdV slot's guess (mKdV: translations + scaling, no boost) through Route B at degree 3."""
    setting = PDES["mkdv"].settings["smoke"]
    u = trajectories(PDES["mkdv"], setting, 1, 0)[0]
    x, t = grid(setting)
    cfg = Config(pde="mkdv", route="B", lib_degree=3, use_scaling=True)
    found = di_component.fit(cfg, di_component.build_library(cfg), jets(u, t[1] - t[0], setting.length))
    assert regression.success(found, PDES["mkdv"].rhs)
    assert regression.max_coefficient_error(found, PDES["mkdv"].rhs) < 0.05


# --- check 4: built-in symmetry --------------------------------------------------------------------------------


def test_every_di_model_admits_the_boost_and_raw_models_need_not():
    """Check 4: for any coefficients, the raw-variable equation of a DI model satisfies pr v(Delta) = 0 for the
    Galilean generator (sympy); a PDE-FIND model with u in it does not."""
    rng = np.random.default_rng(0)
    library = route_a(1.0, 4, 2)
    for _ in range(3):
        xi = rng.standard_normal(len(library.features)) * (rng.random(len(library.features)) < 0.5)
        assert invariants.galilean_residual(invariants.raw_equation(library, xi), 1.0) < 1e-12
    raw = invariants.raw_library()
    xi = np.zeros(len(raw.features))
    xi[raw.names.index("u*u_xx")] = 0.3
    assert invariants.galilean_residual(invariants.raw_equation(raw, xi), 1.0) > 0.1


def test_fitted_models_report_zero_galilean_residual(params, smoke_fields, tmp_path):
    result = run(params, smoke_fields, tmp_path, preset="test", pde="burgers", noise=0.05, diff_method="lowpass")
    assert result.metrics["galilean_residual_max"] == 0.0


# --- the regression ----------------------------------------------------------------------------------------------


def sparse_problem(seed=0, rows=400):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((rows, 8)) * np.array([1, 10, 0.1, 1, 1, 5, 1, 1])
    truth = np.array([0, 0.5, 0, -2, 0, 0.004, 0, 1.0])
    return theta, theta @ truth + 0.01 * rng.standard_normal(rows), truth


def test_stlsq_thresholds_in_original_units():
    """A term with a tiny coefficient on a large column is removed, whatever its normalised size (§8)."""
    theta, y, truth = sparse_problem()
    xi = regression.stlsq(theta, y, threshold=0.05)
    assert np.array_equal(xi != 0, np.array([0, 1, 0, 1, 0, 0, 0, 1], bool))
    assert np.allclose(xi[[1, 3, 7]], truth[[1, 3, 7]], atol=5e-3)
    assert not np.any(regression.stlsq(theta, y, threshold=5.0))


@pytest.mark.parametrize("unbias, alpha", [(True, 1e-5), (False, 1e-5), (False, 50.0)])
def test_stlsq_matches_pysindy(unbias, alpha):
    """Parity with pysindy 2.x's STLSQ(normalize_columns=False) on identical features, ridge and refit included."""
    pysindy = pytest.importorskip("pysindy")
    theta, y, _ = sparse_problem(1)
    own = regression.stlsq(theta, y, threshold=0.05, alpha=alpha, unbias=unbias)
    theirs = pysindy.STLSQ(threshold=0.05, alpha=alpha, max_iter=20, normalize_columns=False, unbias=unbias)
    theirs = theirs.fit(theta, y).coef_.reshape(-1)
    assert np.allclose(own, theirs, rtol=1e-8, atol=1e-12)


def test_derivatives_are_aligned_in_time():
    """u_t is the central difference at the same interior time slices as the x-derivatives (trim 2 at each end)."""
    length, n_x, dt = 2 * np.pi, 32, 0.01
    x = length * np.arange(n_x) / n_x
    t = dt * np.arange(20)
    u = np.sin(x[None] - 1.5 * t[:, None])
    d = jets(u, dt, length)
    assert d["u"].shape == (16, 32) and np.allclose(d["u"], u[2:-2])
    assert np.allclose(d["u_t"], -1.5 * np.cos(x[None] - 1.5 * t[2:-2, None]), atol=1e-3)
    assert np.allclose(d["u_xxx"], -np.cos(x[None] - 1.5 * t[2:-2, None]), atol=1e-10)


# --- the run: data path, seeds, the baseline ----------------------------------------------------------------------


def test_trials_read_train_and_rollouts_test(params, smoke_fields, tmp_path, monkeypatch):
    """Regression trials read the train split (one trajectory each); rollouts are scored on the held-out test split;
    DI-SINDy and PDE-FIND get the identical derivatives."""
    reads, fits, truths = [], [], []
    original_trajectory, original_fit, original_rollout = (
        FieldDataset.trajectory,
        di_component.fit,
        di_component.rollout_errors,
    )

    def spy_trajectory(self, split, index, noise=0.0, seed=0):
        reads.append((split, index))
        return original_trajectory(self, split, index, noise, seed)

    def spy_fit(cfg, library, derivs):
        fits.append((library.route, id(derivs)))
        return original_fit(cfg, library, derivs)

    def spy_rollout(cfg, equation, truth, data):
        truths.append(truth)
        return original_rollout(cfg, equation, truth, data)

    monkeypatch.setattr(FieldDataset, "trajectory", spy_trajectory)
    monkeypatch.setattr(di_component, "fit", spy_fit)
    monkeypatch.setattr(di_component, "rollout_errors", spy_rollout)
    run(params, smoke_fields, tmp_path, preset="test", pde="kdv", n_trials=3, noise=0.01)
    assert reads == [("train", 0), ("train", 1), ("train", 2)]
    assert [route for route, _ in fits] == ["A", "raw"] * 3
    assert all(fits[i][1] == fits[i + 1][1] for i in range(0, 6, 2))
    test_field = FieldDataset(smoke_fields, "fields/kdv").arrays["test"][0]
    assert len(truths) == 2 and all(np.array_equal(t, test_field) for t in truths)


def test_noise_draws_follow_the_seed(params, smoke_fields, tmp_path):
    first = run(params, smoke_fields, tmp_path / "a", preset="test", seed=0, pde="kdv", noise=0.02)
    again = run(params, smoke_fields, tmp_path / "b", preset="test", seed=0, pde="kdv", noise=0.02)
    other = run(params, smoke_fields, tmp_path / "c", preset="test", seed=1, pde="kdv", noise=0.02)
    assert first.metrics == again.metrics
    assert first.metrics["coef_rel_err"] != other.metrics["coef_rel_err"]


def test_bad_settings_are_one_line_errors(params, smoke_fields, tmp_path):
    with pytest.raises(ConfigError, match="route"):
        run(params, smoke_fields, tmp_path, projective=True)
    with pytest.raises(ConfigError, match="placeholder"):
        run(params, smoke_fields, tmp_path, dataset="fields/{name}")
    data = FieldDataset(smoke_fields, "fields/kdv")
    with pytest.raises(DataError, match="holds kdv fields"):
        di_component.check_dataset_pde(Config(pde="burgers", dataset="fields/kdv"), data)
    with pytest.raises(DataError, match="n_trials = 9"):
        di_component.check_dataset_pde(Config(pde="kdv", n_trials=9), data)


# --- the paper path ---------------------------------------------------------------------------------------------


def test_paper_path_discovers_kdv_at_the_paper_resolution(params, tmp_path, monkeypatch):
    """The paper preset (50 trials per cell on fields/kdv_paper: n = 128 on [-10, 10), 201 snapshots over T = 2,
    spectral derivatives, tau = 0.05) on fields the test prepares, shrunk only in the trial count."""
    from tests.paper_path import run_paper_path

    prepare(
        "fields/kdv_paper",
        {"source": "pde-fields", "pde": "kdv", "scale": "paper", "trajectories": 3, "test_trajectories": 1},
        tmp_path / "data",
    )
    shapes = []
    original = di_component.jets

    def spy_jets(u, *args, **kwargs):
        shapes.append(u.shape)
        return original(u, *args, **kwargs)

    monkeypatch.setattr(di_component, "jets", spy_jets)
    result = run_paper_path("di_sindy", params, {"n_trials": 2}, tmp_path / "data", tmp_path / "runs")
    assert shapes == [(201, 128)] * 2
    assert result.metrics["success_rate"] == 1.0 and result.metrics["pdefind/success_rate"] == 1.0
    assert result.metrics["coef_rel_err_max"] < 0.02 and result.metrics["library_size_di"] == 15
    assert (result.run_dir / "invariants.json").is_file() and (result.run_dir / "equations.json").is_file()
