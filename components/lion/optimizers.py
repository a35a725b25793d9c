"""The optimizer of a run: the core table's entries (LION is core.optim.Lion, the spec's algorithm), the
spec's plain-SGD baseline, and the theorem's K-dependent hyper-parameters."""

from __future__ import annotations

import math

import torch
from torch import nn

from components.core.optim import OPTIMIZERS, build_optimizer, param_groups
from components.lion.config import Config

QUADRATIC_LR = 0.02  # lion.md §6 check 3: eta_k = 0.02 (1 - k/K)
QUADRATIC_WEIGHT_DECAY = 0.5  # lion.md §6(a): lambda = 0.5, box radius 2
SGD_PLAIN_LR = 0.1  # the middle of the spec's SGD grid {0.03, 0.1, 0.3, 1.0}
SGD_PLAIN_WEIGHT_DECAY = 5e-4  # the core sgd entry's coupled L2, so sgd_plain differs from it only in momentum
SGD_PLAIN_NO_DECAY = "none"  # as the core sgd entry: the classic recipe decays every parameter


def theory_hyper(cfg: Config, dim: int) -> tuple[float, tuple[float, float]]:
    """(eta, (beta1, beta2)) of Theorems 2/5: eta = c3 / (sqrt(d) K^(3/4)), beta = 1 - c / sqrt(K)."""
    K, theory = cfg.budget, cfg.theory
    eta = theory.c3 / (math.sqrt(dim) * K**0.75)
    return eta, (1.0 - theory.c1 / math.sqrt(K), 1.0 - theory.c2 / math.sqrt(K))


def base_learning_rate(cfg: Config) -> float | None:
    """The step size before lr_scale; None in theory mode, where it follows from d and K."""
    if cfg.theory is not None:
        return None
    if cfg.lr is not None:
        return cfg.lr
    if cfg.task == "box_quadratic":
        return QUADRATIC_LR
    return SGD_PLAIN_LR if cfg.optimizer == "sgd_plain" else OPTIMIZERS[cfg.optimizer].lr


def learning_rate(cfg: Config, dim: int) -> float:
    if cfg.theory is not None:
        return theory_hyper(cfg, dim)[0] * cfg.lr_scale
    return base_learning_rate(cfg) * cfg.lr_scale


def weight_decay(cfg: Config) -> float:
    if cfg.weight_decay is not None:
        return cfg.weight_decay
    if cfg.task == "box_quadratic":
        return QUADRATIC_WEIGHT_DECAY
    return SGD_PLAIN_WEIGHT_DECAY if cfg.optimizer == "sgd_plain" else OPTIMIZERS[cfg.optimizer].weight_decay


def betas(cfg: Config, dim: int) -> tuple[float, float]:
    return theory_hyper(cfg, dim)[1] if cfg.theory is not None else tuple(cfg.betas)


def _from_groups(cfg: Config, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd_plain":
        # torch's SGD adds each group's weight_decay to the gradient: coupled L2, no momentum
        return torch.optim.SGD(groups, lr=lr, momentum=0.0)
    return OPTIMIZERS[cfg.optimizer].build(groups, lr)


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lr, decay = learning_rate(cfg, dim), weight_decay(cfg)
    if cfg.optimizer != "sgd_plain" and cfg.no_decay == "table":
        optimizer = build_optimizer(cfg.optimizer, model, lr=lr, weight_decay=decay)
    else:
        rule = SGD_PLAIN_NO_DECAY if cfg.no_decay == "table" else cfg.no_decay
        optimizer = _from_groups(cfg, param_groups(model, rule, decay), lr)
    if cfg.optimizer == "lion":
        for group in optimizer.param_groups:
            group["betas"] = betas(cfg, dim)
    return optimizer


def make_vector_optimizer(cfg: Config, x: torch.Tensor) -> torch.optim.Optimizer:
    """The optimizer on one free vector (the box quadratic), decayed whatever the table's no-decay rule."""
    dim = x.numel()
    groups = [{"params": [x], "weight_decay": weight_decay(cfg)}]
    optimizer = _from_groups(cfg, groups, learning_rate(cfg, dim))
    if cfg.optimizer == "lion":
        optimizer.param_groups[0]["betas"] = betas(cfg, dim)
    return optimizer
