"""Pyramid Flow (Pyramidal Flow Matching, arXiv 2410.05954): one DiT trained on a spatial pyramid of flow
stages with block-correlated renoising at stage jumps, generating video autoregressively over a temporal
pyramid of its own history."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch

from components.core.contract import RunContext
from components.core.errors import ConfigError, DataError, Preempted, RunError
from components.core.latents import LatentShards, decoder_for
from components.core.optim import build_optimizer
from components.core.schedules import ScheduleConfig, make_scheduler
from components.core.training import checked_backward
from components.pyramid_flow import plots
from components.pyramid_flow.config import Config
from components.pyramid_flow.model import PyramidDiT
from components.pyramid_flow.pyramid import (
    Layout,
    TrainingBatch,
    latent_pyramid,
    per_sample_loss,
    training_batch,
    up,
    zero_loss,
)
from components.pyramid_flow.sampler import generate, oracle_velocity, sample_unit, sampling_cost
from components.pyramid_flow.schedule import StageTable, block_noise, stage_table

VAL_SEED = 20241008  # the val items (units, noise, timesteps, corruption) are the same for every run and seed
SQUARES = {
    "dataset": "video/moving_squares",
    "width": 64,
    "depth": 3,
    "heads": 4,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "batch_size": 32,
    "warmup": 0,
    "grid_clips": 6,
    "jump_draws": 100000,
    "precision": "fp32",
}
PAPER_LATENT = (2, 16, 8, 8)  # random_step: 2 latent frames of the VAE's 16 channels on an 8x8 grid (cheap tokens)


def table_for(cfg: Config) -> StageTable:
    return stage_table(cfg.stages, cfg.stage_range, cfg.gamma, cfg.shift, cfg.train_timesteps)


def build_model(cfg: Config, shape: Sequence[int]) -> PyramidDiT:
    frames, channels, height, width = shape
    try:
        layout = Layout(cfg.stages, cfg.patch, height, width)
    except ValueError as error:
        raise ConfigError(f"pyramid_flow: {error}: lower stages or patch, or prepare larger latents") from None
    return PyramidDiT(layout, channels, cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, frames)


def build_optimizer_for(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    optimizer = build_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        for group in optimizer.param_groups:
            group["betas"] = tuple(cfg.betas)
    return optimizer


def stage_of_rows(cfg: Config, rows: np.ndarray) -> np.ndarray:
    """Stage of global batch rows: columns of the batch cycle through stages in sample_ratios proportions."""
    columns = np.repeat(np.arange(cfg.stages), cfg.sample_ratios)
    return columns[rows % len(columns)]


def val_batches(
    cfg: Config, table: StageTable, layout: Layout, clips: torch.Tensor, history_clips: torch.Tensor | None = None
) -> list[TrainingBatch]:
    """Every val clip at every stage, with fixed units, noise, timesteps and corruption (seeded by VAL_SEED,
    stage and chunk only, so swapping the history source changes nothing else)."""
    count, frames = clips.shape[:2]
    units = np.random.default_rng(VAL_SEED).integers(0, frames, size=(cfg.stages, count))
    batches = []
    for k in range(cfg.stages):
        for chunk, first in enumerate(range(0, count, cfg.eval_batch_size)):
            rows = slice(first, first + cfg.eval_batch_size)
            generator = torch.Generator().manual_seed(VAL_SEED + 1000 * k + chunk)
            size = len(clips[rows])
            batches.append(
                training_batch(
                    clips[rows],
                    np.full(size, k),
                    units[k, rows],
                    table,
                    layout,
                    cfg.corrupt_ratio,
                    generator,
                    None if history_clips is None else history_clips[rows],
                )
            )
    return batches


@torch.no_grad()
def evaluate(
    model: PyramidDiT, batches: Sequence[TrainingBatch], cfg: Config, device: str, prefix: str = "val"
) -> dict[str, float]:
    """Per-stage mean loss and zero-predictor loss; the totals weight stages by sample_ratios (the training mix)."""
    losses = {k: [] for k in range(cfg.stages)}
    zeros = {k: [] for k in range(cfg.stages)}
    for batch in batches:
        on = batch.to(device)
        with autocast(cfg, device):
            prediction = model(on.packed, on.tau)
        loss = per_sample_loss(prediction.float(), on).cpu()
        for k in range(cfg.stages):
            chosen = batch.stage == k
            losses[k].append(loss[chosen])
            zeros[k].append(zero_loss(batch)[chosen])
    weights = np.array(cfg.sample_ratios, dtype=float) / sum(cfg.sample_ratios)
    out: dict[str, float] = {}
    for k in range(cfg.stages):
        out[f"{prefix}/loss_stage{k}"] = torch.cat(losses[k]).mean().item()
        out[f"{prefix}/zero_loss_stage{k}"] = torch.cat(zeros[k]).mean().item()
    out[f"{prefix}/loss"] = float(sum(w * out[f"{prefix}/loss_stage{k}"] for k, w in enumerate(weights)))
    out[f"{prefix}/zero_loss"] = float(sum(w * out[f"{prefix}/zero_loss_stage{k}"] for k, w in enumerate(weights)))
    out[f"{prefix}/loss_ratio_vs_zero"] = out[f"{prefix}/loss"] / out[f"{prefix}/zero_loss"]
    return out


def jump_statistics(table: StageTable, draws: int, seed: int = 0) -> dict[str, float]:
    """Monte Carlo of the jump (no model): the exact end point of stage k-1 for a fixed clean latent, jumped
    into stage k, against stage k's training start law b Up(L_{k-1}) + s_k n. Returns the largest error of
    the within-block covariance (target s_k^2 I) and of the mean, over all stages."""
    generator = torch.Generator().manual_seed(seed)
    side = 2**table.stages  # one channel; the lowest level is 2x2
    clean = torch.randn(1, side, side, generator=generator, dtype=torch.float64)
    levels = latent_pyramid(clean, table.stages)
    cov_err, mean_err = 0.0, 0.0
    for k in range(1, table.stages):
        a = 1.0 - table.end[k - 1]
        previous = levels[k - 1]
        noise = torch.randn(draws, *previous.shape, generator=generator, dtype=torch.float64)
        end_point = (1 - a) * noise + a * previous
        jumped = table.alpha[k] * up(end_point) + table.beta[k] * block_noise(
            tuple(up(end_point).shape), table.gamma, generator, torch.float64
        )
        height, width = up(previous).shape[-2:]
        blocks = (jumped - (1 - table.start[k]) * up(previous)).reshape(draws, height // 2, 2, width // 2, 2)
        blocks = blocks.permute(0, 1, 3, 2, 4).reshape(draws, -1, 4)  # [draws, blocks, 4]
        cov = torch.einsum("nbi,nbj->bij", blocks, blocks) / draws
        cov_err = max(cov_err, (cov - table.start[k] ** 2 * torch.eye(4, dtype=torch.float64)).abs().max().item())
        mean_err = max(mean_err, blocks.mean(dim=0).abs().max().item())
    return {"jump/cov_err": cov_err, "jump/mean_err": mean_err}


def to_images(latents: torch.Tensor, encoder: dict) -> torch.Tensor:
    """Latent clips [N, T, C, h, w] -> images in [0, 1]: decoded with the stand-in's exact inverse, else the
    first latent channel min-max scaled per clip (a VAE needs its own decoder)."""
    decoder = decoder_for(encoder)
    if decoder is not None:
        return decoder.decode(latents)
    first = latents[:, :, :1]
    low = first.amin(dim=(1, 2, 3, 4), keepdim=True)
    high = first.amax(dim=(1, 2, 3, 4), keepdim=True)
    return (first - low) / (high - low).clamp_min(1e-8)


def square_errors(images: torch.Tensor, square: int) -> torch.Tensor:
    """Per frame, the MSE to the nearest one-square frame (a white square x square block on black, at any
    position): 0 for every real moving-squares frame, a sample-quality score for generated ones."""
    frames = images.reshape(-1, images.shape[-2] * images.shape[-1]).to(torch.float64)
    height, width = images.shape[-2:]
    templates = torch.zeros(height - square + 1, width - square + 1, height, width, dtype=torch.float64)
    for y in range(height - square + 1):
        for x in range(width - square + 1):
            templates[y, x, y : y + square, x : x + square] = 1.0
    templates = templates.reshape(-1, height * width)
    distance = (frames**2).sum(1, keepdim=True) - 2 * frames @ templates.T + (templates**2).sum(1)[None]
    return distance.min(dim=1).values / (height * width)


def autocast(cfg: Config, device: str):
    if cfg.precision == "bf16":
        return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16)
    return nullcontext()


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    train_split = LatentShards(ctx.data_dir, cfg.dataset, "train")
    val_split = LatentShards(ctx.data_dir, cfg.dataset, "val")
    frames, channels = train_split.shape[:2]
    # before any compute: a split that cannot feed a batch, or no val clip to score
    if cfg.batch_size > len(train_split):
        raise DataError(
            f"pyramid_flow: batch_size {cfg.batch_size} exceeds the {len(train_split)} train clips of "
            f"'{cfg.dataset}': lower batch_size or prepare more clips"
        )
    if len(val_split) == 0:
        raise DataError(
            f"pyramid_flow: dataset '{cfg.dataset}' has no val clips to score: re-prepare it with val_fraction > 0"
        )
    if cfg.batch_size % (ctx.world_size * sum(cfg.sample_ratios)) and ctx.world_size > 1:
        raise RunError(
            f"batch_size {cfg.batch_size} must be a multiple of world size x sum(sample_ratios) = "
            f"{ctx.world_size * sum(cfg.sample_ratios)}"
        )
    table = table_for(cfg)
    torch.manual_seed(ctx.seed)
    net = build_model(cfg, train_split.shape).to(ctx.device)
    layout = net.layout
    if ctx.is_main:
        plots.write_stage_table(
            table, layout.sizes, layout.tokens, cfg.sample_steps, cfg.video_sample_steps, ctx.run_dir
        )
    optimizer = build_optimizer_for(cfg, net)
    scheduler = make_scheduler(optimizer, ScheduleConfig(name="constant", warmup=cfg.warmup), cfg.steps)
    # DeepSpeed clips inside its engine step, where ZeRO keeps the gradients; plain and DDP clip here, below
    model, optimizer, scheduler = ctx.strategy.prepare(net, optimizer, scheduler, grad_clip=cfg.grad_clip)

    val_clips = torch.from_numpy(val_split.clips(np.arange(min(cfg.val_clips, len(val_split)))))
    val_set = val_batches(cfg, table, layout, val_clips)
    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    state = resumed or {"data_position": 0, "history": [], "init": evaluate(net, val_set, cfg, ctx.device)}
    start, history = state["data_position"], state["history"]
    stream = train_split.batches(
        cfg.batch_size, seed=ctx.seed, start_batch=start, rank=ctx.rank, world_size=ctx.world_size
    )
    for step in ctx.progress(range(start, cfg.steps), total=cfg.steps, initial=start, desc="pyramid_flow"):
        clips = torch.from_numpy(next(stream))
        rows = ctx.rank + np.arange(len(clips)) * ctx.world_size
        rng = np.random.default_rng([ctx.seed, step, ctx.rank])
        units = rng.integers(0, frames, size=len(clips))
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch = training_batch(clips, stage_of_rows(cfg, rows), units, table, layout, cfg.corrupt_ratio, generator).to(
            ctx.device
        )
        with autocast(cfg, ctx.device):
            prediction = model(batch.packed, batch.tau)
        losses = per_sample_loss(prediction.float(), batch)
        loss = losses.mean()
        lr = optimizer.param_groups[0]["lr"]
        value = checked_backward(
            ctx, loss, step=step, limit=cfg.divergence_limit, lr=lr, hint="lower lr or raise warmup"
        )
        grad_norm = ctx.strategy.step()  # clipped to cfg.grad_clip by the strategy (DeepSpeed: in its engine)
        metrics = {"train/loss": value, "lr": lr}
        if grad_norm is not None:
            metrics["grad/norm"] = grad_norm  # before clipping
        for k in range(cfg.stages):
            chosen = batch.stage == k
            if chosen.any():
                metrics[f"train/loss_stage{k}"] = losses.detach()[chosen].mean().item()
        history.append(
            {
                "step": step,
                "loss": value,
                **{key.split("/")[1]: v for key, v in metrics.items() if key.startswith("train/loss_stage")},
            }
        )
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            metrics.update(evaluate(net, val_set, cfg, ctx.device))
        ctx.log(metrics, step=step)
        stop = ctx.should_stop()  # once per step: the answer acted on is the one every rank agreed
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {**state, "data_position": done, "history": history})
        if stop and done < cfg.steps:
            raise Preempted(f"stopped at step {done} of {cfg.steps}; resume continues from its checkpoint")

    final = evaluate(net, val_set, cfg, ctx.device)
    init = state["init"]
    final["val/loss_init"] = init["val/loss"]
    final["val/loss_ratio_init"] = init["val/loss_ratio_vs_zero"]
    for k in range(cfg.stages):
        final[f"val/loss_ratio_stage{k}"] = final[f"val/loss_stage{k}"] / final[f"val/zero_loss_stage{k}"]
    # check 6 (logged): the same items with every clip's history taken from another val clip
    shuffled = evaluate(net, val_batches(cfg, table, layout, val_clips, val_clips.roll(1, dims=0)), cfg, ctx.device)
    final["val/loss_other_history"] = shuffled["val/loss"]
    final["val/history_gain"] = shuffled["val/loss"] - final["val/loss"]
    with autocast(cfg, ctx.device):
        final.update(sampling_cost(net, table, channels, cfg.cost_steps, ctx.device))
    final.update(jump_statistics(table, cfg.jump_draws))
    x1 = val_clips[:1, 0].to(torch.float64)
    landed = sample_unit(
        oracle_velocity(x1, table),
        table,
        cfg.sample_steps,
        tuple(x1.shape),
        torch.Generator().manual_seed(ctx.seed),
        dtype=torch.float64,
    )
    final["sample/oracle_max_err"] = (landed - x1).abs().max().item()
    with autocast(cfg, ctx.device):
        samples = generate(
            net,
            table,
            cfg.sample_clips,
            frames,
            channels,
            cfg.sample_steps,
            cfg.video_sample_steps,
            torch.Generator().manual_seed(ctx.seed),
            ctx.device,
        ).cpu()
    images = to_images(samples, train_split.encoder)
    if train_split.manifest["source"] == "moving-squares" and decoder_for(train_split.encoder) is not None:
        errors = square_errors(images, train_split.manifest["options"]["square"]).reshape(cfg.sample_clips, frames)
        final["sample/square_mse"] = errors.mean().item()
        final["sample/square_mse_first"] = errors[:, 0].mean().item()
        if frames > 1:
            final["sample/square_mse_later"] = errors[:, 1:].mean().item()
    ctx.log(final, step=cfg.steps)
    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")
    if ctx.is_main:
        plots.write_losses(history, cfg.stages, ctx.run_dir)
        count = min(cfg.grid_clips, cfg.sample_clips)
        plots.write_sample_grid(
            images[:count],
            to_images(val_clips[:2], train_split.encoder),
            ctx.run_dir,
            f"pyramid_flow, {cfg.steps} steps: 2 real val clips,\n{count} samples "
            f"(Euler steps {list(cfg.sample_steps)}, then {list(cfg.video_sample_steps)})",
        )
    return final


class PyramidFlow:
    name = "pyramid_flow"
    Config = Config
    presets = {
        "test": {
            **SQUARES,
            "steps": 4,
            "batch_size": 8,
            "val_clips": 8,
            "grid_clips": 2,
            "sample_clips": 2,
            "jump_draws": 2000,
            "sample_steps": (2, 2, 2),
            "video_sample_steps": (1, 1, 1),
            "cost_steps": 2,
        },  # seconds: plumbing
        "smoke": {**SQUARES, "steps": 400},  # pyramid_flow.md §6's model and recipe; 400 steps is ~20 s here
        "paper": {},  # the Config defaults: the released AR recipe on a 24-layer, 1536-wide DiT over VAE latents
    }
    datasets = ("video/moving_squares", "video/clips_384p")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return train(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        """One AdamW step of the paper-scale DiT on a random batch (the stage mix, units 0 and 1).

        The whole 24-block stack runs forward, but only the last block and the output layers train here: a full
        AdamW step of the 685M parameters costs ~85 s and 11.5 GB on one CPU thread, too much for a test."""
        torch.manual_seed(0)
        model = build_model(cfg, PAPER_LATENT)
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith((f"blocks.{cfg.depth - 1}.", "norm.", "head.")))
        optimizer = build_optimizer_for(cfg, model)
        table = table_for(cfg)
        count = sum(cfg.sample_ratios)
        clips = torch.randn(count, *PAPER_LATENT)
        batch = training_batch(
            clips,
            stage_of_rows(cfg, np.arange(count)),
            np.arange(count) % 2,
            table,
            model.layout,
            cfg.corrupt_ratio,
            torch.Generator().manual_seed(0),
        )
        loss = per_sample_loss(model(batch.packed, batch.tau), batch).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        optimizer.step()
        return loss.item()


component = PyramidFlow()
