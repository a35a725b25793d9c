"""logic_consistency's checks (logic_consistency.md §6, checks 1-5), the metric definitions on hand-made beliefs,
the language-model answerer on a tiny random Llama, and the paper path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cluster.runner import execute, plan_run
from components.logic_consistency.answerers import AlwaysTrue, FactLookup, NoisyConfidence, NoisyOracle, RuleReasoner
from components.logic_consistency.config import RuleConfig, TaxoConfig
from components.logic_consistency.metrics import consistency, depth_accuracy, flags, predicted_tau
from components.logic_consistency.repair import beliefs_from, repair
from components.logic_consistency.worlds import rule_world, taxo_world
from tests.tiny_llm import LETTERS, write_tiny_llm

RNG = np.random.default_rng


def score(world, answerer, seed=0):
    p = answerer.taxo(world, RNG(seed))
    return consistency(world, p > 0.5, p), p


def test_world_has_the_spec_counts():
    world = taxo_world(TaxoConfig(), 0)
    assert world.classes == 30 and world.entities == 72 and world.atoms_per_entity == 42
    assert len(world.generic_implications) == 27 + 60
    assert world.gold[: world.entities * 42].reshape(72, 42)[:, :30].sum(1).tolist() == [3] * 72  # leaf, middle, top


def test_check1_rule_reasoner_is_exact_and_a_fact_lookup_is_not():
    world = taxo_world(TaxoConfig(), 0)
    report, _ = score(world, RuleReasoner())
    assert report["app_imp"] == 576 and report["tau_imp"] == 0.0  # 72 entities x 8 applicable
    for key in ("acc", "cons_imp", "cons_neg", "cons_tr", "cons_sym", "cons_para", "cons_fact", "cons_glob"):
        assert report[key] == 1.0, key
    lookup, _ = score(world, FactLookup())
    assert lookup["cons_imp"] < 0.5 and lookup["acc_derived"] < 0.9 and lookup["cons_glob"] == 0.0
    assert lookup["cons_fact"] == 1.0 and lookup["n_fact"] == world.facts.sum()  # facts alone, apart from derived


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_check2_noisy_oracle_matches_the_predicted_violation_rate(eps):
    observed, predicted = [], []
    for seed in range(20):
        world = taxo_world(TaxoConfig(), seed)
        observed.append(score(world, NoisyOracle(eps), seed)[0]["tau_imp"])
        predicted.append(predicted_tau(world, eps))
    assert abs(np.mean(observed) - np.mean(predicted)) <= 0.02, (np.mean(observed), np.mean(predicted))
    assert abs(np.mean(predicted) - {0.05: 0.254, 0.1: 0.378, 0.2: 0.483}[eps]) < 0.03  # the spec's prediction


def test_check3_always_true_is_vacuously_implication_consistent_and_flagged():
    world = taxo_world(TaxoConfig(), 0)
    report, _ = score(world, AlwaysTrue())
    assert report["cons_imp"] == 1.0 and report["cons_neg"] == 0.0
    assert report["acc"] == pytest.approx(world.gold.mean())  # the base rate
    assert flags(report)["flag/degenerate"] == 1.0
    assert flags(score(world, RuleReasoner())[0])["flag/degenerate"] == 0.0


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_check4_repair_removes_every_violation_and_gains_accuracy(sigma):
    gains = []
    for seed in range(5):
        world = taxo_world(TaxoConfig(), seed)
        before, p = score(world, NoisyConfidence(sigma), seed)
        repaired, _ = repair(world, p)
        after = consistency(world, beliefs_from(repaired), p)
        assert after["tau_imp"] == 0.0 and after["cons_glob"] == 1.0 and after["cons_tr"] == 1.0
        assert after["cons_sym"] == 1.0 and before["tau_imp"] > 0.05
        gains.append(after["acc"] - before["acc"])
    assert np.mean(gains) >= (0.05 if sigma >= 2 else 0.0), gains


def test_repair_is_optimal_and_weighted_by_log_odds():
    world = taxo_world(TaxoConfig(entities_per_leaf=1), 0)
    p = NoisyConfidence(2.0).taxo(world, RNG(0))
    _, flips = repair(world, p, unit=True)
    plain = p[:, 0] > 0.5
    truth_flips = np.sum(plain != world.gold)
    assert 0 < flips <= truth_flips  # the gold assignment satisfies C, so the minimum is no larger
    # exact optimum of the log-odds-weighted problem, by brute force over every assignment of a tiny world
    world = taxo_world(TaxoConfig(top_classes=1, children=1, leaf_children=2, entities_per_leaf=1, properties=2), 0)
    n = len(world.atoms)
    assignments = (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1
    a, b, _ = world.implications.T
    i, j, k = world.triples.T
    left, right = world.symmetric.T
    ok = (
        ~(assignments[:, a] & ~assignments[:, b]).any(1)
        & ~(assignments[:, i] & assignments[:, j] & ~assignments[:, k]).any(1)
        & (assignments[:, left] == assignments[:, right]).all(1)
    )
    satisfying = assignments[ok]
    rng = RNG(1)
    for _ in range(20):
        p = np.repeat(rng.uniform(0.02, 0.98, (n, 1)), 3, axis=1)
        logodds = np.log(p[:, 0] / (1 - p[:, 0]))
        costs = (np.abs(logodds) * (satisfying != (p[:, 0] > 0.5))).sum(1)
        repaired, cost = repair(world, p)
        assert np.sum(np.abs(logodds)[repaired != (p[:, 0] > 0.5)]) == pytest.approx(min(costs), abs=1e-6)


def test_metric_definitions_on_hand_made_beliefs():
    world = taxo_world(TaxoConfig(top_classes=1, children=1, leaf_children=1, entities_per_leaf=1, properties=1), 0)
    names = {atom: i for i, atom in enumerate(world.atoms)}
    beliefs = np.stack([world.gold, ~world.gold, world.gold], axis=1)
    leaf, middle = ("isa", 0, 2), ("isa", 0, 1)
    beliefs[names[middle], 0] = False  # leaf believed, middle not: isa(leaf) -> isa(middle) violated
    p = beliefs.astype(float)
    report = consistency(world, beliefs, p)
    assert report["app_imp"] == 3  # applicable: leaf -> middle, leaf -> has(p), top -> has(p); middle is off
    assert report["cons_imp"] == pytest.approx(2 / 3) and report["cons_glob"] == 0.0
    assert report["cons_neg"] == pytest.approx(1 - 1 / len(world.atoms))  # middle and its negation both "no"
    assert report["delta_neg"] == pytest.approx(1 / len(world.atoms))
    assert report["cons_tr"] < 1.0 and beliefs[names[leaf], 0]
    nobody = consistency(world, np.zeros_like(beliefs), np.zeros_like(p))
    assert "cons_imp" not in nobody and nobody["app_imp"] == 0  # vacuous: N/A, not 1
    assert flags(nobody)["flag/vacuous_imp"] == 1.0


def test_check5_rule_world_depth_strata():
    world = rule_world(RuleConfig(queries_per_depth=60), 0)
    reasoner = depth_accuracy(world.queries, RuleReasoner().rule(world, RNG(0)))
    shortcut = depth_accuracy(world.queries, FactLookup().rule(world, RNG(0)))
    for depth in range(4):
        assert reasoner[f"acc_depth{depth}"] == 1.0 and reasoner[f"n_depth{depth}"] == 120
        assert shortcut[f"acc_depth{depth}"] == (1.0 if depth == 0 else 0.5)


def test_chain_depth_counts_rounds_from_the_stated_facts():
    from components.logic_consistency.worlds import Theory, chain

    theory = Theory(rules=[((0,), 1), ((1,), 2), ((0, 2), 3)], facts={(0, 0)}, entities=2)
    assert chain(theory) == {(0, 0): 0, (1, 0): 1, (2, 0): 2, (3, 0): 3}  # nothing about e1: closed world


def run(params, tmp_path, preset="test", **overrides):
    request = plan_run("logic_consistency", params, preset=preset, overrides=overrides, data_dir=tmp_path)
    return execute(request, run_root=tmp_path / "runs", data_dir=tmp_path, show_progress=False)


def test_component_reports_before_and_after_repair_with_audits(params, tmp_path):
    result = run(params, tmp_path)
    m = result.metrics
    assert m["repaired/tau_imp"] == 0.0 and m["tau_imp"] > 0 and m["repaired/acc"] > m["acc"]
    assert m["app_imp"] > 0 and 0 < m["repair_dist"] < 1
    lines = (result.run_dir / "violations.jsonl").read_text().splitlines()
    assert {json.loads(line)["replicate"] for line in lines} == {0, 1}
    rule = run(params, tmp_path / "r", world="rule", answerer="reasoner", **{"rule.queries_per_depth": 5}).metrics
    assert rule["acc"] == 1.0 and rule["n_depth3"] == 2 * 5 * 2  # 2 replicates, T and F


def tiny_llm(folder):
    return write_tiny_llm(folder, "0123456789 .,?:()-\n" + LETTERS, max_positions=512)


PAPER_COUNTS = {
    "replicates": 1,
    "taxo.top_classes": 2,
    "taxo.children": 2,
    "taxo.leaf_children": 1,
    "taxo.entities_per_leaf": 1,
    "taxo.properties": 4,
}


def test_paper_path_scores_a_local_causal_lm_and_repairs_it(params, tmp_path, monkeypatch):
    """The paper preset (a local LM answers every question three ways, option log-probs normalised, then the
    MaxSAT repair), shrunk only in counts; the LM is a tiny random Llama the test writes."""
    from components.core.answerer import CausalLMAnswerer
    from tests.paper_path import run_paper_path

    model = tiny_llm(tmp_path / "tiny")
    with_model = {**params, "logic_consistency": {**params["logic_consistency"], "llm": {"model": str(model)}}}
    asked = []
    original = CausalLMAnswerer.continuation_logprob

    def spy(self, prompt, continuation):
        asked.append((prompt, continuation))
        return original(self, prompt, continuation)

    monkeypatch.setattr(CausalLMAnswerer, "continuation_logprob", spy)
    result = run_paper_path("logic_consistency", with_model, PAPER_COUNTS, tmp_path, tmp_path / "runs")
    m = result.metrics
    assert m.get("repaired/tau_imp", 0.0) == 0.0  # absent when nothing is applicable (N/A, never 1)
    assert m["repaired/cons_glob"] == 1.0 and 0 < m["delta_neg"] < 1  # a random LM: soft, not 0/1 answers
    atoms = int(m["n_atoms"])
    assert len(asked) == atoms * 3 * 2 and {c for _, c in asked} == {" yes", " no"}
    assert any(p.startswith("Is it false that") for p, _ in asked)

    # the answerer's plumbing: a model that knows the gold answers is perfect; one that says yes is flagged
    beliefs = {}
    for line in (result.run_dir / "beliefs.jsonl").read_text().splitlines():
        record = json.loads(line)
        beliefs[tuple(record["atom"])] = record["gold"]
    from components.logic_consistency.worlds import question_text

    truth = {}
    for atom, gold in beliefs.items():
        for form, answer in enumerate((gold, not gold, gold)):
            truth[f"{question_text(atom, form)}\nAnswer (yes or no):"] = answer
    monkeypatch.setattr(
        CausalLMAnswerer, "continuation_logprob", lambda self, prompt, c: 0.0 if (c == " yes") == truth[prompt] else -5
    )
    perfect = run_paper_path("logic_consistency", with_model, PAPER_COUNTS, tmp_path, tmp_path / "runs2").metrics
    assert perfect["acc"] == 1.0 and perfect["cons_neg"] == 1.0 and perfect["cons_glob"] == 1.0
    monkeypatch.setattr(CausalLMAnswerer, "continuation_logprob", lambda self, prompt, c: 0.0 if c == " yes" else -5)
    yes = run_paper_path("logic_consistency", with_model, PAPER_COUNTS, tmp_path, tmp_path / "runs3").metrics
    assert yes["flag/degenerate"] == 1.0 and yes["cons_imp"] == 1.0


def test_llm_without_a_model_is_a_config_error(params, tmp_path):
    from components.core.errors import ConfigError

    with pytest.raises(ConfigError, match="llm.model"):
        plan_run("logic_consistency", params, preset="paper", data_dir=tmp_path)


def test_resume_after_preemption_gives_the_same_metrics(params, tmp_path, preempt_at):
    from cluster.runner import load_request
    from components.core.errors import Preempted

    request = plan_run("logic_consistency", params, preset="test", overrides={"replicates": 3}, data_dir=tmp_path)
    common = dict(data_dir=tmp_path, show_progress=False, checkpoint_every=1)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(1)], **common)
    (cut_dir,) = (tmp_path / "cut" / "logic_consistency").iterdir()
    assert execute(load_request(cut_dir), cut_dir, **common).metrics == whole.metrics
    assert whole.metrics != run(params, tmp_path / "c", sigma=3.0).metrics  # the noise law reaches the answers


def test_noise_differs_between_replicates(params, tmp_path, monkeypatch):
    import components.logic_consistency.component as module

    fixed = taxo_world(TaxoConfig(entities_per_leaf=1), 0)
    monkeypatch.setattr(module, "taxo_world", lambda cfg, seed: fixed)  # one world: only the answer noise varies
    result = run(params, tmp_path, replicates=2)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    per_replicate = [r["acc"] for r in records if r.get("step") in (0, 1) and "acc" in r]
    assert len(per_replicate) == 2 and per_replicate[0] != per_replicate[1]


def test_llm_greedy_extraction_reads_the_first_word_on_rule_world(params, tmp_path, monkeypatch):
    from components.core.answerer import CausalLMAnswerer

    model = tiny_llm(tmp_path / "tiny")
    sets = {"world": "rule", "answerer": "llm", "llm.model": str(model), "llm.extraction": "greedy"}
    sets.update({"rule.queries_per_depth": 2, "replicates": 1, "llm.batch_size": 4})
    random = run(params, tmp_path / "a", **sets).metrics
    assert random["n_queries"] == 16 and 0 <= random["acc"] <= 1  # the real generate() path, 4 depths x 2 x 2
    world = rule_world(RuleConfig(queries_per_depth=2), [0, 0])
    truth = {f"{world.prompt(q)}\nAnswer (yes or no):": bool(world.queries[q, 3]) for q in range(len(world.queries))}
    monkeypatch.setattr(
        CausalLMAnswerer, "answer", lambda self, ps, max_new_tokens: [" Yes." if truth[p] else " no" for p in ps]
    )
    assert run(params, tmp_path / "b", **sets).metrics["acc"] == 1.0
