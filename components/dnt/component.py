"""DNT ("DNT: a Deeply Normalized Transformer that can be trained by Momentum SGD", arXiv 2507.17501):
train a ViT (images) or a GPT (token stream) with DNT's normalisations or as a standard pre-LN Transformer,
with any optimizer of the core table, and log how heavy-tailed the weight gradients are."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from components.core.augment import (
    imagenet_normalise,
    mixup_cutmix,
    rand_augment,
    random_erasing,
    random_resized_crop_flip,
    soft_cross_entropy,
)
from components.core.contract import RunContext
from components.core.errors import Preempted, RunError
from components.core.optim import OPTIMIZERS, build_optimizer
from components.core.schedules import make_scheduler
from components.core.shards import ImageShards
from components.core.training import checked_backward, evaluation_due
from components.dnt import tokens as token_sources
from components.dnt.config import Config
from components.dnt.diagnostics import HIST_EDGES, gradient_stats
from components.dnt.models import GPT, Spec, ViT, sigma1_wqk

DIGITS_VIT = {  # dnt.md §6: 2x2 patches -> 16 tokens + cls, d 64, 4 heads, 4 blocks, FFN 128, ReLU, no biases
    "backbone": "vit",
    "dataset": "images/digits",
    "image_size": 8,
    "channels": 1,
    "num_classes": 10,
    "patch_size": 2,
    "act": "relu",
    "precision": "fp32",
    "workers": 0,
    "tokens": "stdlib",  # what `--set backbone=gpt` reads at this scale: byte-level stdlib source text
    "lr_by_optimizer": {},
    "weight_decay_by_optimizer": {},  # the optimizer table's defaults at small scale
    "adamw_betas": (0.9, 0.999),  # the ViT's (timm) AdamW, as torch's default
    # DeiT's ImageNet recipe makes no sense on 8x8 grey digits (a flip changes a digit, mean/std are RGB's): off
    "augment": "none",
    "normalise": False,
    "randaugment_layers": 0,
    "random_erasing": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "label_smoothing": 0.0,
    "drop_path": 0.0,
}
LAST_LOSSES = 20  # final/train_loss: the mean batch loss over the last steps
HISTORY_POINTS = 1000  # at most this many (step, loss) points are kept for the curves plot


def learning_rate(cfg: Config) -> float:
    if cfg.lr is not None:
        return cfg.lr
    return cfg.lr_by_optimizer.get(cfg.optimizer, OPTIMIZERS[cfg.optimizer].lr)


def weight_decay(cfg: Config) -> float:
    if cfg.weight_decay is not None:
        return cfg.weight_decay
    return cfg.weight_decay_by_optimizer.get(cfg.optimizer, OPTIMIZERS[cfg.optimizer].weight_decay)


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The core table's optimizer at the component's lr / weight decay; AdamW with the Config's betas."""
    betas = cfg.adamw_betas if cfg.optimizer == "adamw" else None
    return build_optimizer(cfg.optimizer, model, lr=learning_rate(cfg), weight_decay=weight_decay(cfg), betas=betas)


def model_spec(cfg: Config) -> Spec:
    return Spec(
        variant=cfg.variant,
        depth=cfg.depth,
        dim=cfg.dim,
        heads=cfg.heads,
        ffn_dim=cfg.ffn_dim,
        norm_type=cfg.norm_type,
        norm_eps=cfg.norm_eps,
        act=cfg.act,
        bias=cfg.bias,
        drop_path=cfg.drop_path if cfg.backbone == "vit" else 0.0,  # DeiT's stochastic depth; nanoGPT has none
    )


def vocab_size(cfg: Config) -> int:
    return {"stdlib": 256, "markov": cfg.markov_symbols}.get(cfg.tokens, cfg.vocab_size)


def build_model(cfg: Config) -> nn.Module:
    if cfg.backbone == "vit":
        return ViT(model_spec(cfg), cfg.image_size, cfg.channels, cfg.patch_size, cfg.num_classes)
    return GPT(model_spec(cfg), vocab_size(cfg), cfg.seq_len)


def to_input(images: torch.Tensor, normalise: bool = False) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, H, W, C] -> float [B, H, W, C]: ImageNet's mean/std (normalise, RGB only)
    or [-1, 1]. Training and evaluation both go through here, so they see the same scale."""
    if normalise:
        return imagenet_normalise(images)
    x = images.float().div(127.5).sub(1.0)
    return rearrange(x, "b h w -> b h w 1") if x.ndim == 3 else x


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction=reduction)


def training_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against hard labels, or against soft targets [B, K] (mixup / cutmix / label smoothing)."""
    if targets.is_floating_point():
        return soft_cross_entropy(logits, targets)
    return cross_entropy(logits, targets)


def uses_soft_targets(cfg: Config) -> bool:
    return cfg.backbone == "vit" and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0 or cfg.label_smoothing > 0)


def recipe_batch(
    cfg: Config, images: np.ndarray, labels: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch through DeiT's recipe, in timm's order: random-resized crop + flip, RandAugment (uint8),
    normalisation, random erasing (per image), then mixup / cutmix over the batch with label-smoothed soft
    targets. Every piece the Config turns off is skipped; with all off this is to_input and the hard labels."""
    if cfg.augment == "random-resized-crop-flip":
        images = random_resized_crop_flip(images, cfg.image_size, rng, scale=cfg.crop_scale)
    images = rand_augment(images, rng, cfg.randaugment_layers, cfg.randaugment_magnitude, cfg.randaugment_magnitude_std)
    inputs = to_input(torch.from_numpy(np.ascontiguousarray(images)), cfg.normalise)
    if cfg.random_erasing > 0:
        inputs = random_erasing(inputs, cfg.random_erasing, rng)
    if not uses_soft_targets(cfg):
        return inputs, labels
    inputs, targets, _, _ = mixup_cutmix(
        inputs,
        labels,
        cfg.num_classes,
        rng,
        cfg.mixup_alpha,
        cfg.cutmix_alpha,
        cfg.mix_switch_prob,
        cfg.label_smoothing,
    )
    return inputs, targets


class RecipeBatches(torch.utils.data.IterableDataset):
    """This rank's training batches start, start + 1, ... of `shards` (ImageShards' order), each through
    recipe_batch with its generator seeded per (seed, batch, rank), so a resumed run sees the same crops, mixes
    and erasures. The recipe runs in the DataLoader's workers (decoding and ~15 ms per 224 px image of PIL work
    stay off the training process): worker w of W makes batches start + w, start + w + W, ..., which the loader
    takes round-robin, so the batches and their draws are the same for any number of workers."""

    def __init__(self, cfg: Config, shards: ImageShards, seed: int, start: int, rank: int, world_size: int):
        super().__init__()
        self.cfg, self.shards, self.seed, self.start = cfg, shards, seed, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = torch.utils.data.get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        batch = self.start + worker_id
        while True:
            indices = self.shards.batch_indices(batch, self.cfg.batch_size, self.seed, self.rank, self.world_size)
            rng = np.random.default_rng([self.seed, batch, self.rank])
            labels = torch.from_numpy(self.shards.labels[indices])
            yield recipe_batch(self.cfg, self.shards.images(indices), labels, rng)
            batch += workers


class ImageTask:
    """V-DNT: classification of a prepared image dataset (digits at smoke scale)."""

    def __init__(self, cfg: Config, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx
        self.splits = {split: ImageShards(ctx.data_dir, cfg.dataset, split) for split in ("train", "val", "test")}
        train = self.splits["train"]
        shape = tuple(train.shape)
        height, width = shape[:2]
        channels = shape[2] if len(shape) == 3 else 1
        if (height, width) != (cfg.image_size, cfg.image_size):
            raise RunError(
                f"{cfg.dataset} holds {height}x{width} images: set image_size={height} (and a patch_size "
                "that divides it)"
                if height == width
                else f"{cfg.dataset} holds non-square images"
            )
        if channels != cfg.channels:
            raise RunError(f"{cfg.dataset} has {channels} channel(s): set channels={channels}")
        if len(train.classes) != cfg.num_classes:
            raise RunError(f"{cfg.dataset} has {len(train.classes)} classes: set num_classes={len(train.classes)}")
        self.facts = {
            "dataset": cfg.dataset,
            "train": len(train),
            "val": len(self.splits["val"]),
            "test": len(self.splits["test"]),
        }

    def stream(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        train = self.splits["train"]
        train._check_batching(self.cfg.batch_size, self.ctx.rank, self.ctx.world_size, start)  # as its loader does
        batches = RecipeBatches(
            self.cfg, train, seed=self.ctx.seed, start=start, rank=self.ctx.rank, world_size=self.ctx.world_size
        )
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=self.cfg.workers)
        for inputs, targets in loader:
            yield inputs.to(self.ctx.device), targets.to(self.ctx.device)

    @torch.no_grad()
    def _split(self, model: nn.Module, split: str, autocast) -> tuple[float, float]:
        shards = self.splits[split]
        total, correct = 0.0, 0
        for start in range(0, len(shards), self.cfg.eval_batch_size):
            indices = np.arange(start, min(start + self.cfg.eval_batch_size, len(shards)))
            images = to_input(torch.from_numpy(shards.images(indices)), self.cfg.normalise).to(self.ctx.device)
            labels = torch.from_numpy(shards.labels[indices]).to(self.ctx.device)
            with autocast():
                logits = model(images)
            total += cross_entropy(logits, labels, "sum").item()
            correct += (logits.argmax(-1) == labels).sum().item()
        return total / len(shards), correct / len(shards)

    def evaluate(self, model: nn.Module, autocast, final: bool = False) -> dict[str, float]:
        metrics = dict(zip(("val/loss", "val/acc"), self._split(model, "val", autocast)))
        if final and len(self.splits["test"]):  # ImageNet's layout has train/ and val/ only: no test split
            metrics["test/acc"] = self._split(model, "test", autocast)[1]
        return metrics


class TokenTask:
    """L-DNT: next-token prediction on a token stream (byte-level stdlib text or the Markov chain at smoke scale)."""

    def __init__(self, cfg: Config, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx
        self.data = token_sources.load_tokens(
            cfg.tokens,
            data_dir=ctx.data_dir,
            dataset=cfg.dataset,
            vocab_size=cfg.vocab_size,
            markov_symbols=cfg.markov_symbols,
        )
        if len(self.data.train) <= cfg.seq_len + 1:
            raise RunError(f"the {self.data.source} training split has {len(self.data.train)} tokens: lower seq_len")
        self.windows = self.data.val_windows(cfg.eval_batches * cfg.eval_batch_size, cfg.seq_len)
        self.facts = {"source": self.data.source, **self.data.facts, "val_windows": len(self.windows)}

    def stream(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = start
        while True:
            inputs, targets = self.data.batch(
                step, self.cfg.batch_size, self.cfg.seq_len, self.ctx.seed, self.ctx.rank, self.ctx.world_size
            )
            yield torch.from_numpy(inputs).to(self.ctx.device), torch.from_numpy(targets).to(self.ctx.device)
            step += 1

    @torch.no_grad()
    def evaluate(self, model: nn.Module, autocast, final: bool = False) -> dict[str, float]:
        total, correct, count = 0.0, 0, 0
        for start in range(0, len(self.windows), self.cfg.eval_batch_size):
            window = torch.from_numpy(self.windows[start : start + self.cfg.eval_batch_size]).to(self.ctx.device)
            inputs, targets = window[:, :-1], window[:, 1:]
            with autocast():
                logits = model(inputs)
            total += cross_entropy(logits, targets, "sum").item()
            correct += (logits.argmax(-1) == targets).sum().item()
            count += targets.numel()
        metrics = {"val/loss": total / count, "val/acc": correct / count}
        if "entropy_rate" in self.data.facts:
            metrics["val/loss_floor"] = self.data.facts["entropy_rate"]  # no model can go below it
        return metrics


def write_plots(run_dir: Path, history: dict, histograms: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    axes[0].plot(history["steps"], history["loss"], label="train (batch)")
    if history["val_steps"]:
        axes[0].plot(history["val_steps"], history["val_loss"], "o-", label="val")
    axes[0].set(xlabel="optimizer step", ylabel="cross-entropy", title=title)
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    for name, counts in histograms.items():
        if counts.sum():
            axes[1].plot(centres, counts / counts.sum(), label=name)
    axes[1].set(
        xlabel="log10 |gradient entry| of weight matrices (zeros at the left edge)",
        ylabel="fraction",
        title="gradient magnitudes",
    )
    axes[1].legend()
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "training.png")
    plt.close(fig)


def evaluate(task, model: nn.Module, autocast, final: bool = False) -> dict[str, float]:
    """The task's evaluation with the model in eval mode (drop-path off), back in training mode after."""
    model.eval()
    try:
        return task.evaluate(model, autocast, final=final)
    finally:
        model.train()


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    task = ImageTask(cfg, ctx) if cfg.backbone == "vit" else TokenTask(cfg, ctx)
    if cfg.batch_size % ctx.world_size:
        raise RunError(f"batch_size {cfg.batch_size} is not divisible by the world size {ctx.world_size}")
    device_type = "cuda" if str(ctx.device).startswith("cuda") else "cpu"

    def autocast():
        if cfg.precision == "bf16":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return nullcontext()

    torch.manual_seed(ctx.seed)
    net = build_model(cfg).to(ctx.device)
    optimizer = make_optimizer(cfg, net)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.steps)
    # the strategy clips with grad_clip in its step (DeepSpeed inside its engine, across ZeRO's partitions)
    model, optimizer, scheduler = ctx.strategy.prepare(net, optimizer, scheduler, grad_clip=cfg.grad_clip)
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    state = (
        resumed["state"]
        if resumed
        else {
            "data_position": 0,
            "init_stats": {},
            "last_losses": [],
            "history": {"steps": [], "loss": [], "val_steps": [], "val_loss": []},
        }
    )
    start = state["data_position"]
    histograms = {name: np.asarray(counts) for name, counts in state.get("histograms", {}).items()}
    every = max(1, cfg.steps // HISTORY_POINTS)
    stream = task.stream(start)
    label = f"dnt {cfg.backbone}/{cfg.variant}/{cfg.optimizer}"
    for step in ctx.progress(range(start, cfg.steps), total=cfg.steps, initial=start, desc=label):
        inputs, targets = next(stream)
        lr = optimizer.param_groups[0]["lr"]
        with autocast():
            loss = training_loss(model(inputs), targets)
        value = checked_backward(
            ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr, hint="lower lr or weight decay"
        )
        metrics = {"train/loss": value, "lr": lr}
        if step == 0 or (cfg.grad_stats_every and (step + 1) % cfg.grad_stats_every == 0):
            # before the step, which zeroes the gradients; full_grad gathers ZeRO's partitions
            stats, histogram = gradient_stats(net, ctx.strategy.full_grad)
            metrics.update(stats)
            if stats:
                histograms["init" if step == 0 else "last"] = histogram
            if step == 0:
                state["init_stats"] = stats
        grad_norm = ctx.strategy.step()
        if grad_norm is not None:
            metrics["grad/norm"] = grad_norm  # before clipping
        done = step + 1
        if evaluation_due(done, cfg.steps, cfg.eval_every, ctx.evaluations):
            metrics.update(evaluate(task, model, autocast))
            metrics["weights/sigma1_wqk_max"] = max(sigma1_wqk(net))
            state["history"]["val_steps"].append(done)
            state["history"]["val_loss"].append(metrics["val/loss"])
        ctx.log(metrics, step=step)
        state["last_losses"] = (state["last_losses"] + [value])[-LAST_LOSSES:]
        if step % every == 0:
            state["history"]["steps"].append(step)
            state["history"]["loss"].append(value)
        state["data_position"] = done
        stop = ctx.should_stop()  # once per step: the answer acted on is the one every rank agreed
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            state["histograms"] = {name: counts.tolist() for name, counts in histograms.items()}
            ctx.checkpoint.save(done, {"state": state})
        if stop and done < cfg.steps:
            raise Preempted(f"stopped at step {done} of {cfg.steps}; resume continues from its checkpoint")

    final = evaluate(task, model, autocast, final=True)
    final["final/train_loss"] = float(np.mean(state["last_losses"]))
    final["weights/sigma1_wqk_max"] = max(sigma1_wqk(net))
    final.update(
        {
            f"{key}_init": value
            for key, value in state["init_stats"].items()
            if key in ("grad/tail_ratio", "grad/q50", "grad/q99_9", "grad/max")
        }
    )
    if device_type == "cuda":
        final["mem/peak_gb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    ctx.log(final, step=cfg.steps)
    state["history"]["val_steps"].append(cfg.steps)
    state["history"]["val_loss"].append(final["val/loss"])
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    if ctx.is_main:
        (ctx.run_dir / "data.json").write_text(json.dumps(task.facts, indent=2, sort_keys=True) + "\n")
        np.savez(
            ctx.run_dir / "grad_hist.npz",
            edges=HIST_EDGES,
            **{name: np.asarray(counts) for name, counts in histograms.items()},
        )
        write_plots(ctx.run_dir, state["history"], histograms, label)
    return final


class DNT:
    name = "dnt"
    Config = Config
    own_defaults = {"lr": learning_rate, "weight_decay": weight_decay}  # the paper's per-optimizer recipe
    presets = {
        "test": {
            **DIGITS_VIT,
            "depth": 2,
            "dim": 32,
            "heads": 2,
            "ffn_dim": 64,
            "steps": 20,
            "batch_size": 32,
            "seq_len": 32,
            "schedule": {"name": "cosine", "warmup": 2, "min_ratio": 0.0},
            "eval_every": 0,
            "eval_batches": 2,
            "eval_batch_size": 256,
            "grad_stats_every": 0,
        },  # plumbing
        "smoke": {
            **DIGITS_VIT,
            "depth": 4,
            "dim": 64,
            "heads": 4,
            "ffn_dim": 128,
            "steps": 300,
            "batch_size": 64,
            "seq_len": 32,
            "schedule": {"name": "cosine", "warmup": 30, "min_ratio": 0.0},
            "eval_every": 100,
            "eval_batches": 4,
            "eval_batch_size": 512,
            "grad_stats_every": 100,
        },  # dnt.md §6: the ~0.2M-parameter V-DNT, 300 steps of batch 64
        # the Config defaults: L-DNT-Small (GPT-2 124M) on OpenWebText, mSGDW (EMA form) at LR 1.0. The schedule is
        # spelt out so that `--set schedule.warmup=...` keeps its other keys (an override merges into the preset)
        "paper": {"schedule": Config().schedule.model_dump(mode="json")},
    }
    datasets = ("images/digits",)

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,) if cfg.backbone == "vit" else ()  # token streams are built or checked by the run

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return train(cfg, ctx)

    def random_step(self, cfg: Config) -> float:
        torch.manual_seed(0)
        model = build_model(cfg)
        optimizer = make_optimizer(cfg, model)
        if cfg.backbone == "vit":
            images = torch.randint(0, 256, (2, cfg.image_size, cfg.image_size, cfg.channels), dtype=torch.uint8)
            inputs = to_input(images, cfg.normalise)
            loss = cross_entropy(model(inputs), torch.randint(0, cfg.num_classes, (2,)))
        else:
            tokens = torch.randint(0, vocab_size(cfg), (2, min(cfg.seq_len, 64) + 1))  # a short window, same model
            loss = cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        optimizer.step()
        return loss.item()


component = DNT()
