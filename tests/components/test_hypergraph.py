"""hypergraph.md §6 checks 1-4 (the recovery rate, its sqrt(M) growth, exact recovery against the coupon
prediction, entity alignment with its symmetric control), the mechanisms behind them (set keys, the union
support of TV, the relabelled truth, signatures), resume of the grid, bad config, and the paper path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cluster.runner import execute, plan_run
from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted
from components.hypergraph import align, estimators, world
from components.hypergraph.component import component
from components.hypergraph.config import Config

SMOKE_M, SMOKE_N = (25, 100), (100, 400, 1600, 6400, 25600)


def run(params, tmp_path, preset="smoke", seed=0, **overrides):
    request = plan_run("hypergraph", params, preset=preset, overrides=overrides, seed=seed, data_dir=tmp_path)
    return execute(request, run_root=tmp_path / "runs", data_dir=tmp_path, show_progress=False)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from tests.conftest import ROOT, load_params

    root = tmp_path_factory.mktemp("hypergraph")
    return run(load_params(ROOT / "params.yaml"), root)


# Check 1: slope -1/2 and E d_TV / sqrt(M/N) near (2 pi)^-1/2 Gamma(3/2) = 0.354 at every (M, N).
def test_rate_has_slope_minus_half_and_the_predicted_constant(smoke):
    metrics = smoke.metrics
    for m in SMOKE_M:
        assert -0.56 <= metrics[f"rate/M{m}/loglog_slope"] <= -0.44, metrics[f"rate/M{m}/loglog_slope"]
        for n in SMOKE_N:
            assert 0.28 <= metrics[f"rate/M{m}/N{n}/ratio"] <= 0.43, (m, n, metrics[f"rate/M{m}/N{n}/ratio"])
            tv, theory = metrics[f"rate/M{m}/N{n}/tv"], metrics[f"rate/M{m}/N{n}/tv_theory"]
            assert abs(tv - theory) <= 0.15 * theory, (m, n, tv, theory)  # §3.4's formula for this H0's weights
    assert 0.33 <= metrics["tv_over_sqrt_M_over_N"] <= 0.38


# Check 2: four-fold M at fixed N doubles E d_TV (sqrt(M) growth), within 15%.
def test_error_grows_like_sqrt_m(smoke):
    for n in SMOKE_N:
        growth = smoke.metrics[f"rate/M100/N{n}/tv"] / smoke.metrics[f"rate/M25/N{n}/tv"]
        assert 2 * 0.85 <= growth <= 2 * 1.15, (n, growth)


# Check 3: exact recovery is non-decreasing in N and matches prod_e (1 - (1 - w_e)^N) within 0.08.
def test_exact_recovery_follows_the_coupon_prediction(smoke):
    metrics = smoke.metrics
    for m in SMOKE_M:
        freq = [metrics[f"rate/M{m}/N{n}/exact_freq"] for n in SMOKE_N]
        assert all(b >= a for a, b in zip(freq, freq[1:])), (m, freq)
        for n, value in zip(SMOKE_N, freq):
            assert abs(value - metrics[f"rate/M{m}/N{n}/exact_predicted"]) <= 0.08, (m, n, value)
    assert metrics["rate/M25/N25600/exact_freq"] >= 0.9 and metrics["rate/M100/N100/exact_freq"] == 0.0
    for m in SMOKE_M:  # the corpus-level indicator (20 corpora) agrees with the cheap draws at the largest N
        assert abs(metrics[f"rate/M{m}/N25600/exact"] - metrics[f"rate/M{m}/N25600/exact_predicted"]) <= 0.2


# Check 4: alignment becomes exact with data; the symmetric control stays non-identifiable.
def test_alignment_rises_to_one_and_the_symmetric_control_does_not(smoke):
    metrics = smoke.metrics
    assert metrics["align/N30000/acc"] >= 0.98
    assert metrics["align/N30000/acc"] >= metrics["align/N300/acc"] + 0.4
    assert metrics["align/control/acc"] <= 0.3
    accuracy = json.loads((smoke.run_dir / "align_acc_vs_N.json").read_text())["acc"]
    assert accuracy[-1] == 1.0 and accuracy[0] < 0.6


def test_curves_and_hypergraphs_are_written(smoke):
    for name in ("rate_curves.png", "exact_recovery.png", "alignment.png", "rate_curves.csv"):
        assert (smoke.run_dir / name).stat().st_size > 0
    truth = json.loads((smoke.run_dir / "hypergraph.json").read_text())
    assert truth["nodes"] == 40 and len(truth["hyperedges"]) == 100 and math.isclose(sum(truth["weights"]), 1)
    recovered = json.loads((smoke.run_dir / "recovered_hypergraph.json").read_text())
    phi = np.array(truth["phi"])
    relabelled = {tuple(sorted(phi[e].tolist())) for e in truth["hyperedges"]}
    assert {tuple(e) for e in recovered["hyperedges"]} <= relabelled  # counts never invent a hyperedge


# Mechanisms: what a wrong implementation gets wrong.
def test_set_keys_ignore_order_and_round_trip():
    rows = np.array([[3, 1, 2], [2, 3, 1], [1, 2, world.PAD], [2, 1, world.PAD]])
    keys = estimators.set_keys(rows, 5)
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]
    members = estimators.key_members(keys, 5, 3)
    assert members.tolist() == [[1, 2, 3], [1, 2, 3], [1, 2, world.PAD], [1, 2, world.PAD]]


def test_corpus_emits_members_through_phi_in_uniform_order():
    rng = np.random.default_rng(0)
    hypergraph = world.random_hypergraph(10, 5, [2, 3], "dirichlet", 1.0, 1.0, rng)
    assert len({tuple(row) for row in hypergraph.members.tolist()}) == 5 and math.isclose(hypergraph.weights.sum(), 1)
    phi = world.perception(10, rng)
    corpus = world.sample_corpus(hypergraph, phi, 20000, rng)
    truth = estimators.relabelled_truth(hypergraph, phi)
    assert set(estimators.set_keys(corpus, 10)) <= set(truth.keys)
    triples = corpus[corpus[:, 2] != world.PAD]  # pads only at the end; each position equally often the minimum
    assert np.all(corpus[:, :2] != world.PAD)
    first_is_min = np.mean(triples[:, 0] == triples.min(axis=1))
    assert abs(first_is_min - 1 / 3) < 0.03
    wrong = estimators.relabelled_truth(hypergraph, np.arange(10))  # forgetting phi (§8)
    recovered = estimators.tabular(corpus, 10)
    assert estimators.errors(recovered, truth, 0.5)["tv"] < 0.02
    assert estimators.errors(recovered, wrong, 0.5)["tv"] > 0.5


def test_tv_counts_false_positive_mass_and_f1_uses_the_threshold():
    truth = estimators.Recovered(np.array([1, 2]), np.array([0.5, 0.5]))
    estimate = estimators.Recovered(np.array([1, 3]), np.array([0.5, 0.5]))
    scores = estimators.errors(estimate, truth, 0.5)
    assert scores["tv"] == pytest.approx(0.5) and scores["exact"] == 0.0 and scores["f1"] == pytest.approx(0.5)
    small = estimators.Recovered(np.array([1, 2, 3]), np.array([0.6, 0.3, 0.1]))  # 0.1 < tau = 0.25: not an edge
    assert estimators.errors(small, truth, 0.5)["f1"] == pytest.approx(1.0)
    assert estimators.errors(small, truth, 0.5)["exact"] == 0.0  # exact is on the support itself
    assert estimators.errors(truth, truth, 0.5) == {"tv": 0.0, "l2": 0.0, "max_err": 0.0, "exact": 1.0, "f1": 1.0}


def test_theory_predictions():
    weights = np.full(4, 0.25)
    assert estimators.predicted_exact(weights, 10) == pytest.approx((1 - 0.75**10) ** 4)
    assert estimators.predicted_tv(weights, 8) == pytest.approx(4 * math.sqrt(0.25 * 0.75) / math.sqrt(16 * math.pi))
    assert estimators.loglog_slope([1, 4, 16], [1.0, 0.5, 0.25]) == pytest.approx(-0.5)


def test_population_alignment_is_exact_and_signatures_are_degree_then_top_weights():
    hypergraph = world.cycle(4)  # edges {0,1} {1,2} {2,3} {0,3}, weight 1/4 each
    recovered = estimators.relabelled_truth(hypergraph, np.arange(4))
    assert align.signatures(recovered, 4, 2, 3).tolist() == [[0.5, 0.25, 0.25, 0.0]] * 4
    rng = np.random.default_rng(3)
    hypergraph = world.random_hypergraph(20, 60, [3], "dirichlet", 1.0, 1.0, rng)
    phi1, phi2 = world.perception(20, rng), world.perception(20, rng)
    first, second = (estimators.relabelled_truth(hypergraph, phi) for phi in (phi1, phi2))
    match, cost = align.hungarian(align.signatures(first, 20, 3, 4), align.signatures(second, 20, 3, 4))
    assert align.accuracy(match, phi2[np.argsort(phi1)]) == 1.0  # identifiable at the population level
    assert align.overlap(first, second, match, 20, 3) == pytest.approx(1.0)
    scrambled = match.copy()
    scrambled[[0, 1]] = scrambled[[1, 0]]
    refined = align.refine(first, second, scrambled, cost, 20, 3, neighbours=19, passes=2)
    assert align.overlap(first, second, refined, 20, 3) == pytest.approx(1.0) and np.array_equal(refined, match)


# Check 5 (Config C): a learned masked model, read out by the chain rule, improves with data and nears the counts.
def test_masked_model_read_out_improves_with_data_and_nears_the_counts(params, tmp_path):
    overrides = {"mm.sample_sizes": [500, 5000], "mm.repetitions": 2, "mm.steps": 1500}
    metrics = run(params, tmp_path, preset="test", **overrides).metrics
    assert metrics["mm/tv_ratio_more_data"] <= 0.6, metrics["mm/tv_ratio_more_data"]
    assert metrics["mm/tv_over_tabular"] <= 1.5, metrics["mm/tv_over_tabular"]
    assert metrics["mm/N5000/mass"] >= 0.99  # little mass on sequences with a repeated token


def test_masks_include_the_all_masked_case_and_read_out_sums_orders():
    import torch

    from components.hypergraph import mm

    masks = mm.random_masks(4000, 3, torch.Generator().manual_seed(0))
    per_row = masks.sum(dim=1)
    assert per_row.min() == 1 and per_row.max() == 3  # the all-masked marginal is trained (§8)
    assert abs((per_row == 3).float().mean().item() - 1 / 3) < 0.03
    model = mm.build_model(5, 2, 4, 8)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()  # uniform conditionals: every ordered pair has probability 1/25
    recovered = mm.read_out(model, 5, 2)
    assert len(recovered.keys) == 10 and np.allclose(recovered.weights, 2 / 25)  # two orders per set


def test_refinement_keeps_alignment_exact(params, tmp_path):
    metrics = run(params, tmp_path, preset="test", **{"alignment.refine": True}).metrics
    assert metrics["align/N3000/acc"] >= 0.9


def test_grid_resumes_from_its_finished_cells(params, tmp_path):
    cfg = Config(**{**component.presets["test"]})
    stops = iter([False, True])
    ctx = RunContext(run_dir=tmp_path / "a", data_dir=tmp_path, seed=1, should_stop=lambda: next(stops, False))
    ctx.run_dir.mkdir()
    with pytest.raises(Preempted):
        component.run(cfg, ctx)
    saved = json.loads((ctx.run_dir / "hypergraph_cells.json").read_text())["cells"]
    assert len(saved) == 2
    calls = []
    import components.hypergraph.component as module

    original = module.compute
    module_compute = lambda *args: calls.append(args[1]) or original(*args)  # noqa: E731
    try:
        module.compute = module_compute
        resumed = component.run(cfg, RunContext(run_dir=ctx.run_dir, data_dir=tmp_path, seed=1))
    finally:
        module.compute = original
    assert len(calls) == len(module.cells(cfg)) - 2  # the finished cells are not recomputed
    fresh_dir = tmp_path / "b"
    fresh_dir.mkdir()
    assert resumed == component.run(cfg, RunContext(run_dir=fresh_dir, data_dir=tmp_path, seed=1))
    calls.clear()
    try:  # another seed in the same folder recomputes every cell: finished cells belong to one config and seed
        module.compute = module_compute
        component.run(cfg, RunContext(run_dir=ctx.run_dir, data_dir=tmp_path, seed=2))
    finally:
        module.compute = original
    assert len(calls) == len(module.cells(cfg))


def test_bad_config_is_one_clear_error(params, tmp_path):
    with pytest.raises(ConfigError, match="hyperedge_counts"):
        plan_run("hypergraph", params, preset="smoke", overrides={"hyperedge_counts": [20000]}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="edge_sizes"):
        plan_run("hypergraph", params, preset="smoke", overrides={"edge_sizes": [1]}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="sample_szes"):
        plan_run("hypergraph", params, preset="smoke", overrides={"sample_szes": [10]}, data_dir=tmp_path)


# The paper path: the §7 grid's generator and estimator, shrunk only in counts (entities, M, N, repetitions).
def test_paper_path_recovers_at_the_minimax_rate(params, tmp_path, monkeypatch):
    from tests.paper_path import run_paper_path

    shapes = []
    original = world.sample_corpus

    def recording(hypergraph, phi, samples, rng):
        corpus = original(hypergraph, phi, samples, rng)
        shapes.append(corpus.shape)
        return corpus

    monkeypatch.setattr(world, "sample_corpus", recording)
    counts = {"n_entities": 200, "hyperedge_counts": [100, 400], "sample_sizes": [1000, 10000, 100000]}
    counts |= {"repetitions": 4, "exact_draws": 100, "alignment.repetitions": 3}
    counts |= {"mm.sample_sizes": [500], "mm.repetitions": 1, "mm.steps": 300}
    result = run_paper_path("hypergraph", params, counts, data_dir=tmp_path, run_root=tmp_path / "runs")
    metrics = result.metrics
    assert {shape[1] for shape in shapes} == {3, 2}  # k = 3 rows (the cycle control's and Config C's pairs)
    assert (1000, 3) in shapes and (100000, 3) in shapes
    for m in (100, 400):
        assert -0.56 <= metrics[f"rate/M{m}/loglog_slope"] <= -0.44
    assert 0.28 <= metrics["rate/ratio_min"] and metrics["rate/ratio_max"] <= 0.43
    assert metrics["align_acc"] == 1.0 and metrics["align/control/acc"] <= 0.3
    assert (result.run_dir / "rate_curves.png").is_file()
    assert metrics["mm/N500/tv"] < 0.5 and metrics["mm/N500/mass"] > 0.9  # the learned estimator ran on k = 2 rows
