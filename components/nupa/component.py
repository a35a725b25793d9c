"""NUPA (Number Cookbook, arXiv 2411.03766): train a small decoder from scratch on one number task with a
tokenizer x position encoding x number format, or score a pretrained causal LM on the same test split; both
report exact match, digit match and dlength per length, bucket means and the well-learned /
performance-preserving digits (nupa.md §3.4)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted, RunError
from components.core.schedules import ScheduleConfig, make_scheduler
from components.core.tokens import read_records
from components.core.training import checked_step
from components.core.transformer import Decoder, DecoderConfig, greedy
from components.nupa import metrics
from components.nupa.config import Config
from components.nupa.prompts import prompt
from components.nupa.tokenizer import BOS, EOS, PAD, NumberFormat, NumberTokenizer

SHIFT_PROBABILITY, SHIFT_MAX = 0.7, 63  # random_shifted_start: the official probability and offset range


def number_format(cfg: Config) -> NumberFormat:
    return NumberFormat(cfg.digits_per_token, cfg.direction, cfg.reverse, cfg.pad, cfg.index_hint)


def build_model(cfg: Config, tokenizer: NumberTokenizer) -> Decoder:
    return Decoder(
        DecoderConfig(
            vocab_size=len(tokenizer), d_model=cfg.model.d_model, layers=cfg.model.layers, heads=cfg.model.heads,
            max_positions=cfg.model.max_positions, position=cfg.model.position, rpe_clip=cfg.model.rpe_clip,
            anchor_tokens=tokenizer.anchor_ids,
        )
    )  # fmt: skip


def encode_batch(
    records: list[dict], tokenizer: NumberTokenizer, rng: random.Random | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, loss mask): right-padded `BOS a OP b = answer EOS`; the loss covers the answer tokens and
    EOS only (everything up to and including '=' is masked, as the official labels of -100)."""
    encoded = [tokenizer.encode(r["task"], r["representation"], r["a"], r["b"], r["answer"], rng) for r in records]
    width = max(len(ids) for ids, _ in encoded)
    tokens = torch.full((len(encoded), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(encoded), width - 1), dtype=torch.bool)
    for row, (ids, start) in enumerate(encoded):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, start - 1 : len(ids) - 1] = True  # target t+1 is an answer token or EOS
    return tokens[:, :-1], tokens[:, 1:], mask


def train_positions(shape: tuple[int, int], cfg: Config, rng: np.random.Generator) -> torch.Tensor | None:
    """Training position ids: a sorted random subset of [0, max_positions), or a random shift; None: 0, 1, ..."""
    batch, length = shape
    if cfg.random_position:
        rows = [np.sort(rng.choice(cfg.model.max_positions, size=length, replace=False)) for _ in range(batch)]
        return torch.from_numpy(np.stack(rows)).long()
    if cfg.random_shifted_start:
        shift = rng.integers(0, SHIFT_MAX + 1, size=batch) * (rng.random(batch) < SHIFT_PROBABILITY)
        return torch.arange(length)[None, :] + torch.from_numpy(shift)[:, None]
    return None


def by_length(records: list[dict], per_length: int | None) -> list[dict]:
    """The first `per_length` records of every length, in stored order (deterministic; None keeps all)."""
    kept: list[dict] = []
    seen: dict[int, int] = {}
    for record in records:
        count = seen.get(record["length"], 0)
        if per_length is None or count < per_length:
            kept.append(record)
            seen[record["length"]] = count + 1
    return kept


@torch.no_grad()
def evaluate(model, tokenizer: NumberTokenizer, records: list[dict], cfg: Config, output: str) -> list[tuple]:
    """(length, score) per record: greedy generation after '=', contiguous positions from 0, hints removed and
    reversal undone before scoring; dlength is the per-part variant of the from-scratch trainer."""
    was_training = model.training
    model.eval()
    scores = []
    for start in range(0, len(records), cfg.eval_batch_size):
        chunk = records[start : start + cfg.eval_batch_size]
        prompts = [tokenizer.encode(r["task"], r["representation"], r["a"], r["b"], None)[0] for r in chunk]
        answers = [tokenizer.encode(r["task"], r["representation"], r["a"], r["b"], r["answer"])[0] for r in chunk]
        # 2x the operand tokens (nupa.md §8: the budget scales with length), never less than the gold answer + EOS
        longest = max(len(p) for p in prompts)
        budget = max(2 * longest, max(len(a) - len(p) for a, p in zip(answers, prompts)))
        generated = greedy(model, prompts, budget, eos=EOS, pad=PAD)
        for record, ids in zip(chunk, generated):
            value = metrics.score(tokenizer.decode_answer(ids, output), record["answer"], output)
            value["dlength"] = value.pop("dlength_parts")
            scores.append((record["length"], value))
    model.train(was_training)
    return scores


def report(task: str, scores: list[tuple], max_length: int, prefix: str = "") -> dict[str, float]:
    means = metrics.per_length(scores)
    out = metrics.summarise(task, means, max_length)
    generic = {}
    for name in ("in", "out"):
        for metric in metrics.METRICS:
            key = f"{task}_{metric}_{name}"
            if key in out:
                generic[f"{metric}_{name}"] = out[key]
    generic["well_learned_digits"] = out[f"{task}_well_learned_digits"]
    generic["perf_preserving_digits"] = out[f"{task}_perf_preserving_digits"]
    generic["exact_match"] = float(np.mean([s["exact_match"] for _, s in scores])) if scores else 0.0
    generic["digit_match"] = float(np.mean([s["digit_match"] for _, s in scores])) if scores else 0.0
    return {f"{prefix}{key}": value for key, value in {**out, **generic}.items()}


def training_steps(cfg: Config, samples: int) -> int:
    return cfg.steps if cfg.steps is not None else max(1, cfg.epochs * (samples // cfg.batch_size))


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    manifest, train_records = read_records(ctx.data_dir, cfg.dataset, "train")
    _, test_records = read_records(ctx.data_dir, cfg.dataset, "test")
    _, val_records = read_records(ctx.data_dir, cfg.dataset, "val")
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")
    if cfg.batch_size > len(train_records):
        raise ConfigError(
            f"batch_size {cfg.batch_size} exceeds the {len(train_records)} training pairs of {cfg.dataset}"
        )
    task, output = manifest["task"], manifest["output_representation"]
    tokenizer = NumberTokenizer(number_format(cfg))
    torch.manual_seed(ctx.seed)
    model = build_model(cfg, tokenizer).to(ctx.device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    steps = training_steps(cfg, len(train_records))
    schedule = ScheduleConfig(name="cosine", warmup=min(cfg.warmup, steps - 1))
    scheduler = make_scheduler(optimizer, schedule, steps)
    model, optimizer, scheduler = ctx.strategy.prepare(model, optimizer, scheduler)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    per_epoch = len(train_records) // cfg.batch_size
    order: dict[int, np.ndarray] = {}
    for step in ctx.progress(range(start, steps), total=steps, initial=start, desc="nupa"):
        epoch, position = divmod(step, per_epoch)
        if epoch not in order:
            order.clear()
            order[epoch] = np.random.default_rng([ctx.seed, epoch]).permutation(len(train_records))
        rows = order[epoch][position * cfg.batch_size : (position + 1) * cfg.batch_size][ctx.rank :: ctx.world_size]
        rng = random.Random(f"{ctx.seed}-{step}-{ctx.rank}")  # hint offsets, random splits: per step, resumable
        inputs, targets, mask = encode_batch([train_records[i] for i in rows], tokenizer, rng)
        positions = train_positions(tuple(inputs.shape), cfg, np.random.default_rng([ctx.seed, step, ctx.rank]))
        logits = model(inputs.to(ctx.device), positions=None if positions is None else positions.to(ctx.device))
        loss = F.cross_entropy(logits[mask.to(ctx.device)], targets.to(ctx.device)[mask.to(ctx.device)])
        lr = optimizer.param_groups[0]["lr"]
        value = checked_step(ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr, hint="lower lr")
        logged = {"train/loss": value, "lr": lr}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < steps:
            val = by_length(val_records, cfg.eval_per_length)
            logged["val/exact_match"] = report(task, evaluate(model, tokenizer, val, cfg, output), 1)["exact_match"]
        ctx.log(logged, step=step)
        done = step + 1
        stop = ctx.should_stop()
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done})
        if stop and done < steps:
            raise Preempted(f"stopped at step {done} of {steps}; resume continues from its checkpoint")

    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    test = by_length(test_records, cfg.eval_per_length)
    final = report(task, evaluate(model, tokenizer, test, cfg, output), int(manifest["max_length"]))
    final["steps"] = float(steps)
    ctx.log(final, step=steps)
    return final


def score_llm(cfg: Config, ctx: RunContext) -> dict[str, float]:
    """nupa.md §3.5: zero-shot greedy answers of a local causal LM to the text prompts of the test split."""
    from components.core.answerer import CausalLMAnswerer

    if not cfg.llm.model:
        raise ConfigError(
            "mode=llm needs llm.model: the folder of a Hugging Face causal LM (config, weights, tokenizer)"
        )
    if not Path(cfg.llm.model).is_dir():
        raise ConfigError(f"llm.model: no model folder at {cfg.llm.model}")
    manifest, test_records = read_records(ctx.data_dir, cfg.dataset, "test")
    task, output = manifest["task"], manifest["output_representation"]
    records = by_length(test_records, cfg.eval_per_length)
    answerer = CausalLMAnswerer(cfg.llm.model, device=ctx.device, dtype=cfg.llm.dtype)
    scores = []
    for start in range(0, len(records), cfg.llm.batch_size):
        chunk = records[start : start + cfg.llm.batch_size]
        longest = max(max(len(r["a"]), len(r["b"])) for r in chunk)
        texts = answerer.answer([prompt(r) for r in chunk], max_new_tokens=cfg.llm.new_tokens_per_digit * longest)
        for record, text in zip(chunk, texts):
            value = metrics.score(metrics.extract(text, output), record["answer"], output)
            value.pop("dlength_parts")
            scores.append((record["length"], value))
    final = report(task, scores, int(manifest["max_length"]))
    ctx.log(final, step=0)
    return final


class Nupa:
    name = "nupa"
    Config = Config
    presets = {
        "test": {  # seconds: plumbing only
            "dataset": "tokens/nupa_add_int_smoke", "reverse": "int", "model": {"d_model": 32, "layers": 1, "heads": 2},
            "lr": 1e-3, "warmup": 5, "batch_size": 32, "steps": 20, "eval_per_length": 8,
        },
        "smoke": {  # nupa.md §6 shrunk to the 15 s budget (learning needs ~900 steps): reversed add, 2 layers, d 64
            "dataset": "tokens/nupa_add_int_smoke", "reverse": "int", "model": {"d_model": 64, "layers": 2, "heads": 4},
            "lr": 3e-3, "warmup": 50, "batch_size": 128, "steps": 300, "eval_per_length": 30,
        },
        "paper": {},  # the Config defaults: ~0.1B decoder, official ranges, one epoch
    }  # fmt: skip
    datasets = ("tokens/nupa_add_int_smoke", "tokens/nupa_add_int")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        if cfg.mode == "llm":
            return score_llm(cfg, ctx)
        return train(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        if cfg.mode == "llm":
            return None
        torch.manual_seed(0)
        tokenizer = NumberTokenizer(number_format(cfg))
        model = build_model(cfg, tokenizer)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        tokens = torch.randint(len(tokenizer), (2, 24))
        tokens[:, 0] = BOS
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        return loss.item()


component = Nupa()
