"""logic_consistency (the survey arXiv 2502.15652, turned into a harness by logic_consistency.md): score an answerer
on procedurally generated worlds whose gold answers and constraints are known. taxo: the consistency metrics of
§3.2 before and after the MaxSAT repair of §3.4; rule: logical-QA accuracy per proof depth (§3.3). One replicate
(an independently seeded world) per step: logged, checkpointed, averaged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted
from components.logic_consistency.answerers import build_answerer
from components.logic_consistency.config import Config
from components.logic_consistency.metrics import consistency, depth_accuracy, flags, implication_violations
from components.logic_consistency.repair import beliefs_from, repair
from components.logic_consistency.worlds import rule_world, taxo_world

COUNT_PREFIXES = ("n_", "app_")  # counts are summed over replicates, rates averaged


def check_answerer(cfg: Config) -> None:
    if cfg.answerer != "llm":
        return
    if not cfg.llm.model:
        raise ConfigError("answerer=llm needs llm.model: the folder of a Hugging Face causal LM (config, weights)")
    if not Path(cfg.llm.model).is_dir():
        raise ConfigError(f"llm.model: no model folder at {cfg.llm.model}")


def score_taxo(cfg: Config, world, p: np.ndarray) -> tuple[dict[str, float], list[dict]]:
    beliefs = p > 0.5
    report = consistency(world, beliefs, p)
    report.update(flags(report))
    _, distance = repair(world, p, clip=cfg.clip, unit=True)
    report["repair_dist"] = distance / len(world.atoms)
    _, violated = implication_violations(world, beliefs[:, 0])
    audit = [
        {"antecedent": world.atoms[a], "consequent": world.atoms[b], "negated": bool(n)}
        for a, b, n in world.implications[violated].tolist()
    ]
    if cfg.repair:
        repaired, _ = repair(world, p, clip=cfg.clip)
        after = consistency(world, beliefs_from(repaired), p)
        keep = {key: value for key, value in after.items() if not key.startswith("n_") and key != "delta_neg"}
        report.update({f"repaired/{key}": value for key, value in keep.items()})  # delta_neg: of p, not beliefs
    return report, audit


def write_beliefs(path: Path, world, p: np.ndarray) -> None:
    with open(path, "w") as handle:
        for atom, gold, answers in zip(world.atoms, world.gold.tolist(), p.tolist()):
            handle.write(json.dumps({"atom": atom, "gold": gold, "p": answers}) + "\n")


def evaluate(cfg: Config, ctx: RunContext) -> dict[str, float]:
    check_answerer(cfg)
    answerer = build_answerer(cfg, ctx.device)
    checkpointing = ctx.checkpoint is not None
    if checkpointing:  # nothing trains; the strategy's checkpoint needs one placeholder tensor to save beside the sums
        holder = torch.nn.Linear(1, 1, bias=False)
        ctx.strategy.prepare(holder, torch.optim.SGD(holder.parameters(), lr=0.0), None)
    resumed = ctx.checkpoint.restore() if checkpointing else None
    start = resumed["step"] if resumed else 0
    sums: dict[str, float] = resumed["sums"] if resumed else {}
    seen: dict[str, int] = resumed["seen"] if resumed else {}
    violations = ctx.run_dir / "violations.jsonl"
    if not resumed and ctx.is_main:
        violations.write_text("")
    for replicate in ctx.progress(range(start, cfg.replicates), total=cfg.replicates, initial=start, desc=cfg.world):
        rng = np.random.default_rng([ctx.seed, replicate, 1])  # answer noise: its own stream per replicate
        if cfg.world == "taxo":
            world = taxo_world(cfg.taxo, [ctx.seed, replicate])
            p = answerer.taxo(world, rng)
            report, audit = score_taxo(cfg, world, p)
            if ctx.is_main:
                with open(violations, "a") as handle:
                    handle.writelines(json.dumps({"replicate": replicate, **v}) + "\n" for v in audit)
                if replicate == 0:
                    write_beliefs(ctx.run_dir / "beliefs.jsonl", world, p)
        else:
            world = rule_world(cfg.rule, [ctx.seed, replicate])
            report = depth_accuracy(world.queries, answerer.rule(world, rng))
        ctx.log(report, step=replicate)
        for key, value in report.items():
            sums[key] = sums.get(key, 0.0) + value
            seen[key] = seen.get(key, 0) + 1
        done = replicate + 1
        stop = ctx.should_stop()  # once per step
        if checkpointing and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"sums": sums, "seen": seen})
        if stop and done < cfg.replicates:
            raise Preempted(f"stopped after replicate {done} of {cfg.replicates}; resume continues from there")
    final = {key: sums[key] if key.split("/")[-1].startswith(COUNT_PREFIXES) else sums[key] / seen[key] for key in sums}
    ctx.log(final, step=cfg.replicates)
    return final


class LogicConsistency:
    name = "logic_consistency"
    Config = Config
    presets = {
        "test": {"answerer": "noisy_confidence", "replicates": 2, "taxo": {"entities_per_leaf": 1}},  # seconds
        "smoke": {"answerer": "noisy_confidence", "replicates": 5},  # §6 check 4: sigma 2, 5 seeds, 72 entities
        "paper": {},  # the Config defaults: §6's world scored by a local LM (llm.model), repaired, 20 replicates
    }
    datasets = ()  # worlds are generated in-run from the seed (README: why no prepared dataset)

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        check_answerer(cfg)  # before any compute
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return evaluate(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        return None  # an evaluation harness: nothing trains


component = LogicConsistency()
