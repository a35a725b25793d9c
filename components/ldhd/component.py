"""LDHD (Chen, Yang, Liang, Lin, ICML 2025, arXiv 2410.08898): length generalisation as Low-Dimension-to-High-
Dimension generalisation. One run trains the shared decoder with a chosen position encoding on a length-split
sequence task (unaligned copy or URF addition) and reports exact match per test length; it also runs the Boolean
experiments (RF / RFMP / PLAA min-degree interpolators, position-only copy attention) of ldhd.md §6."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from components.core.contract import RunContext
from components.core.errors import Preempted
from components.core.schedules import ScheduleConfig, make_scheduler
from components.core.training import checked_step
from components.core.transformer import Decoder, DecoderConfig, greedy
from components.ldhd import boolean, copy_attention, tasks
from components.ldhd.config import Config

GOOD = 0.9  # max_len_acc_ge_0.9: the longest length whose exact match reaches this


def build_model(cfg: Config) -> Decoder:
    m = cfg.model
    return Decoder(
        DecoderConfig(
            vocab_size=tasks.VOCAB, d_model=m.d_model, layers=m.layers, heads=m.heads, max_positions=m.max_positions,
            position=m.position, rpe_clip=m.rpe_clip, anchor_tokens=tasks.ANCHORS,
        )
    )  # fmt: skip


@torch.no_grad()
def evaluate(model: Decoder, cfg: Config, seed: int) -> dict[int, float]:
    """Exact match of the whole greedy answer (every digit, the final carry and EOS) per length 1..test_max_length."""
    was_training = model.training
    model.eval()
    records = tasks.test_set(cfg.task, seed, cfg.test_max_length, cfg.eval_per_length)
    correct: dict[int, list[float]] = {}
    for start in range(0, len(records), cfg.eval_batch_size):
        chunk = records[start : start + cfg.eval_batch_size]
        budget = max(len(answer) for _, _, answer in chunk) + 1  # room to overrun: a missing EOS is a miss
        generated = greedy(model, [prompt for _, prompt, _ in chunk], budget, eos=tasks.EOS, pad=tasks.PAD)
        for (length, _, answer), ids in zip(chunk, generated):
            correct.setdefault(length, []).append(float(ids == answer[:-1]))
    model.train(was_training)
    return {length: float(np.mean(values)) for length, values in sorted(correct.items())}


def summarise(accuracy: dict[int, float], train_max: int) -> dict[str, float]:
    """acc_len_{L}, acc_in_domain (L <= train_max), acc_ood (L > train_max), max_len_acc_ge_0.9 (0: none)."""
    out = {f"acc_len_{length}": value for length, value in accuracy.items()}
    inside = [v for length, v in accuracy.items() if length <= train_max]
    beyond = [v for length, v in accuracy.items() if length > train_max]
    out["acc_in_domain"] = float(np.mean(inside))
    out["acc_ood"] = float(np.mean(beyond)) if beyond else float("nan")
    out["max_len_acc_ge_0.9"] = float(max((length for length, v in accuracy.items() if v >= GOOD), default=0))
    return out


def boolean_metrics(cfg: Config, seed: int) -> dict[str, float]:
    b = cfg.boolean
    out = boolean.mdi_check(b.n, b.n0, b.features, seed)
    out |= boolean.rfmp_check(b.n, b.n0, b.features, seed)
    out |= boolean.plaa_check(b.plaa_n, b.n0, b.plaa_steps, seed=seed)
    out |= copy_attention.copy_check(seed, b.copy_sequences)
    return {f"boolean/{key}": float(value) for key, value in out.items()}


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    torch.manual_seed(ctx.seed)
    model = build_model(cfg).to(ctx.device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    schedule = ScheduleConfig(name="cosine", warmup=min(cfg.warmup, cfg.steps - 1))
    scheduler = make_scheduler(optimizer, schedule, cfg.steps)
    model, optimizer, scheduler = ctx.strategy.prepare(model, optimizer, scheduler)
    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    per_rank = max(1, cfg.batch_size // ctx.world_size)
    for step in ctx.progress(range(start, cfg.steps), total=cfg.steps, initial=start, desc="ldhd"):
        rng = np.random.default_rng([ctx.seed, step, ctx.rank])  # a fresh draw per step: resumable, never a test
        inputs, targets, mask = (
            torch.from_numpy(a).to(ctx.device)
            for a in tasks.training_batch(cfg.task, rng, per_rank, cfg.train_max_length)
        )
        logits = model(inputs)
        loss = F.cross_entropy(logits[mask], targets[mask])
        lr = optimizer.param_groups[0]["lr"]
        value = checked_step(ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr, hint="lower lr")
        ctx.log({"train/loss": value, "lr": lr}, step=step)
        done = step + 1
        stop = ctx.should_stop()
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done})
        if stop and done < cfg.steps:
            raise Preempted(f"stopped at step {done} of {cfg.steps}; resume continues from its checkpoint")
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    final = summarise(evaluate(model, cfg, ctx.seed), cfg.train_max_length)
    final["steps"] = float(cfg.steps)
    return final


class Ldhd:
    name = "ldhd"
    Config = Config
    presets = {
        "test": {  # seconds: plumbing only
            "task": "unaligned_copy", "train_max_length": 3, "test_max_length": 5, "eval_per_length": 4,
            "model": {"d_model": 16, "layers": 1, "heads": 2}, "steps": 5, "batch_size": 8, "warmup": 1,
            "boolean": {"enabled": False},
        },
        "smoke": {  # ldhd.md §6: the Boolean checks 1-4 (fewer RF features), then a decoder on unaligned copy
            "task": "unaligned_copy", "train_max_length": 5, "test_max_length": 8, "eval_per_length": 20,
            "model": {"d_model": 64, "layers": 2, "heads": 4}, "lr": 3e-3, "warmup": 30, "batch_size": 64,
            "steps": 250, "boolean": {"features": 2000},
        },
        "paper": {},  # the Config defaults (assumed scale: the paper's sizes are not in the spec)
    }  # fmt: skip
    datasets = ()  # procedural: every task is generated from the seed inside the run (README: why)

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        final = train(cfg, ctx)
        if cfg.boolean.enabled:
            final |= boolean_metrics(cfg, ctx.seed)
        ctx.log(final, step=cfg.steps)
        return final

    def random_step(self, cfg: Config) -> float:
        torch.manual_seed(0)
        model = build_model(cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        inputs, targets, mask = (
            torch.from_numpy(a) for a in tasks.training_batch(cfg.task, np.random.default_rng(0), 2, 4)
        )
        loss = F.cross_entropy(model(inputs)[mask], targets[mask])
        loss.backward()
        optimizer.step()
        return loss.item()


component = Ldhd()
