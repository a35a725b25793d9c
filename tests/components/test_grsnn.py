"""grsnn.md §6 checks A-C (delays are shortest paths, the delay gradient, delay beats the no-delay ablation on
UMLS), the neuron, boundary current, readout, loss and negatives of §3, filtered ranking against a brute-force
reference, the splits a run reads, and the paper path on FB15k-237-layout TSV files."""

from __future__ import annotations

import heapq
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cluster.runner import execute, load_request, plan_run
from components.core.errors import Preempted
from components.core.graphs import KGTriples
from components.grsnn import component as grsnn_component
from components.grsnn import model as grsnn_model
from components.grsnn.config import Config
from components.grsnn.delay import DelayPlan, DelayTrace, delayed_message, kappa, kappa_derivative, latest_message
from components.grsnn.model import Dynamics, Graph, build_model, propagate, readout_kernel
from components.grsnn.ranking import (
    KnownAnswers,
    filtered_ranks,
    rank_metrics,
    remove_easy_edges,
    self_adversarial_loss,
    training_candidates,
)
from pipelines.datasets import prepare
from pipelines.params import load_params

ROOT = Path(__file__).resolve().parents[2]


def first_spikes(spikes: torch.Tensor) -> torch.Tensor:
    """[T, B, N, D] -> the first step each neuron spikes ([B, N, D]; T where it never does)."""
    steps = spikes.shape[0]
    index = torch.arange(steps).view(-1, 1, 1, 1).expand_as(spikes)
    return torch.where(spikes > 0, index, steps).min(dim=0).values


def dijkstra(num_nodes: int, edges: list[tuple[int, int, int]], lengths: dict[int, int], source: int) -> list[float]:
    distance = [math.inf] * num_nodes
    distance[source] = 0
    queue = [(0, source)]
    while queue:
        d, u = heapq.heappop(queue)
        if d > distance[u]:
            continue
        for a, r, b in edges:
            if a == u and d + 1 + lengths[r] < distance[b]:
                distance[b] = d + 1 + lengths[r]
                heapq.heappush(queue, (distance[b], b))
    return distance


def strong_synapse(channels: int, weight: float = 100.0) -> torch.nn.Linear:
    synapse = torch.nn.Linear(channels, channels)
    with torch.no_grad():
        synapse.weight.copy_(weight * torch.eye(channels))
        synapse.bias.zero_()
    return synapse


# Check A: with strong synapses, first-spike times are shortest paths with edge length 1 + d_{r,j}.
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_check_a_first_spike_times_are_delayed_shortest_paths(seed):
    rng = random.Random(seed)
    nodes, relations, channels, steps, threshold = 30, 4, 3, 12, 2.0
    edges = [(rng.randrange(nodes), rng.randrange(relations), rng.randrange(nodes)) for _ in range(60)]
    delays = torch.tensor([[[rng.randrange(5) for _ in range(channels)] for _ in range(relations)]], dtype=torch.float)
    graph = Graph(*(torch.tensor(column) for column in (np.array(edges)[:, 0], np.array(edges)[:, 2])),
                  rel=torch.tensor(np.array(edges)[:, 1]), num_nodes=nodes, num_relations=relations)  # fmt: skip
    source = edges[0][0]
    boundary = torch.zeros(1, nodes, channels)
    boundary[0, source] = threshold  # boundary_query off: the source gets V_th
    dynamics = Dynamics(steps, tau=4.0, v_threshold=threshold, linear_scale=1.0, surrogate_alpha=4.0)
    spikes = propagate(boundary, delays, graph, strong_synapse(channels), dynamics).spikes
    first = first_spikes(spikes)[0]
    reached = 0
    for j in range(channels):
        lengths = {r: int(delays[0, r, j]) for r in range(relations)}
        distance = dijkstra(nodes, edges, lengths, source)
        for v in range(nodes):
            expected = distance[v] if distance[v] < steps else steps  # at or beyond T: never spikes
            assert first[v, j].item() == expected, (v, j, distance[v])
            reached += 0 < distance[v] < steps
    assert reached >= 10  # the graph is connected enough for the check to mean something


def test_zero_delay_still_costs_one_step_and_equals_the_no_delay_message():
    torch.manual_seed(0)
    history = [(torch.rand(2, 5, 3) > 0.5).float() for _ in range(4)]
    src, dst, rel = torch.tensor([0, 1, 2, 4]), torch.tensor([1, 2, 3, 0]), torch.tensor([0, 1, 0, 1])
    delays = torch.zeros(2, 2, 3)
    plan = DelayPlan(delays, src, dst, rel, 5)
    torch.testing.assert_close(delayed_message(delays, history, plan), latest_message(history, src, dst))


# Check B: the custom delay gradient is -sum dL/dm kappa'(lag); messages reaching before step 0 are zero.
def test_check_b_delay_gradient_is_the_kernel_derivative():
    tau, nodes, channels, length = 4.0, 4, 2, 7
    spike_time, u = 1, 0
    history = [torch.zeros(1, nodes, channels, dtype=torch.float64) for _ in range(length)]
    for frame in history:
        frame.requires_grad_(True)
    with torch.no_grad():
        history[spike_time][0, u] = 1.0
    # two edges of relation 0 from u (to nodes 1 and 2), one of relation 1 (to node 3)
    src, dst, rel = torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1])
    delays = torch.tensor([[[1.2, 3.4], [6.6, 2.0]]], dtype=torch.float64, requires_grad=True)
    trace = DelayTrace(tau)
    traces = [trace.update(frame) for frame in history]
    plan = DelayPlan(delays, src, dst, rel, nodes)
    message = delayed_message(delays, history, plan, traces)
    weights = torch.randn(1, nodes, channels, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (message * weights).sum().backward()
    expected = torch.zeros(1, 2, channels, dtype=torch.float64)
    for e in range(3):
        for j in range(channels):
            read = length - 1 - round(delays[0, rel[e], j].item())
            if read >= spike_time:  # a spike at or before the read step leaves a trace
                expected[0, rel[e], j] += -weights[0, dst[e], j] * kappa_derivative(read - spike_time, tau)
    torch.testing.assert_close(delays.grad, expected, atol=1e-6, rtol=0)
    # the delivered spikes: relation 0 channel 1 reads step 6 - 3 = 3, relation 1 channel 0 (round 6.6 = 7 >= 7)
    # reaches before step 0 and delivers nothing
    assert message[0, 1, 0] == 0 and message[0, 3, 0] == 0
    assert delays.grad[0, 1, 0] == 0  # and has no gradient
    assert expected.abs().sum() > 0


def test_delay_trace_is_the_kernel_derivative_sum():
    tau, steps = 4.0, 9
    spikes = (torch.rand(steps, 3, generator=torch.Generator().manual_seed(1)) > 0.6).double()
    trace = DelayTrace(tau)
    for k in range(steps):
        got = trace.update(spikes[k])
        direct = -sum(spikes[k2] * kappa_derivative(k - k2, tau) for k2 in range(k + 1))
        torch.testing.assert_close(got, direct)
    # kappa' is the discrete derivative of kappa, kappa(i + 1) - kappa(i) ~ kappa'(i) in sign
    assert kappa_derivative(0, tau) > 0 and kappa_derivative(5, tau) < 0 and kappa(0, tau) == math.e / tau


# The neuron: boundary current at every step, hard reset to 0, threshold V_th, no state between calls.
def test_boundary_current_enters_every_step_and_the_reset_is_hard():
    nodes, channels, steps, threshold, tau = 3, 2, 10, 2.0, 4.0
    synapse = strong_synapse(channels, 0.0)  # no synaptic drive: the source integrates its own current
    # per channel, below V_th: it takes several steps to fire; at 1.9 a subtractive reset would keep the 1.4 left
    # over after the first spike and fire at every step from then on, the hard reset every other step
    current = torch.tensor([0.9, 1.9])
    boundary = torch.zeros(1, nodes, channels)
    boundary[0, 0] = current
    graph = Graph(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), nodes, 1)
    dynamics = Dynamics(steps, tau, threshold, 1.0, 4.0)
    spikes = propagate(boundary, torch.zeros(1, 1, channels), graph, synapse, dynamics).spikes
    decay = math.exp(-1 / tau)
    for j in range(channels):
        u, expected = 0.0, []
        for _ in range(steps):
            u = decay * u + current[j].item()
            fired = u >= threshold
            expected.append(float(fired))
            u = 0.0 if fired else u
        assert spikes[:, 0, 0, j].tolist() == expected
        assert 1 < sum(expected) < steps  # fires periodically, not every step and not never
    assert spikes[:, 0, 1:].sum() == 0  # zero weights and bias: nothing else fires


def test_query_current_is_half_threshold_times_embedding_plus_half_threshold():
    cfg = Config(hidden_dim=4, input_dim=4, time_steps=3)
    model = build_model(3, cfg)
    embedding = model.query(torch.tensor([2, 5]))
    boundary = model.boundary(torch.tensor([1, 4]), embedding, 6)
    torch.testing.assert_close(boundary[0, 1], cfg.v_threshold / 2 * embedding[0] + cfg.v_threshold / 2)
    torch.testing.assert_close(boundary[1, 4], cfg.v_threshold / 2 * embedding[1] + cfg.v_threshold / 2)
    assert boundary[0, [0, 2, 3, 4, 5]].abs().sum() == 0 and boundary[1, [0, 1, 2, 3, 5]].abs().sum() == 0


def test_delays_depend_on_the_query_relation_and_stay_in_bounds():
    cfg = Config(hidden_dim=8, input_dim=8)
    model = build_model(5, cfg)
    delays = model.delays(model.query(torch.arange(10)))
    assert delays.shape == (10, 10, 8)
    assert (delays >= 0).all() and (delays <= cfg.delay_bound).all()
    assert (delays[0] - delays[1]).abs().max() > 0.05  # the same edge relation, two queries: two delays


def test_inverse_edges_get_their_own_relations():
    graph = Graph.from_triples(torch.tensor([[0, 1, 2], [3, 0, 1]]), num_nodes=4, num_relations=2)
    edges = set(zip(graph.src.tolist(), graph.rel.tolist(), graph.dst.tolist(), strict=True))
    assert edges == {(0, 1, 2), (3, 0, 1), (2, 3, 0), (1, 2, 3)} and graph.num_relations == 4


def test_one_query_scores_every_node_and_no_state_crosses_queries():
    torch.manual_seed(0)
    cfg = Config(hidden_dim=8, input_dim=8, time_steps=6, linear_scale=1.0)
    model = build_model(3, cfg).eval()
    facts = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 2, 3], [3, 0, 4], [4, 1, 0], [1, 2, 4]])
    graph = Graph.from_triples(facts, 5, 3)
    with torch.no_grad():
        both, _ = model(graph, torch.tensor([0, 2]), torch.tensor([1, 4]))
        alone, _ = model(graph, torch.tensor([2]), torch.tensor([4]))
        again, _ = model(graph, torch.tensor([2]), torch.tensor([4]))
    assert both.shape == (2, 5)
    torch.testing.assert_close(both[1:], alone)  # a query's scores do not depend on its batch neighbours
    torch.testing.assert_close(alone, again)  # nor on an earlier call


def test_readout_kernel_weights_early_spikes_more():
    kernel = readout_kernel(10, 0.95)
    assert abs(kernel.sum().item() - 1) < 1e-6 and (kernel[1:] < kernel[:-1]).all()
    torch.testing.assert_close(kernel[3] / kernel[0], torch.tensor(0.95**3))


def test_self_adversarial_loss_is_the_weighted_bce():
    logits = torch.tensor([[1.0, 0.5, -2.0, 3.0], [-1.0, 0.0, 0.2, -0.4]], requires_grad=True)
    softplus = torch.nn.functional.softplus
    for temperature in (0.5, 1.0, 0.0):
        negative = logits.detach()[:, 1:]
        w = torch.softmax(negative / temperature, 1) if temperature else torch.full_like(negative, 1 / 3)
        expected = (0.5 * (softplus(-logits[:, 0]) + (w * softplus(logits[:, 1:])).sum(1))).mean()
        got = self_adversarial_loss(logits, temperature)
        torch.testing.assert_close(got, expected)
    # the weights carry no gradient: d/dn_j is w_j sigmoid(n_j) / 2 / B
    logits.grad = None
    self_adversarial_loss(logits, 0.5).backward()
    w = torch.softmax(logits.detach()[:, 1:] / 0.5, 1)
    torch.testing.assert_close(logits.grad[:, 1:], w * torch.sigmoid(logits.detach()[:, 1:]) / 2 / 2)


def test_easy_edges_are_removed_before_inverses():
    facts = torch.tensor([[0, 0, 1], [1, 2, 0], [0, 1, 1], [2, 0, 3], [0, 0, 2]])
    batch = torch.tensor([[0, 0, 1]])
    one_hop = remove_easy_edges(facts, batch, 4, one_hop=True)  # every 0-1 edge, both directions, any relation
    assert one_hop.tolist() == [[2, 0, 3], [0, 0, 2]]
    exact = remove_easy_edges(facts, batch, 4, one_hop=False)
    assert exact.tolist() == [[1, 2, 0], [0, 1, 1], [2, 0, 3], [0, 0, 2]]


def test_negatives_are_strict_and_half_the_batch_corrupts_heads():
    torch.manual_seed(0)
    facts = torch.stack([torch.randint(0, 12, (80,)), torch.randint(0, 3, (80,)), torch.randint(0, 12, (80,))], 1)
    known = KnownAnswers(facts, 12, 3)
    batch = facts[:6]
    sources, queries, candidates = training_candidates(batch, known, 3, 64, torch.Generator().manual_seed(0))
    h, r, t = batch.unbind(1)
    assert torch.equal(sources, torch.cat([h[:3], t[3:]])) and torch.equal(queries, torch.cat([r[:3], r[3:] + 3]))
    assert torch.equal(candidates[:, 0], torch.cat([t[:3], h[3:]]))
    true = {tuple(x) for x in facts.tolist()}
    for b in range(6):
        for c in candidates[b, 1:].tolist():
            triple = (h[b].item(), r[b].item(), c) if b < 3 else (c, r[b].item(), t[b].item())
            assert triple not in true
    assert len(set(candidates[:, 1:].flatten().tolist())) > 6  # drawn, not one fixed entity


def brute_force_ranks(scores: np.ndarray, queries: list[tuple[int, int, int]], true: set) -> list[int]:
    """The filtered protocol, written out: rank = 1 + candidates scoring >= the answer, the answer and every
    other known-true answer of the query excluded."""
    ranks = []
    for b, (s, q, a) in enumerate(queries):
        rank = 1
        for c in range(scores.shape[1]):
            if c != a and (s, q, c) not in true and scores[b, c] >= scores[b, a]:
                rank += 1
        ranks.append(rank)
    return ranks


def test_filtered_ranks_agree_with_a_brute_force_reference_with_ties():
    rng = np.random.default_rng(0)
    entities, relations = 15, 3
    triples = rng.integers(0, [entities, relations, entities], size=(60, 3))
    known = KnownAnswers(torch.from_numpy(triples), entities, relations)
    true = {(h, r, t) for h, r, t in triples.tolist()} | {(t, r + relations, h) for h, r, t in triples.tolist()}
    queries = [(h, r, t) for h, r, t in triples[:20].tolist()] + [(t, r + relations, h) for h, r, t in triples[:20]]
    scores = rng.integers(0, 4, size=(len(queries), entities)).astype(np.float32)  # many ties
    sources, rels, answers = (torch.tensor(column) for column in zip(*queries, strict=True))
    ours = filtered_ranks(torch.from_numpy(scores), answers, known.mask(sources, rels))
    reference = brute_force_ranks(scores, queries, true)
    assert ours.tolist() == reference
    metrics = rank_metrics(ours, "x")
    assert metrics["x/mrr"] == pytest.approx(np.mean([1 / r for r in reference]), abs=1e-12)
    assert metrics["x/hits@3"] == pytest.approx(np.mean([r <= 3 for r in reference]), abs=1e-12)
    assert metrics["x/mr"] == pytest.approx(np.mean(reference), abs=1e-12)


def test_evaluation_ranks_both_directions_filtered_by_every_split(data_root):
    kg = KGTriples(data_root, "graphs/nations")
    splits = {k: torch.from_numpy(v) for k, v in kg.triples.items()}
    cfg = Config(dataset="graphs/nations", hidden_dim=8, input_dim=8, time_steps=5, eval_batch_size=7)
    torch.manual_seed(0)
    model = build_model(kg.num_relations, cfg)
    graph = Graph.from_triples(splits["train"], kg.num_entities, kg.num_relations)
    known = KnownAnswers(torch.cat(list(splits.values())), kg.num_entities, kg.num_relations)
    test = splits["test"][:20]
    metrics = grsnn_component.evaluate(model, graph, test, known, cfg, "test", "cpu")
    all_triples = torch.cat(list(splits.values())).tolist()
    true = {(h, r, t) for h, r, t in all_triples} | {(t, r + kg.num_relations, h) for h, r, t in all_triples}
    queries = [(h, r, t) for h, r, t in test.tolist()] + [(t, r + kg.num_relations, h) for h, r, t in test.tolist()]
    with torch.no_grad():  # in the same chunks of 7 queries: exact ties stay exact
        scores = torch.cat(
            [
                model(graph, torch.tensor([q[0] for q in chunk]), torch.tensor([q[1] for q in chunk]))[0]
                for chunk in (queries[i : i + 7] for i in range(0, len(queries), 7))
            ]
        )
    reference = brute_force_ranks(scores.numpy(), queries, true)
    assert metrics["test/mrr"] == pytest.approx(np.mean([1 / r for r in reference]), abs=1e-9)
    assert metrics["test/mrr_head"] == pytest.approx(np.mean([1 / r for r in reference[20:]]), abs=1e-9)
    assert metrics["test/hits@10"] == pytest.approx(np.mean([r <= 10 for r in reference]), abs=1e-9)


@pytest.fixture(scope="module")
def umls_pair(data_root, tmp_path_factory):
    """grsnn.md §6's UMLS runs, paired: with delays and the no-delay ablation, same seed, data and steps. The
    delay run is spied on: every training batch, and the facts and kept edges of every training graph."""
    params = load_params(ROOT / "params.yaml")
    spec = {"hidden_dim": 32, "input_dim": 32, "steps_per_epoch": 80, "eval_triples": 128}  # grsnn.md §6
    seen = {"batches": [], "facts": [], "evaluated": []}
    candidates, remove = grsnn_component.training_candidates, grsnn_component.remove_easy_edges
    evaluate = grsnn_component.evaluate

    def spy_evaluate(model, graph, triples, known, cfg, prefix, device):
        seen["evaluated"].append((prefix, triples.clone(), known))
        return evaluate(model, graph, triples, known, cfg, prefix, device)

    def spy_candidates(batch, known, *args):
        seen["batches"].append(batch.clone())
        return candidates(batch, known, *args)

    def spy_remove(facts, batch, *args):
        kept = remove(facts, batch, *args)
        seen["facts"].append((facts.clone(), batch.clone(), kept.clone()))
        return kept

    results = {}
    for not_delay in (False, True):
        request = plan_run(
            "grsnn", params, preset="smoke", overrides={**spec, "not_delay": not_delay}, data_dir=data_root
        )
        with pytest.MonkeyPatch.context() as patch:
            if not not_delay:
                patch.setattr(grsnn_component, "training_candidates", spy_candidates)
                patch.setattr(grsnn_component, "remove_easy_edges", spy_remove)
                patch.setattr(grsnn_component, "evaluate", spy_evaluate)
            result = execute(request, run_root=tmp_path_factory.mktemp("runs"), data_dir=data_root, show_progress=False)
        results[not_delay] = (request, result)
    return results, seen


# Check C: on UMLS, delays learn relation timing the no-delay ablation cannot (paired: same seed, data, steps).
def test_check_c_delays_beat_the_paired_no_delay_ablation_on_umls(umls_pair):
    results, _ = umls_pair
    mrr = {not_delay: result.metrics["test/mrr"] for not_delay, (_, result) in results.items()}
    assert mrr[False] >= 0.30, mrr
    assert mrr[False] - mrr[True] >= 0.10, mrr


def test_run_trains_on_train_and_reports_each_split_from_its_weights(umls_pair, data_root):
    """Training batches come from the train split, the training graph is the training facts minus each batch's
    easy edges, model selection ranks the val split and the report ranks the test split, and the saved weights
    are the ones whose delays the run wrote."""
    results, seen = umls_pair
    request, result = results[False]
    kg = KGTriples(data_root, "graphs/umls")
    train = {tuple(x) for x in kg.triples["train"].tolist()}
    assert len(seen["batches"]) == 80 and all(tuple(x) in train for b in seen["batches"] for x in b.tolist())
    train_ids = torch.from_numpy(kg.triples["train"])
    key = torch.tensor([kg.num_relations * kg.num_entities, kg.num_entities, 1])
    assert len(seen["facts"]) == 80  # one training graph per batch
    for facts, batch, kept in seen["facts"]:
        assert torch.equal(facts, train_ids)  # the graph is built from the training facts
        assert not torch.isin((batch * key).sum(1), (kept * key).sum(1)).any()  # minus the batch's triples
        assert len(kept) < len(facts)
    cfg = request.config
    model = build_model(kg.num_relations, cfg)
    model.load_state_dict(load_file(str(result.run_dir / "model.safetensors")))
    splits = {k: torch.from_numpy(v) for k, v in kg.triples.items()}
    assert [prefix for prefix, _, _ in seen["evaluated"]] == ["val", "test"]  # select on val, then test the best
    for prefix, triples, known in seen["evaluated"]:
        assert torch.equal(triples, splits[prefix][:128])
        for split in ("train", "val", "test"):  # the filter knows the true answers of every split
            h, r, t = splits[split].unbind(1)
            assert known.mask(h, r)[torch.arange(len(t)), t].all(), split
    assert 0 < result.metrics["test/spike_rate"] < 1
    delays = json.loads((result.run_dir / "delays.json").read_text())
    assert len(delays) == 2 * kg.num_relations and all(0 <= d <= 4 for row in delays.values() for d in row)
    assert delays == grsnn_component.learned_delays(model, kg.num_relations)


def write_fb15k237_layout(folder, entities=30, relations=5, seed=0):
    """train.txt / valid.txt / test.txt of Freebase-style labels, tab-separated (FB15k-237's release)."""
    rng = np.random.default_rng(seed)
    names = [f"/m/0{chr(97 + i % 26)}{i:03d}" for i in range(entities)]
    rels = [f"/film/film/relation_{r}" for r in range(relations)]
    triples = sorted(
        {(int(h), int(r), int(t)) for h, r, t in rng.integers(0, [entities, relations, entities], (140, 3))}
    )
    rng.shuffle(triples)
    folder.mkdir(parents=True)
    for file, part in (("train.txt", triples[:100]), ("valid.txt", triples[100:110]), ("test.txt", triples[110:120])):
        (folder / file).write_text("".join(f"{names[h]}\t{rels[r]}\t{names[t]}\n" for h, r, t in part))


def test_paper_path_fb15k237_layout_with_the_official_recipe(params, tmp_path, monkeypatch):
    """The paper preset (FB15k-237: D = 32, T = 10, linear_scale 0.1, one-hop easy-edge removal, T_adv 0.5, Adam
    2e-3, 5 x 6 triples a step) on TSV files in FB15k-237's layout prepared through kg-tsv, shrunk in counts."""
    from tests.paper_path import run_paper_path

    write_fb15k237_layout(tmp_path / "Release")
    prepare("graphs/fb15k237", {"source": "kg-tsv", "path": str(tmp_path / "Release")}, tmp_path / "data")
    trains = []
    original = grsnn_model.propagate

    def spy(boundary, delays, graph, synapse, dynamics):
        out = original(boundary, delays, graph, synapse, dynamics)
        trains.append((out.spikes.shape, delays is not None and delays.requires_grad, graph.src.numel()))
        return out

    monkeypatch.setattr(grsnn_model, "propagate", spy)
    counts = {"epochs": 1, "num_negative": 16}
    result = run_paper_path("grsnn", params, counts, tmp_path / "data", tmp_path / "runs")
    training = [t for t in trains if t[1]]
    passes = math.ceil(len(KGTriples(tmp_path / "data", "graphs/fb15k237").triples["train"]) / 5)
    assert len(training) == passes // 6 * 6  # whole optimizer steps of 6 accumulated passes of 5 triples
    assert all(shape[0] == 10 and shape[1] == 5 and shape[3] == 32 for shape, _, _ in training)
    assert all(edges < 200 for _, _, edges in training)  # 100 facts and their inverses, minus the easy edges
    assert result.metrics["best_epoch"] == 0 and 0 < result.metrics["test/mrr"] <= 1
    queries = 2 * 5  # every relation and its inverse
    generator, synapse, readout = 32 * queries * 32 + queries * 32, 32 * 32 + 32, 64 * 64 + 64 + 64 + 1
    assert result.metrics["param_count"] == queries * 32 + generator + synapse + readout  # query-dependent delays


def test_resume_after_preemption_is_bit_exact(params, data_root, tmp_path, preempt_at):
    """Preempted in the second epoch, the resumed run keeps the first epoch's selection and draws the same
    batches and negatives: its metrics equal an uninterrupted run's."""
    request = plan_run("grsnn", params, preset="test", overrides={"epochs": 2}, seed=1, data_dir=data_root)
    common = dict(data_dir=data_root, show_progress=False, checkpoint_every=2)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(4)], **common)
    (cut_dir,) = (tmp_path / "cut" / "grsnn").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
