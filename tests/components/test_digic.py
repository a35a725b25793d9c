"""digic.md §6 checks 1-4 on the spec's SCM, the mechanisms behind them (how the CPDAG is read, which edges
are kept, tier knowledge), and the paper path: CartPole-v1 demonstrations from the component's expert."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cluster.runner import execute, plan_run
from components.core.errors import ConfigError
from components.digic import discovery, scm

SEEDS = range(5)
NOISE_FLOOR = scm.ACTION_NOISE_VARIANCE  # Var(A | Pa(A)) = 0.25: the best any policy can do in any domain


def run(params, tmp_path, preset="smoke", seed=0, **overrides):
    request = plan_run("digic", params, preset=preset, overrides=overrides, seed=seed, data_dir=tmp_path)
    return execute(request, run_root=tmp_path / "runs", data_dir=tmp_path, show_progress=False)


@pytest.fixture(scope="module")
def linear_runs(tmp_path_factory):
    """The smoke preset with least-squares BC (spec §6 (i)) for seeds 0..4: metrics and selected features."""
    from tests.conftest import ROOT, load_params

    params, root = load_params(ROOT / "params.yaml"), tmp_path_factory.mktemp("digic")
    out = []
    for seed in SEEDS:
        result = run(params, root, seed=seed, policy="linear")
        out.append((result.metrics, json.loads((result.run_dir / "selected_features.json").read_text())))
    return out


# Check 1: causal-feature recovery, and the Markov-blanket stub that must not pass it.
def test_pc_recovers_exactly_the_parents_and_the_blanket_does_not(linear_runs):
    exact = [record["selected"] == ["P1", "P2", "P3"] and not record["undirected"] for _, record in linear_runs]
    assert sum(exact) >= 4, [record["selected"] for _, record in linear_runs]
    assert all(metrics["cd/exact"] == float(hit) for (metrics, _), hit in zip(linear_runs, exact))
    for seed in SEEDS:  # control: the blanket keeps the spurious cue, so the check can fail
        features, action = scm.domains(4000, 10, 1.0, -1.0, seed)["train"]
        blanket = discovery.run_markov_blanket(features, action, scm.FEATURES)
        assert {"Z1", "Z2", "W"} <= set(blanket.names(blanket.selected))


# Checks 2-4 with least squares: generalisation, no loss against the oracle, BC-MB as the negative control.
def test_digic_generalises_where_bc_all_and_bc_mb_do_not(linear_runs):
    rows = [metrics for metrics, _ in linear_runs]
    generalises = [m["bc/mse_shift_domain"] <= 0.5 * m["all/mse_shift_domain"] for m in rows]
    near_floor = [m["bc/mse_shift_domain"] <= 1.2 * NOISE_FLOOR for m in rows]
    assert sum(g and f for g, f in zip(generalises, near_floor)) >= 4, [m["bc/ratio_shift_vs_all"] for m in rows]
    assert sum(m["bc/mse_train_domain"] <= 1.1 * m["oracle/mse_train_domain"] for m in rows) >= 4  # check 3
    mb_passes = [m["mb/mse_shift_domain"] <= 0.5 * m["all/mse_shift_domain"] for m in rows]  # check 4
    assert sum(mb_passes) < 4, [m["mb/ratio_shift_vs_all"] for m in rows]
    assert all(m["all/mse_train_domain"] < m["bc/mse_train_domain"] for m in rows)  # BC-all exploits the cue


def test_smoke_mlp_generalises(params, tmp_path):
    """Check 2 with the smoke preset's MLP (2 x 64, Adam 3e-3, 400 full-batch steps), one seed."""
    metrics = run(params, tmp_path).metrics
    assert metrics["cd/exact"] == 1.0
    assert metrics["bc/mse_shift_domain"] <= 0.5 * metrics["all/mse_shift_domain"]
    assert metrics["bc/mse_shift_domain"] <= 1.2 * NOISE_FLOOR
    assert metrics["bc/mse_train_domain"] <= 1.1 * metrics["oracle/mse_train_domain"]
    assert metrics["mb/mse_shift_domain"] > 0.5 * metrics["all/mse_shift_domain"]


# Mechanisms: reading the CPDAG, the selection rule, tier knowledge.
def test_cpdag_edges_at_the_action_are_read_with_their_direction():
    # nodes 0..3 and the action 4: 0 -> A, A -> 1, 2 -- A, 3 not adjacent (causal-learn's encoding)
    graph = np.zeros((5, 5), dtype=int)
    graph[0, 4], graph[4, 0] = -1, 1
    graph[4, 1], graph[1, 4] = -1, 1
    graph[2, 4], graph[4, 2] = -1, -1
    assert discovery.edges_at_action(graph, 4) == ([0], [2], [1])
    assert discovery.select([0], [2], keep_undirected=True) == (0, 2)
    assert discovery.select([0], [2], keep_undirected=False) == (0,)


def test_tier_knowledge_orients_mutually_adjacent_parents():
    """X1 -> X2, both cause A, A -> Z: no v-structure at A, so without knowledge every edge at A stays
    undirected and the conservative rule keeps Z; forbidding A -> X (X measured first) orients X -> A and, by
    Meek's rule 1, A -> Z."""
    rng = np.random.default_rng(0)
    e = rng.standard_normal((3000, 4))
    x1 = e[:, 0]
    x2 = 0.8 * x1 + e[:, 1]
    action = 0.6 * x1 + 0.6 * x2 + 0.5 * e[:, 2]
    z = action + 0.6 * e[:, 3]
    features, names = np.column_stack([x1, x2, z]), ("X1", "X2", "Z")
    common = {"alpha": 0.01, "ci_test": "fisherz", "depth": -1, "keep_undirected": True}
    with_tiers = discovery.run_pc(features, action, names, before_action=("X1", "X2"), **common)
    assert with_tiers.names(with_tiers.selected) == ["X1", "X2"]
    assert with_tiers.names(with_tiers.children) == ["Z"]
    without = discovery.run_pc(features, action, names, **common)
    assert "Z" in without.names(without.selected)  # control: the knowledge is what removes the cue


def test_tables_are_a_function_of_the_seed_with_disjoint_streams():
    first, again, other = (scm.domains(200, 100, 1.0, -1.0, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(first[k][0], again[k][0]) for k in first)
    assert not np.allclose(first["train"][0], other["train"][0])
    train_rows = {tuple(row) for row in first["train"][0]}
    assert not train_rows & {tuple(row) for row in first["test_train_domain"][0]}  # held out, not reused
    # the shifted domain flips the cue: corr(Z1, A) changes sign, corr(P1, A) does not
    z1, p1 = scm.FEATURES.index("Z1"), scm.FEATURES.index("P1")
    for domain, sign in (("test_train_domain", 1), ("test_shift_domain", -1)):
        features, action = first[domain]
        assert sign * np.corrcoef(features[:, z1], action)[0, 1] > 0.5
        assert np.corrcoef(features[:, p1], action)[0, 1] > 0.3


def test_bad_config_is_one_clear_error(params, tmp_path):
    with pytest.raises(ConfigError, match="policy"):
        plan_run("digic", params, preset="paper", overrides={"policy": "linear"}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="alpha"):
        plan_run("digic", params, preset="smoke", overrides={"alpha": 1.5}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="n_train"):
        plan_run("digic", params, preset="smoke", overrides={"scm.n_trian": 10}, data_dir=tmp_path)


# The paper path: CartPole-v1 through Gymnasium, demonstrations of the component's LQR expert.
def test_paper_path_cartpole_keeps_the_state_and_drops_the_flipped_cue(params, tmp_path, monkeypatch):
    import components.digic.policy as policy
    from components.digic import control
    from tests.paper_path import record_inputs, run_paper_path

    widths = record_inputs(monkeypatch, policy, "build_policy")
    counts = {"cartpole.demo_episodes": 6, "cartpole.test_episodes": 2, "cartpole.eval_episodes": 2}
    counts |= {"hidden": 64, "steps": 300}
    result = run_paper_path("digic", params, counts, data_dir=tmp_path, run_root=tmp_path / "runs")
    metrics = result.metrics
    record = json.loads((result.run_dir / "selected_features.json").read_text())
    assert record["features"] == ["x", "x_dot", "theta", "theta_dot", "cue", "noise"]  # CartPole's 4-dim state
    assert record["selected"] and set(record["selected"]) <= set(control.STATE)
    assert "cue" in record["children"]
    assert {w[1] for w in widths} >= {len(record["selected"]), 6, 4}  # DIGIC's, BC-all's and the oracle's inputs
    assert metrics["expert/return_shift_domain"] >= 475  # the expert ignores the cue: balanced in both domains
    assert metrics["all/acc_train_domain"] > metrics["bc/acc_train_domain"]  # BC-all leans on the cue...
    assert metrics["all/return_shift_domain"] < 0.2 * metrics["expert/return_shift_domain"]  # ...and falls
    assert metrics["bc/return_shift_domain"] >= 0.6 * metrics["expert/return_shift_domain"]
    assert metrics["bc/return_shift_domain"] >= 5 * metrics["all/return_shift_domain"]
