"""OPZO (arXiv 2407.12516): online pseudo-zeroth-order training of spiking neural networks.

Every method runs on the same online substrate (components/snn/online.py: per-step LIF, presynaptic traces):
at each time step one forward pass, the output error e = dL/do (closed form), and a weight gradient per layer
of the three-factor form trace x surrogate derivative x top-down signal, accumulated over T and applied once
per batch (OTTT_A) or at every step (OTTT_O). The methods differ only in the hidden layers' top-down signal:
opzo g = M e with M learned from noise (feedback.py), dfa g = B e with B fixed random, dkp g = B e with B
trained Kolen-Pollack style (dB = s e^T, with the weights' optimizer and decay), zosp g = z L / alpha,
and bp the exact spatial backprop of the step's loss (autograd through the layers of that step, never through
time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from components.core.augment import channel_stats, pad_crop_flip
from components.core.contract import RunContext
from components.core.errors import ConfigError, Preempted, RunError
from components.core.optim import build_optimizer
from components.core.schedules import make_scheduler
from components.core.shards import ImageShards
from components.core.training import raise_if_diverged
from components.opzo.config import Config
from components.opzo.feedback import (
    cosine,
    output_error,
    per_sample_loss,
    sample_noise,
    top_down,
    update_feedback,
    zo_signal,
)
from components.opzo.network import OnlineNet
from components.snn.online import OnlineLIF, OnlineState

NOISY = ("opzo", "zosp")  # the methods that train with noise injected; bp and dfa train clean
DIGITS = {
    "dataset": "images/digits",
    "image_size": 8,
    "arch": "fc",
    "widths": (128, 128),
    "pool_after": (),
    "steps": 4,
    "optimizer": "sgd",
    "lr": 0.01,  # momentum 0.9: about plain SGD at 0.1 (0.005, i.e. the spec's 0.05, ends near 0.90 in 12 epochs)
    "weight_decay": 0.0,
    "schedule": {"name": "constant"},
    "augment": "none",
    "normalise": False,
    "batch_size": 32,
}  # opzo.md §6: FC 64-128-128-10, T = 4, batch 32, alpha 0.1, lambda 0.99


def is_events(shape: tuple[int, ...]) -> bool:
    """Event frames are stored [T, 2, H, W] (pipelines/datasets/events.py); images [H, W] or [H, W, 3]."""
    return len(shape) == 4


def frame_shape(shape: tuple[int, ...], arch: str) -> tuple[int, ...]:
    """The per-step input shape the network sees."""
    per_step = shape[1:] if is_events(shape) else ((1, *shape) if len(shape) == 2 else (shape[2], *shape[:2]))
    return (int(np.prod(per_step)),) if arch == "fc" else tuple(per_step)


def to_input(images: torch.Tensor, arch: str, stats: tuple | None = None) -> torch.Tensor:
    """uint8 samples -> float network input: images [B, C, H, W] in [0, 1] (normalised with the train split's
    stats when given), each step sees the same frame (direct coding); event frames [B, T, 2, H, W] as counts."""
    if images.dim() == 5:  # events: spike counts per pixel and polarity, one frame per step
        x = images.float()
        return x.flatten(2) if arch == "fc" else x
    x = images.float() / 255.0
    if x.dim() == 3:
        x = x.unsqueeze(1)
    else:
        if stats is not None:
            mean, std = stats
            x = (x - mean.to(x.device)) / std.to(x.device)
        x = x.permute(0, 3, 1, 2)
    return x.flatten(1) if arch == "fc" else x


def frame(x: torch.Tensor, t: int, arch: str) -> torch.Tensor:
    events = x.dim() == (3 if arch == "fc" else 5)
    return x[:, t] if events else x


def build_network(cfg: Config, data_shape: tuple[int, ...], classes: int) -> OnlineNet:
    neuron = OnlineLIF(cfg.tau, cfg.v_threshold, "sigmoid", cfg.surrogate_alpha)
    return OnlineNet(
        cfg.arch, frame_shape(data_shape, cfg.arch), cfg.widths, classes, cfg.pool_after, cfg.spike_scale, neuron,
        learned_feedback=cfg.feedback == "dkp",
    )  # fmt: skip


def draw_noise(net: OnlineNet, cfg: Config, batch: int, t: int, previous: list | None, device) -> list:
    """Independent z_l per hidden layer; with dual noise, odd steps reuse the previous step's draw negated."""
    if cfg.dual_noise and t % 2 == 1 and previous is not None:
        return [-z for z in previous]
    return [sample_noise((batch, *shape), cfg.noise_dist, device=device) for shape in net.neuron_shapes]


def local_objective(
    net: OnlineNet, cfg: Config, out: torch.Tensor, probes: list, labels: torch.Tensor, losses: torch.Tensor
) -> torch.Tensor:
    """A scalar whose gradient is each method's weight update for this step. For the feedback methods every
    synapse input is detached, so d/dW_l of <target_l, g_l> is (psi(H_l) g_l) trace_{l-1}^T: the three-factor
    rule, with the readout's exact local gradient e trace_N^T."""
    batch = out.shape[0]
    if cfg.feedback == "bp":
        return per_sample_loss(out, labels, cfg.mse_weight, cfg.steps).mean()
    error = output_error(out.detach(), labels, cfg.mse_weight, cfg.steps)
    objective = (out * error).sum() / batch
    for index, probe in enumerate(probes):
        shape = net.neuron_shapes[index]
        if cfg.feedback == "opzo":
            matrix = update_feedback(net.feedback(index), probe.noise, out.detach(), cfg.noise_scale,
                                     cfg.feedback_momentum)  # fmt: skip
            signal = top_down(matrix, error, shape)
        elif cfg.feedback == "dfa":
            signal = top_down(net.random_feedback(index), error, shape)
        elif cfg.feedback == "dkp":  # B_l learns as a direct readout of s_l would: dB_l = s_l e^T (Kolen-Pollack)
            matrix = net.learned_feedback(index)
            signal = top_down(matrix.detach(), error, shape)
            objective = objective + (probe.spikes.detach().flatten(1) @ matrix * error).sum() / batch
        else:  # zosp
            signal = zo_signal(probe.noise, losses, cfg.noise_scale)
        # pre-neuron noise estimates the Jacobian at the input current, which already includes the neuron
        target = probe.current if cfg.noise_pos == "pre" and cfg.feedback in NOISY else probe.spikes
        objective = objective + (target * signal.detach()).sum() / batch
    return objective


def train_batch(net: OnlineNet, cfg: Config, x: torch.Tensor, labels: torch.Tensor, step_fn=None) -> float:
    """One batch through T online steps; gradients accumulate in the parameters (step_fn() is called after every
    time step with update = every_step). Returns the batch's loss sum_t mean_b L[t] (noisy output for opzo)."""
    state = OnlineState()  # fresh membranes and traces: nothing carries over from the previous batch
    noise, total = None, 0.0
    for t in range(cfg.steps):
        if cfg.feedback in NOISY:
            noise = draw_noise(net, cfg, x.shape[0], t, noise, x.device)
        out, probes = net.step(
            frame(x, t, cfg.arch), state, noise if cfg.feedback in NOISY else None, cfg.noise_scale,
            cfg.noise_pos, detach_inputs=cfg.feedback != "bp",
        )  # fmt: skip
        losses = per_sample_loss(out.detach(), labels, cfg.mse_weight, cfg.steps)
        total += losses.mean().item()
        local_objective(net, cfg, out, probes, labels, losses).backward()
        if step_fn is not None and cfg.update == "every_step":
            step_fn(total)
    return total


@torch.no_grad()
def predict(
    net: OnlineNet, images: np.ndarray, cfg: Config, device: str, stats: tuple | None = None
) -> tuple[torch.Tensor, list[float]]:
    """Clean evaluation (no noise, no feedback updates): sum_t o[t] per sample, and each layer's firing rate."""
    outputs, spikes, counts = [], [0.0] * net.depth, [0] * net.depth
    for start in range(0, len(images), cfg.eval_batch_size):
        x = to_input(torch.from_numpy(images[start : start + cfg.eval_batch_size]).to(device), cfg.arch, stats)
        state, total = OnlineState(), 0.0
        for t in range(cfg.steps):
            out, probes = net.step(frame(x, t, cfg.arch), state)
            total = total + out
            for index, probe in enumerate(probes):
                spikes[index] += probe.spikes.sum().item()
                counts[index] += probe.spikes.numel()
        outputs.append(total.cpu())
    return torch.cat(outputs), [s / max(c, 1) for s, c in zip(spikes, counts)]


def hidden_errors(net: OnlineNet, cfg: Config, x: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
    """On a clean pass: per layer, BP's error at the membrane (dL[t]/dH_l[t], spatial backprop of each step)
    and the method's (psi(H) M e for opzo, psi(H) B e for dfa), stacked over T. ZOsp's needs noise: None."""
    bp, method = [[] for _ in range(net.depth)], [[] for _ in range(net.depth)]
    state = OnlineState()
    with torch.enable_grad():
        for t in range(cfg.steps):
            out, probes = net.step(frame(x, t, cfg.arch), state)
            loss = per_sample_loss(out, labels, cfg.mse_weight, cfg.steps).sum()
            grads = torch.autograd.grad(loss, [p.membrane for p in probes], allow_unused=True)
            error = output_error(out.detach(), labels, cfg.mse_weight, cfg.steps)
            for index, (probe, grad) in enumerate(zip(probes, grads)):
                bp[index].append(torch.zeros_like(probe.membrane) if grad is None else grad)
                psi = net.neuron.surrogate_derivative(probe.membrane.detach())
                shape = net.neuron_shapes[index]
                if cfg.feedback == "opzo":
                    method[index].append(psi * top_down(net.feedback(index), error, shape))
                elif cfg.feedback == "dfa":
                    method[index].append(psi * top_down(net.random_feedback(index), error, shape))
                elif cfg.feedback == "dkp":
                    method[index].append(psi * top_down(net.learned_feedback(index).detach(), error, shape))
                elif cfg.feedback == "bp":
                    method[index].append(bp[index][-1])
    stacked = [torch.stack(layer) for layer in bp]
    return stacked, [torch.stack(layer) if layer else None for layer in method]


def alignment_metrics(net: OnlineNet, cfg: Config, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    metrics = {}
    bp, method = hidden_errors(net, cfg, x, labels)
    for index, (reference, estimate) in enumerate(zip(bp, method)):
        if estimate is not None:
            metrics[f"grad_cos_vs_bp/l{index + 1}"] = cosine(estimate, reference)
    jacobian_t = net.readout_jacobian_t()
    last = net.depth - 1
    if cfg.feedback == "opzo":
        metrics["feedback_cos_last"] = cosine(net.feedback(last), jacobian_t)
    elif cfg.feedback == "dfa":
        metrics["feedback_cos_last"] = cosine(net.random_feedback(last), jacobian_t)
    elif cfg.feedback == "dkp":
        metrics["feedback_cos_last"] = cosine(net.learned_feedback(last).detach(), jacobian_t)
    return metrics


def check_data(cfg: Config, train: ImageShards) -> None:
    shape = tuple(train.shape)
    if is_events(shape):
        side = shape[2:]
        if shape[0] != cfg.steps:
            raise ConfigError(
                f"steps={cfg.steps} but {cfg.dataset} holds {shape[0]} frames per sample: set steps={shape[0]} "
                f"or prepare it with --set frames={cfg.steps}"
            )
    else:
        side = shape[:2]
    if cfg.image_size is not None and tuple(side) != (cfg.image_size, cfg.image_size):
        raise ConfigError(
            f"{cfg.dataset} holds {side[0]}x{side[1]} inputs, the run needs {cfg.image_size}x{cfg.image_size}: "
            f"prepare it at that size (or set image_size)"
        )
    if cfg.arch == "conv":
        pooled = min(side) // 2 ** len(cfg.pool_after)
        if pooled < 1:
            raise ConfigError(f"pool_after {list(cfg.pool_after)} pools {side[0]}x{side[1]} inputs below one pixel")


def train(cfg: Config, ctx: RunContext) -> dict[str, float]:
    train_split, val, test = (ImageShards(ctx.data_dir, cfg.dataset, split) for split in ("train", "val", "test"))
    check_data(cfg, train_split)
    if ctx.world_size != 1:
        raise RunError(
            f"opzo runs in one process (world size {ctx.world_size}): its per-step feedback matrices are not "
            "averaged across ranks; run one trial per GPU (a sweep) instead"
        )
    shape = tuple(train_split.shape)
    rgb = len(shape) == 3
    stats = channel_stats(train_split.arrays()[0]) if cfg.normalise and rgb else None  # the train split's alone
    torch.manual_seed(ctx.seed)
    net = build_network(cfg, shape, len(train_split.classes)).to(ctx.device)
    optimizer = build_optimizer(cfg.optimizer, net, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_split) // cfg.batch_size)
    batches = cfg.epochs * steps_per_epoch
    updates = batches * (cfg.steps if cfg.update == "every_step" else 1)
    scheduler = make_scheduler(optimizer, cfg.schedule, updates)
    net, optimizer, scheduler = ctx.strategy.prepare(net, optimizer, scheduler)

    resumed = ctx.checkpoint.restore() if ctx.checkpoint is not None else None
    start = resumed["data_position"] if resumed else 0
    stream = train_split.batches(cfg.batch_size, seed=ctx.seed, start_batch=start)
    for step in ctx.progress(range(start, batches), total=batches, initial=start, desc=f"opzo {cfg.feedback}"):
        images, labels = next(stream)
        if cfg.augment == "pad-crop-flip" and rgb:  # drawn per (seed, step): a resumed run sees the same crops
            images = pad_crop_flip(images, 4, np.random.default_rng([ctx.seed, step]))
        x = to_input(torch.from_numpy(images).to(ctx.device), cfg.arch, stats)
        y = torch.from_numpy(labels).to(ctx.device)
        lr = optimizer.param_groups[0]["lr"]

        def apply(loss_so_far: float, step: int = step, lr: float = lr) -> None:
            raise_if_diverged(loss_so_far, step=step, limit=cfg.divergence_limit, lr=lr, hint="lower lr or noise")
            ctx.strategy.step()

        loss = train_batch(net, cfg, x, y, apply)
        if cfg.update == "accumulate":
            apply(loss)
        ctx.log({"train/loss": loss, "lr": lr}, step=step)
        done = step + 1
        stop = ctx.should_stop()  # once per step
        if ctx.checkpoint is not None and (ctx.checkpoint.due(done) or stop):
            ctx.checkpoint.save(done, {"data_position": done})
        if stop and done < batches:
            raise Preempted(f"stopped at step {done} of {batches}; resume continues from its checkpoint")

    ctx.strategy.save_weights(ctx.run_dir / "model.safetensors")  # the weights and the feedback matrices
    final: dict[str, float] = {}
    for split, prefix in ((train_split, "final/train"), (val, "val"), (test, "test")):
        if not len(split):
            continue
        images, labels = split.arrays()
        logits, rates = predict(net, images, cfg, ctx.device, stats)
        labels_t = torch.from_numpy(labels)
        final[f"{prefix}_acc" if prefix == "final/train" else f"{prefix}/acc"] = (
            (logits.argmax(1) == labels_t).float().mean().item()
        )
        if prefix == "test" or (prefix == "val" and not len(test)):
            final |= {f"spike_rate/l{i + 1}": rate for i, rate in enumerate(rates)}
    probe_split = val if len(val) else train_split
    images, labels = probe_split.arrays()
    probe = to_input(torch.from_numpy(images[: cfg.eval_batch_size]).to(ctx.device), cfg.arch, stats)
    final |= alignment_metrics(net, cfg, probe, torch.from_numpy(labels[: cfg.eval_batch_size]).to(ctx.device))
    ctx.log(final, step=batches)
    return final


class OPZO:
    name = "opzo"
    Config = Config
    presets = {
        "test": {**DIGITS, "epochs": 1},  # seconds: plumbing only
        "smoke": {**DIGITS, "epochs": 15},  # opzo.md §6: 10-15 epochs; about 0.95 for opzo and bp, 5 s
        "paper": {},  # the Config defaults: CIFAR-10, conv net, T = 6, SGD 0.1 cosine, 300 epochs
    }
    datasets = ("images/digits", "images/cifar10", "images/cifar100", "events/dvs_gesture")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return train(cfg, ctx)

    def random_step(self, cfg: Config) -> float:
        """One OPZO batch of the paper-scale network on two random 32x32 RGB images (T steps, then the update)."""
        torch.manual_seed(0)
        side = cfg.image_size or 32
        shape = (side, side) if cfg.dataset == "images/digits" else (side, side, 3)
        net = build_network(cfg, shape, 10)
        optimizer = build_optimizer(cfg.optimizer, net, lr=cfg.lr, weight_decay=cfg.weight_decay)
        images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
        loss = train_batch(net, cfg, to_input(images, cfg.arch), torch.randint(0, 10, (2,)))
        optimizer.step()
        return loss


component = OPZO()
