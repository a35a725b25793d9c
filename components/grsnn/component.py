"""GRSNN ("Temporal Spiking Neural Networks with Synaptic Delay for Graph Reasoning", arXiv 2405.16851):
knowledge-graph completion by spike propagation with relation- and query-dependent synaptic delays."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch

from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted
from components.core.graphs import KGTriples
from components.core.training import checked_backward, evaluation_due
from components.grsnn.config import Config
from components.grsnn.model import GRSNN, Graph, build_model
from components.grsnn.ranking import (
    KnownAnswers,
    as_tail_queries,
    filtered_ranks,
    rank_metrics,
    remove_easy_edges,
    self_adversarial_loss,
    training_candidates,
)

UMLS = {  # grsnn.md §6: UMLS from pykeen's wheel, the smoke scale's recipe
    "dataset": "graphs/umls",
    "linear_scale": 1.0,
    "remove_one_hop": False,
    "adversarial_temperature": 0.5,
    "lr": 5e-3,
    "grad_accumulation": 1,
    "epochs": 1,
}


@torch.no_grad()
def evaluate(
    model: GRSNN, graph: Graph, triples: torch.Tensor, known: KnownAnswers, cfg: Config, prefix: str, device: str
) -> dict[str, float]:
    """Filtered ranking of both directions of `triples` against every entity, on the full training graph."""
    model.eval()
    sources, queries, answers = as_tail_queries(triples, graph.num_relations // 2)
    ranks, spikes, neurons = [], 0.0, 0
    for start in range(0, len(sources), cfg.eval_batch_size):
        part = slice(start, start + cfg.eval_batch_size)
        scores, trains = model(graph, sources[part].to(device), queries[part].to(device))
        ranks.append(filtered_ranks(scores.cpu(), answers[part], known.mask(sources[part], queries[part])))
        spikes += trains.spikes.sum().item()
        neurons += trains.spikes.numel()
    model.train()
    ranks = torch.cat(ranks)
    half = len(triples)
    metrics = rank_metrics(ranks, prefix)
    metrics[f"{prefix}/mrr_tail"] = (1 / ranks[:half].double()).mean().item()
    metrics[f"{prefix}/mrr_head"] = (1 / ranks[half:].double()).mean().item()
    metrics[f"{prefix}/spike_rate"] = spikes / neurons  # spikes per neuron per step
    return metrics


def on_device(graph: Graph, device: str) -> Graph:
    return Graph(graph.src.to(device), graph.dst.to(device), graph.rel.to(device), graph.num_nodes, graph.num_relations)


def training_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's shuffle of the training triples, a function of (seed, epoch): a resumed run sees the same."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def learned_delays(model: GRSNN, num_relations: int) -> dict[str, list[list[float]]]:
    """Per query relation q, the delay of every edge relation r averaged over the D channels (rounded to 1e-3)."""
    if model.delay is None:
        return {}
    with torch.no_grad():
        queries = torch.arange(2 * num_relations)
        delays = model.delays(model.query(queries)).mean(dim=2)
    return {str(q): [round(float(d), 3) for d in row] for q, row in enumerate(delays)}


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    kg = KGTriples(ctx.data_dir, cfg.dataset)
    splits = {split: torch.from_numpy(kg.triples[split]) for split in ("train", "val", "test")}
    num_entities, num_relations = kg.num_entities, kg.num_relations
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")
    train_known = KnownAnswers(splits["train"], num_entities, num_relations)  # strict negatives: the facts
    all_known = KnownAnswers(torch.cat(list(splits.values())), num_entities, num_relations)  # the ranking filter
    full_graph = on_device(Graph.from_triples(splits["train"], num_entities, num_relations), ctx.device)
    evaluated = {
        split: splits[split][: cfg.eval_triples] if cfg.eval_triples else splits[split] for split in ("val", "test")
    }

    torch.manual_seed(ctx.seed)
    model = build_model(num_relations, cfg).to(ctx.device)
    raw_model = model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model, optimizer, _ = ctx.strategy.prepare(model, optimizer, None)

    per_epoch = math.ceil(len(splits["train"]) / cfg.batch_size)
    per_epoch = min(per_epoch, cfg.steps_per_epoch) if cfg.steps_per_epoch else per_epoch
    per_epoch = max(per_epoch // cfg.grad_accumulation, 1)  # optimizer steps
    total = per_epoch * cfg.epochs
    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    best = resumed["best"] if resumed else {"val/mrr": -1.0, "state": None, "epoch": -1}
    micro = cfg.batch_size // ctx.world_size
    for step in ctx.progress(range(start, total), total=total, initial=start, desc="grsnn"):
        epoch, within = divmod(step, per_epoch)
        order = training_order(len(splits["train"]), ctx.seed, epoch)
        loss_total = 0.0
        for part in range(cfg.grad_accumulation):
            first = (within * cfg.grad_accumulation + part) * cfg.batch_size
            rows = order[np.arange(first, first + cfg.batch_size) % len(order)]
            batch = splits["train"][rows][ctx.rank * micro : (ctx.rank + 1) * micro]
            facts = remove_easy_edges(splits["train"], batch, num_entities, cfg.remove_one_hop)
            graph = on_device(Graph.from_triples(facts, num_entities, num_relations), ctx.device)
            seed = int(np.random.default_rng([ctx.seed, step, part, ctx.rank]).integers(2**62))  # resumable draws
            generator = torch.Generator().manual_seed(seed)
            sources, queries, candidates = training_candidates(
                batch, train_known, num_relations, cfg.num_negative, generator
            )
            logits, _ = model(graph, sources.to(ctx.device), queries.to(ctx.device), candidates.to(ctx.device))
            loss = self_adversarial_loss(logits, cfg.adversarial_temperature) / cfg.grad_accumulation
            loss_total += checked_backward(ctx, loss, step=step, limit=cfg.divergence_limit, lr=cfg.lr)
        ctx.strategy.step()
        ctx.log({"train/loss": loss_total}, step=step)
        done = step + 1
        if done % per_epoch == 0:  # the end of an epoch: model selection on validation MRR
            val = evaluate(raw_model, full_graph, evaluated["val"], all_known, cfg, "val", ctx.device)
            ctx.log(val, step=step)
            if val["val/mrr"] > best["val/mrr"]:
                state = {k: v.detach().cpu().clone() for k, v in raw_model.state_dict().items()}
                best = {"val/mrr": val["val/mrr"], "metrics": val, "state": state, "epoch": epoch}
        elif evaluation_due(done, total, 0, ctx.evaluations):  # a sweep's mid-epoch report: logged, never selected
            ctx.log(evaluate(raw_model, full_graph, evaluated["val"], all_known, cfg, "val", ctx.device), step=step)
        stop = ctx.should_stop()
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done, "best": best})
        if stop and done < total:
            raise Preempted(f"stopped at step {done} of {total}; resume continues from its checkpoint")

    raw_model.load_state_dict(best["state"])
    final = dict(best["metrics"])  # the selected epoch's validation ranks
    final |= evaluate(raw_model, full_graph, evaluated["test"], all_known, cfg, "test", ctx.device)
    final["best_epoch"] = float(best["epoch"])
    final["param_count"] = float(sum(p.numel() for p in raw_model.parameters()))
    ctx.log(final, step=total)
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    if ctx.is_main:
        (ctx.run_dir / "delays.json").write_text(json.dumps(learned_delays(raw_model, num_relations)) + "\n")
    return final


class GRSNNComponent:
    name = "grsnn"
    Config = Config
    presets = {
        "test": {**UMLS, "dataset": "graphs/nations", "hidden_dim": 8, "input_dim": 8, "time_steps": 6,
                 "num_negative": 8, "batch_size": 4, "steps_per_epoch": 3, "eval_triples": 8},  # seconds: plumbing
        "smoke": {**UMLS, "hidden_dim": 16, "input_dim": 16, "time_steps": 8, "num_negative": 32, "batch_size": 8,
                  "steps_per_epoch": 40, "eval_triples": 64, "eval_batch_size": 32},  # grsnn.md §6, shrunk to 15 s
        "paper": {},  # the Config defaults: FB15k-237, D = 32, T = 10, 20 epochs of 5 x 6
    }  # fmt: skip
    datasets = ("graphs/umls", "graphs/nations", "graphs/kinships", "graphs/fb15k237", "graphs/wn18rr")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return train(cfg, ctx)

    def random_step(self, cfg: Config) -> float:
        """One paper-scale optimizer step on a random graph of FB15k-237's relation count (600 nodes)."""
        torch.manual_seed(0)
        num_entities, num_relations = 600, 237
        facts = torch.stack(
            [torch.randint(0, num_entities, (3000,)), torch.randint(0, num_relations, (3000,)),
             torch.randint(0, num_entities, (3000,))], dim=1,
        )  # fmt: skip
        model = build_model(num_relations, cfg)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        batch = facts[: cfg.batch_size]
        graph = Graph.from_triples(remove_easy_edges(facts, batch, num_entities, cfg.remove_one_hop), 600, 237)
        known = KnownAnswers(facts, num_entities, num_relations)
        sources, queries, candidates = training_candidates(
            batch, known, num_relations, cfg.num_negative, torch.Generator().manual_seed(0)
        )
        loss = self_adversarial_loss(model(graph, sources, queries, candidates)[0], cfg.adversarial_temperature)
        loss.backward()
        optimizer.step()
        return loss.item()


component = GRSNNComponent()
