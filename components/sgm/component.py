"""SGM (Skip Gradient Method; Wang et al., arXiv 2410.08950, extending Wu et al., ICLR 2020): craft adversarial
examples on a source network with skip connections while decaying the gradient through its residual branches,
and measure how often they fool unseen black-box targets. Every run attacks twice with the same images, seed and
budget, at cfg.gamma and at gamma = 1 (plain PGD), so the transfer gain is a paired difference."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file
from torch import nn

from components.core.contract import RunContext
from components.core.errors import ConfigError, DataError
from components.core.shards import ImageShards, prepare_command
from components.sgm.attack import pgd, predict, quantise, success_rate
from components.sgm.config import Config
from components.sgm.gradient import official_relu_hooks, skip_gradient
from components.sgm.models import Normalised, build_model, family, is_imagenet, load_weights

DIGITS = {
    "dataset": "images/digits",
    "split": "test",  # train on train, attack the held-out test digits
    "image_size": 8,
    "num_classes": 10,
    "source": "resmlp-64x8",  # sgm.md §6: residual MLP, width 64, 8 blocks
    "targets": ("mlp-256", "mlp-128x3", "resmlp-96x3"),
    "weights": None,  # trained in-process
    "gamma": 0.7,  # sgm.md §6 check 4: the gamma whose transfer is compared with gamma = 1
    "eps": 0.2,  # 17 grey levels: 16/255 is below one level
    "step_size": 0.04,  # 2 eps / T
    "only_correct": True,
    "batch_size": 300,
}


def to_input(images: np.ndarray, imagenet: bool) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; (N, H, W, 3) -> (N, 3, H, W) for the ImageNet families."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255
    return rearrange(x, "b h w c -> b c h w") if imagenet else x


def check_data(cfg: Config, shards: ImageShards, imagenet: bool) -> None:
    side = cfg.image_size
    expected = (side, side, 3) if imagenet else (side, side)
    if shards.shape != expected:
        raise ConfigError(
            f"dataset '{cfg.dataset}' holds {'x'.join(map(str, shards.shape))} images, the models need "
            f"{'x'.join(map(str, expected))}: prepare it with --set size={side} or set image_size"
        )
    if len(shards.classes) != cfg.num_classes:
        raise DataError(
            f"dataset '{cfg.dataset}' has {len(shards.classes)} classes, the models have num_classes="
            f"{cfg.num_classes}: its class folders must be the models' classes in their order "
            f"(`{prepare_command(cfg.dataset)}`)"
        )
    if len(shards) == 0:
        raise DataError(f"dataset '{cfg.dataset}' has no images in split '{cfg.split}'")


def fit(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: Config, seed: list[int]) -> float:
    """Adam (L2 weight decay) on the training split, sgm.md §6; returns the last epoch's mean loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    model.train()
    mean_loss = float("nan")
    for epoch in range(cfg.train.epochs):
        order = torch.from_numpy(np.random.default_rng([*seed, epoch]).permutation(len(labels)))
        losses = []
        for batch in order.split(cfg.train.batch_size):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        mean_loss = float(np.mean(losses))
    return mean_loss


def weights_folder(cfg: Config, data_dir: Path) -> Path:
    folder = Path(cfg.weights)
    return folder if folder.is_absolute() else Path(data_dir) / folder


def build(arch: str, cfg: Config) -> nn.Module:
    net = build_model(arch, cfg.num_classes, cfg.width)
    return Normalised(net) if is_imagenet(arch) else net


def prepare_models(cfg: Config, ctx: RunContext, imagenet: bool) -> dict[str, nn.Module]:
    """Source and targets: loaded from <weights>/<arch>.safetensors, or trained here on the train split (never on
    the attacked one) with one seed per model, their weights saved in the run directory."""
    models: dict[str, nn.Module] = {}
    archs = (cfg.source, *cfg.targets)
    if cfg.weights is not None:
        folder = weights_folder(cfg, ctx.data_dir)
        for arch in archs:
            model = build(arch, cfg)
            load_weights(model.net if isinstance(model, Normalised) else model, folder / f"{arch}.safetensors", arch)
            models[arch] = model
    else:
        if cfg.split == "train":
            raise ConfigError("split: the in-process models train on 'train'; attack 'val' or 'test'")
        train_images, train_labels = ImageShards(ctx.data_dir, cfg.dataset, "train").arrays()
        x, y = to_input(train_images, imagenet), torch.from_numpy(train_labels).long()
        for index, arch in enumerate(archs):
            torch.manual_seed(ctx.seed * 1000 + index)  # a different initialisation per model and per run seed
            model = build(arch, cfg)
            loss = fit(model, x, y, cfg, [ctx.seed, index])
            ctx.log({f"train/{arch}/loss": loss}, step=cfg.train.epochs)
            if ctx.is_main:
                (ctx.run_dir / "models").mkdir(exist_ok=True)
                net = model.net if isinstance(model, Normalised) else model
                save_file(
                    {k: v.contiguous() for k, v in net.state_dict().items()},
                    str(ctx.run_dir / "models" / f"{arch}.safetensors"),
                )
            models[arch] = model
    for model in models.values():
        model.eval()  # BatchNorm on its running statistics, Dropout off: the attack sees the deployed model
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.to(ctx.device)  # trained on the CPU (seconds), attacked where the run is placed
    return models


def decay(cfg: Config, model: nn.Module, gamma: float) -> AbstractContextManager:
    if cfg.mechanism == "official_hooks":
        return official_relu_hooks(model, family(cfg.source), gamma)
    return skip_gradient(model, gamma)


def attack(
    cfg: Config, ctx: RunContext, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gamma: float
) -> torch.Tensor:
    """The SGM attack at one gamma over all images, batch by batch; the random start (if any) is drawn from the
    run's seed, so every gamma starts from the same points."""
    generator = torch.Generator().manual_seed(ctx.seed)
    batches = list(zip(x.split(cfg.batch_size), y.split(cfg.batch_size)))
    adversarial = []
    with decay(cfg, model, gamma):
        for images, labels in ctx.progress(batches, total=len(batches), desc=f"sgm gamma={gamma:g}"):
            adversarial.append(
                pgd(
                    model,
                    images.to(ctx.device),
                    labels.to(ctx.device),
                    eps=cfg.eps,
                    steps=cfg.steps,
                    step_size=cfg.step_size,
                    momentum=cfg.momentum,
                    rand_init=cfg.rand_init,
                    generator=generator,
                ).cpu()
            )
    x_adv = torch.cat(adversarial)
    return quantise(x_adv) if cfg.quantise else x_adv


def transfer_rates(cfg: Config, models: dict[str, nn.Module], x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    rates = {"white_box_asr": success_rate(models[cfg.source], x_adv, y, cfg.batch_size)}
    for target in cfg.targets:
        rates[f"asr/{target}"] = success_rate(models[target], x_adv, y, cfg.batch_size)
    rates["asr_mean_blackbox"] = float(np.mean([rates[f"asr/{t}"] for t in cfg.targets]))
    return rates


def run_sgm(cfg: Config, ctx: RunContext) -> dict[str, float]:
    imagenet = is_imagenet(cfg.source)
    if any(is_imagenet(arch) != imagenet for arch in cfg.targets):
        raise ConfigError(f"targets {list(cfg.targets)} and source '{cfg.source}' must take the same kind of input")
    shards = ImageShards(ctx.data_dir, cfg.dataset, cfg.split)
    check_data(cfg, shards, imagenet)
    models = prepare_models(cfg, ctx, imagenet)
    images, labels = shards.arrays()
    x = to_input(images[: cfg.max_samples], imagenet)
    truth = torch.from_numpy(labels[: cfg.max_samples]).long()
    metrics: dict[str, float] = {}
    predictions = {arch: predict(model, x, cfg.batch_size) for arch, model in models.items()}
    for arch, predicted in predictions.items():
        metrics[f"clean_acc/{arch}"] = (predicted == truth).float().mean().item()
    keep = torch.ones(len(truth), dtype=torch.bool)
    if cfg.only_correct:
        for predicted in predictions.values():
            keep &= predicted == truth
    if not keep.any():
        raise DataError(f"no image of '{cfg.dataset}' {cfg.split} is classified correctly by every model")
    x, truth = x[keep], truth[keep]
    y = truth if cfg.labels == "truth" else predictions[cfg.source][keep]
    metrics["attacked"] = float(len(y))

    x_adv = attack(cfg, ctx, models[cfg.source], x, y, cfg.gamma)
    metrics.update(transfer_rates(cfg, models, x_adv, truth))
    baseline = x_adv if cfg.gamma == 1 else attack(cfg, ctx, models[cfg.source], x, y, 1.0)
    for key, value in transfer_rates(cfg, models, baseline, truth).items():
        metrics[f"pgd/{key}"] = value
    metrics["delta_vs_gamma1"] = metrics["asr_mean_blackbox"] - metrics["pgd/asr_mean_blackbox"]
    for target in cfg.targets:
        metrics[f"delta/{target}"] = metrics[f"asr/{target}"] - metrics[f"pgd/asr/{target}"]
    metrics["linf"] = (x_adv - x).abs().max().item()
    if cfg.save_adversarial and ctx.is_main:
        pixels = torch.round(x_adv * 255).to(torch.uint8)
        stored = rearrange(pixels, "b c h w -> b h w c") if imagenet else pixels
        np.savez_compressed(ctx.run_dir / "adversarial.npz", images=stored.numpy(), labels=truth.numpy())
    ctx.log(metrics, step=cfg.steps)
    return metrics


class SGM:
    name = "sgm"
    Config = Config
    presets = {
        "test": {**DIGITS, "train": {"epochs": 3}, "steps": 5, "step_size": 0.08},  # seconds: plumbing only
        "smoke": DIGITS,  # sgm.md §6: 4 digits models trained here, gamma 0.7 vs 1
        "paper": {},  # the Config defaults: ResNet-152 source on 5000 ImageNet images, gamma 0.2
    }
    datasets = ("images/digits", "images/imagenet")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return run_sgm(cfg, ctx)

    def random_step(self, cfg: Config) -> float | None:
        """One Adam step of the in-process source on random images; None with loaded weights (the paper scale
        trains nothing: its models are the user's pretrained weights, and the paper-path test attacks them)."""
        if cfg.weights is not None:
            return None
        torch.manual_seed(0)
        model = build(cfg.source, cfg)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        side = cfg.image_size
        x = torch.rand((2, 3, side, side) if is_imagenet(cfg.source) else (2, side, side))
        loss = F.cross_entropy(model(x), torch.randint(0, cfg.num_classes, (2,)))
        loss.backward()
        optimizer.step()
        return loss.item()


component = SGM()
