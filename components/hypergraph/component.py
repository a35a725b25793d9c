"""hypergraph ("Relational Learning in Pre-Trained Models: A Theory from Hypergraph Recovery Perspective",
arXiv 2406.11249): draw a weighted hypergraph, sample corpora of its hyperedges through a perception bijection,
read the hypergraph back with the count-based masked-model estimator and measure the recovery rate against N
and M, the exact-structure recovery, and entity alignment across two modalities with a symmetric control.

It evaluates rather than trains: the long loop is the (M, N) grid, checkpointed cell by cell."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from components.core.contract import RunContext
from components.core.errors import Preempted
from components.hypergraph import align, estimators, mm, plots, world
from components.hypergraph.config import Config

RATE_KEYS = ("tv", "l2", "max_err", "exact", "f1")


def truth_for(cfg: Config, m: int, seed: int) -> tuple[world.Hypergraph, np.ndarray]:
    """H0 with M hyperedges and its bijection phi: a function of (seed, M) alone, so a resumed run redraws it."""
    rng = np.random.default_rng([seed, 1, m])
    hypergraph = world.random_hypergraph(
        cfg.n_entities, m, cfg.edge_sizes, cfg.weight_prior, cfg.dirichlet_alpha, cfg.zipf_exponent, rng
    )
    return hypergraph, world.perception(cfg.n_entities, rng)


def rate_cell(cfg: Config, m: int, samples: int, seed: int) -> dict[str, float]:
    """One (M, N) point: the mean errors over `repetitions` corpora, the theory, and the exact-recovery draws."""
    hypergraph, phi = truth_for(cfg, m, seed)
    truth = estimators.relabelled_truth(hypergraph, phi)
    totals = dict.fromkeys(RATE_KEYS, 0.0)
    for rep in range(cfg.repetitions):
        corpus = world.sample_corpus(hypergraph, phi, samples, np.random.default_rng([seed, 2, m, samples, rep]))
        for key, value in estimators.errors(
            estimators.tabular(corpus, cfg.n_entities), truth, cfg.f1_threshold
        ).items():
            totals[key] += value / cfg.repetitions
    draws = np.random.default_rng([seed, 3, m, samples])
    return {
        **totals,
        "ratio": totals["tv"] / math.sqrt(m / samples),  # E d_TV / sqrt(M/N): 0.354 under Dirichlet(1) (§3.4)
        "tv_theory": estimators.predicted_tv(hypergraph.weights, samples),
        "exact_freq": estimators.exact_frequency(hypergraph.weights, samples, cfg.exact_draws, draws),
        "exact_predicted": estimators.predicted_exact(hypergraph.weights, samples),
    }


def align_once(
    hypergraph: world.Hypergraph, samples: int, rng: np.random.Generator, cfg: Config
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two modalities of one hypergraph, unpaired corpora, signatures + Hungarian (+ swaps): pi_hat, phi1, phi2."""
    a = cfg.alignment
    phi1, phi2 = world.perception(hypergraph.n, rng), world.perception(hypergraph.n, rng)
    width = hypergraph.members.shape[1]
    first = estimators.tabular(world.sample_corpus(hypergraph, phi1, samples, rng), hypergraph.n)
    second = estimators.tabular(world.sample_corpus(hypergraph, phi2, samples, rng), hypergraph.n)
    sig1 = align.signatures(first, hypergraph.n, width, a.signature_top)
    sig2 = align.signatures(second, hypergraph.n, width, a.signature_top)
    match, cost = align.hungarian(sig1, sig2)
    if a.refine:
        match = align.refine(first, second, match, cost, hypergraph.n, width, a.refine_neighbours, a.refine_passes)
    return match, phi1, phi2


def align_cell(cfg: Config, samples: int, seed: int) -> dict[str, float]:
    a = cfg.alignment
    rng = np.random.default_rng([seed, 4])
    hypergraph = world.random_hypergraph(
        a.entities, a.hyperedges, [a.edge_size], cfg.weight_prior, cfg.dirichlet_alpha, cfg.zipf_exponent, rng
    )
    scores = []
    for rep in range(a.repetitions):
        match, phi1, phi2 = align_once(hypergraph, samples, np.random.default_rng([seed, 5, samples, rep]), cfg)
        scores.append(align.accuracy(match, phi2[np.argsort(phi1)]))  # truth pi = phi2 o phi1^-1
    return {"acc": float(np.mean(scores))}


def control_cell(cfg: Config, seed: int) -> dict[str, float]:
    """The equal-weight cycle: non-identifiable, so accuracy stays low while the orbit-level accuracy is high."""
    a = cfg.alignment
    hypergraph = world.cycle(a.control_entities)
    plain, orbit = [], []
    for rep in range(a.repetitions):
        rng = np.random.default_rng([seed, 6, rep])
        match, phi1, phi2 = align_once(hypergraph, a.control_samples, rng, cfg)
        plain.append(align.accuracy(match, phi2[np.argsort(phi1)]))
        orbit.append(align.best_dihedral_accuracy(match, phi1, phi2))
    return {"acc": float(np.mean(plain)), "automorphism_acc": float(np.mean(orbit))}


def mm_cell(cfg: Config, samples: int, seed: int, device: str) -> dict[str, float]:
    """Config C: the learned masked model beside the counts on the same corpora, averaged over seeds."""
    c = cfg.mm
    rng = np.random.default_rng([seed, 7])
    hypergraph = world.random_hypergraph(
        c.entities, c.hyperedges, [c.edge_size], cfg.weight_prior, cfg.dirichlet_alpha, cfg.zipf_exponent, rng
    )
    phi = world.perception(c.entities, rng)
    truth = estimators.relabelled_truth(hypergraph, phi)
    totals = dict.fromkeys(("tv", "tv_observed", "tv_tabular", "mass"), 0.0)
    for rep in range(c.repetitions):
        corpus = world.sample_corpus(hypergraph, phi, samples, np.random.default_rng([seed, 8, samples, rep]))
        counts = estimators.tabular(corpus, c.entities)
        model = mm.train(corpus, c.entities, c.width, c.hidden, c.steps, c.batch_size, c.lr, seed + rep, device)
        learned = mm.read_out(model, c.entities, c.edge_size, device)
        scores = {
            "tv": estimators.errors(learned, truth, cfg.f1_threshold)["tv"],
            "tv_observed": estimators.errors(mm.restricted(learned, counts.keys), truth, cfg.f1_threshold)["tv"],
            "tv_tabular": estimators.errors(counts, truth, cfg.f1_threshold)["tv"],
            "mass": float(learned.weights.sum()),  # what the model leaves on sequences with a repeated token
        }
        for key, value in scores.items():
            totals[key] += value / c.repetitions
    return totals


def cells(cfg: Config) -> list[tuple]:
    rate = [("rate", m, n) for m in cfg.hyperedge_counts for n in cfg.sample_sizes]
    learned = [("mm", n) for n in cfg.mm.sample_sizes]
    return [*rate, *(("align", n) for n in cfg.alignment.sample_sizes), ("control",), *learned]


def compute(cfg: Config, cell: tuple, seed: int, device: str = "cpu") -> dict[str, float]:
    if cell[0] == "rate":
        return rate_cell(cfg, cell[1], cell[2], seed)
    if cell[0] == "align":
        return align_cell(cfg, cell[1], seed)
    if cell[0] == "mm":
        return mm_cell(cfg, cell[1], seed, device)
    return control_cell(cfg, seed)


def cell_name(cell: tuple) -> str:
    if cell[0] == "rate":
        return f"rate/M{cell[1]}/N{cell[2]}"
    if cell[0] == "mm":
        return f"mm/N{cell[1]}"
    return f"align/N{cell[1]}" if cell[0] == "align" else "align/control"


def progress_file(ctx: RunContext) -> Path:
    return (ctx.checkpoint.directory if ctx.checkpoint is not None else ctx.run_dir) / "hypergraph_cells.json"


def load_progress(path: Path, identity: dict) -> dict[str, dict[str, float]]:
    """Finished cells of an interrupted run with the same config and seed (anything else starts afresh)."""
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    return saved["cells"] if saved.get("identity") == identity else {}


def save_progress(path: Path, identity: dict, done: dict[str, dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"identity": identity, "cells": done}))
    partial.replace(path)  # atomic: a kill mid-write leaves the previous file


def summarise(cfg: Config, done: dict[str, dict[str, float]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, values in done.items():
        metrics.update({f"{name}/{key}": value for key, value in values.items()})
    ratios, gaps = [], []
    for m in cfg.hyperedge_counts:
        fit = [n for n in cfg.sample_sizes if n >= m] or list(cfg.sample_sizes)  # N >= M: below it TV saturates
        if len(fit) >= 2:
            slope = estimators.loglog_slope(fit, [done[f"rate/M{m}/N{n}"]["tv"] for n in fit])
            metrics[f"rate/M{m}/loglog_slope"] = slope
            gaps.append(abs(slope + 0.5))
        ratios += [done[f"rate/M{m}/N{n}"]["ratio"] for n in cfg.sample_sizes]
    metrics["tv_over_sqrt_M_over_N"] = float(np.mean(ratios))
    metrics["rate/ratio_min"], metrics["rate/ratio_max"] = float(min(ratios)), float(max(ratios))
    if gaps:
        metrics["rate/slope_worst_gap"] = float(max(gaps))  # max over M of |slope + 1/2|: the sweep's metric
    largest = max(cfg.alignment.sample_sizes)
    metrics["align_acc"] = done[f"align/N{largest}"]["acc"]
    if len(cfg.mm.sample_sizes) >= 2:  # Config C: more data helps the learned model, and it nears the counts
        low, high = min(cfg.mm.sample_sizes), max(cfg.mm.sample_sizes)
        metrics["mm/tv_ratio_more_data"] = done[f"mm/N{high}"]["tv"] / done[f"mm/N{low}"]["tv"]
    if cfg.mm.sample_sizes:
        high = max(cfg.mm.sample_sizes)
        metrics["mm/tv_over_tabular"] = done[f"mm/N{high}"]["tv"] / done[f"mm/N{high}"]["tv_tabular"]
    return metrics


def write_outputs(cfg: Config, done: dict[str, dict[str, float]], ctx: RunContext) -> None:
    run_dir, samples = ctx.run_dir, list(cfg.sample_sizes)
    with open(run_dir / "rate_curves.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["M", "N", *RATE_KEYS, "ratio", "tv_theory", "exact_freq", "exact_predicted"])
        for m in cfg.hyperedge_counts:
            for n in samples:
                row = done[f"rate/M{m}/N{n}"]
                writer.writerow(
                    [m, n, *(row[k] for k in (*RATE_KEYS, "ratio", "tv_theory")), row["exact_freq"]]
                    + [row["exact_predicted"]]
                )
    table = {m: [done[f"rate/M{m}/N{n}"] for n in samples] for m in cfg.hyperedge_counts}
    plots.rate_curves(
        run_dir / "rate_curves.png",
        samples,
        {m: [r["tv"] for r in rows] for m, rows in table.items()},
        {m: [r["tv_theory"] for r in rows] for m, rows in table.items()},
    )
    plots.exact_curves(
        run_dir / "exact_recovery.png",
        samples,
        {m: [r["exact_freq"] for r in rows] for m, rows in table.items()},
        {m: [r["exact_predicted"] for r in rows] for m, rows in table.items()},
    )
    accuracy = [done[f"align/N{n}"]["acc"] for n in cfg.alignment.sample_sizes]
    plots.alignment_curve(
        run_dir / "alignment.png", list(cfg.alignment.sample_sizes), accuracy, done["align/control"]["acc"]
    )
    (run_dir / "align_acc_vs_N.json").write_text(
        json.dumps({"samples": list(cfg.alignment.sample_sizes), "acc": accuracy, "control": done["align/control"]})
    )
    m, n = max(cfg.hyperedge_counts), max(samples)  # the largest cell's H0 and one recovered hypergraph
    hypergraph, phi = truth_for(cfg, m, ctx.seed)
    (run_dir / "hypergraph.json").write_text(
        json.dumps({**hypergraph.to_json(), "phi": phi.tolist(), "seed": ctx.seed})
    )
    corpus = world.sample_corpus(hypergraph, phi, n, np.random.default_rng([ctx.seed, 2, m, n, 0]))
    recovered = estimators.tabular(corpus, cfg.n_entities)
    members = estimators.key_members(recovered.keys, cfg.n_entities, hypergraph.members.shape[1])
    record = {
        "tokens": cfg.n_entities,
        "samples": n,
        "hyperedges": [[int(v) for v in row if v != world.PAD] for row in members],
        "weights": recovered.weights.tolist(),
    }
    (run_dir / "recovered_hypergraph.json").write_text(json.dumps(record))


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    identity = {"config": cfg.model_dump(mode="json"), "seed": ctx.seed}
    path = progress_file(ctx)
    done = load_progress(path, identity)
    todo = cells(cfg)
    for index, cell in enumerate(ctx.progress(todo, total=len(todo), desc="hypergraph grid")):
        name = cell_name(cell)
        if name not in done:
            done[name] = compute(cfg, cell, ctx.seed, ctx.device)
            if ctx.is_main:
                save_progress(path, identity, done)
        ctx.log({f"{name}/{key}": value for key, value in done[name].items()}, step=index)
        stop = ctx.should_stop()  # once per cell
        if stop and index + 1 < len(todo):
            raise Preempted(f"stopped after cell {index + 1} of {len(todo)}; a resumed run skips the finished cells")
    metrics = summarise(cfg, done)
    if ctx.is_main:
        write_outputs(cfg, done, ctx)
    ctx.log(metrics, step=len(todo))
    return metrics


SMOKE = {  # hypergraph.md §6 Config A (rate) and Config B (alignment)
    "n_entities": 40,
    "hyperedge_counts": [25, 100],
    "sample_sizes": [100, 400, 1600, 6400, 25600],
}


class HypergraphRecovery:
    name = "hypergraph"
    Config = Config
    presets = {
        "test": {  # seconds: plumbing only
            **SMOKE,
            "sample_sizes": [100, 1600],
            "repetitions": 2,
            "exact_draws": 20,
            "alignment": {"sample_sizes": [300, 3000], "repetitions": 2, "control_samples": 3000},
            "mm": {"sample_sizes": [500], "repetitions": 1, "steps": 50},
        },
        "smoke": {**SMOKE, "mm": {"sample_sizes": []}},  # Config C trains 6 models (~40 s): in its own test
        "paper": {},  # the Config defaults: the §7 synthetic grid (10^3 entities, M to 10^5, N to 10^7)
    }
    datasets = ()  # procedural: H0 and the corpora are drawn from the run's seed (README, "Reproduce")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return run(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        """One Adam step of the masked model on random token rows."""
        c = cfg.mm
        torch.manual_seed(0)
        model = mm.build_model(c.entities, c.edge_size, c.width, c.hidden)
        rows = torch.randint(0, c.entities, (8, c.edge_size))
        loss = mm.masked_loss(model, rows, torch.Generator().manual_seed(0))
        loss.backward()
        torch.optim.Adam(model.parameters(), lr=c.lr).step()
        return loss.item()


component = HypergraphRecovery()
