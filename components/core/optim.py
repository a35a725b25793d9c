"""The optimizer table: named specs, each with its own default LR, weight decay and no-decay rule.

Sweeping the optimizer name then compares every optimizer at a sane scale of its own instead of forcing
one learning rate on all of them. Lion, mSGDW and Adan are written out here because their exact update order
and decoupled decay are what the papers test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from components.core.errors import ConfigError, did_you_mean

NO_DECAY_RULES = ("none", "ndim<2", "ndim<2+embeddings")


def _params_with_buffers(optimizer: torch.optim.Optimizer, group: dict, key: str):
    """(parameter, its one state buffer) for every parameter of the group that has a dense gradient.

    The buffer is at least fp32: a bf16 momentum rounds away the (1 - beta) g increments (lion.md §5)."""
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients")
        state = optimizer.state[param]
        if key not in state:
            dtype = torch.promote_types(param.dtype, torch.float32)
            state[key] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
        yield param, state[key]


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023), in the order the convergence paper analyses:

    c = beta1 m + (1 - beta1) g          interpolation with the OLD momentum
    x <- x - lr (sign(c) + wd x)         decoupled decay on the pre-step x, scaled by lr; sign(0) = 0
    m <- beta2 m + (1 - beta2) g         momentum updated AFTER the step
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ):
        if lr < 0:
            raise ValueError(f"Lion: lr must be non-negative, got {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Lion: betas must lie in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"Lion: weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, weight_decay = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for param, momentum in _params_with_buffers(self, group, "exp_avg"):
                grad = param.grad.to(momentum.dtype)
                direction = torch.sign(momentum * beta1 + grad * (1.0 - beta1))
                param.mul_(1.0 - lr * weight_decay)
                param.add_(direction.to(param.dtype), alpha=-lr)
                momentum.mul_(beta2).add_(grad, alpha=1.0 - beta2)
        return loss


class MSGDW(torch.optim.Optimizer):
    """Momentum SGD with decoupled weight decay (the DNT paper's mSGDW):

        b <- mu b + g                        PyTorch's form: dampening 0, no Nesterov
        b <- mu b + (1 - mu) g               ema=True: the EMA form (lr 1.0 here is lr 0.1 in PyTorch's form)
        x <- x - lr b - lr wd x              the decay never enters b, and uses the pre-step x

    torch.optim.SGD(weight_decay=...) adds wd x to g, so there the decay goes through the momentum.
    """

    def __init__(
        self, params: Iterable, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, ema: bool = False
    ):
        if lr < 0:
            raise ValueError(f"MSGDW: lr must be non-negative, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"MSGDW: momentum must lie in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"MSGDW: weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ema=ema))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            gain = 1.0 - momentum if group.get("ema", False) else 1.0
            for param, buffer in _params_with_buffers(self, group, "momentum_buffer"):
                buffer.mul_(momentum).add_(param.grad.to(buffer.dtype), alpha=gain)
                param.mul_(1.0 - lr * weight_decay)
                param.add_(buffer.to(param.dtype), alpha=-lr)
        return loss


class Adan(torch.optim.Optimizer):
    """Adan (Xie et al. 2022, "Adaptive Nesterov Momentum"), the optimizer of every EKAN run script.

    Written from the paper's algorithm in the form of the sail-sg reference (betas are "keep" factors,
    bias-corrected, decay as a proximal step). With g_0 := g_1 the first step has no gradient difference:

        m <- b1 m + (1 - b1) g                       first moment
        v <- b2 v + (1 - b2) (g - g_prev)            moment of the gradient difference
        n <- b3 n + (1 - b3) (g + b2 (g - g_prev))^2 second moment of the Nesterov-corrected gradient
        x <- x - lr (m / c1 + b2 v / c2) / (sqrt(n / c3) + eps),   c_i = 1 - b_i^t
        x <- x / (1 + lr wd)
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr <= 0:
            raise ValueError(f"Adan: lr must be positive, got {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas) or len(betas) != 3:
            raise ValueError(f"Adan: three betas in [0, 1) are needed, got {betas}")
        if weight_decay < 0:
            raise ValueError(f"Adan: weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2, beta3 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                # state and arithmetic at least fp32 (as Lion and mSGDW): bf16 moments round away the (1 - b) g
                dtype = torch.promote_types(param.dtype, torch.float32)
                grad = param.grad.to(dtype)
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    for key in ("exp_avg", "exp_avg_diff", "exp_avg_sq"):
                        state[key] = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)
                    state["prev_grad"] = grad.clone()
                state["step"] += 1
                step = state["step"]
                diff = grad - state["prev_grad"]
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_diff"].mul_(beta2).add_(diff, alpha=1 - beta2)
                corrected = grad + beta2 * diff
                state["exp_avg_sq"].mul_(beta3).addcmul_(corrected, corrected, value=1 - beta3)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta3**step)).add_(eps)
                target = param if param.dtype == dtype else param.to(dtype)  # a low-precision x rounds once, at the end
                target.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**step))
                target.addcdiv_(state["exp_avg_diff"], denom, value=-lr * beta2 / (1 - beta2**step))
                if decay:
                    target.div_(1 + lr * decay)
                if target is not param:
                    param.copy_(target)
                state["prev_grad"].copy_(grad)
        return loss


def param_groups(model: nn.Module, rule: str, weight_decay: float) -> list[dict]:
    """A decay group and a no-decay (weight_decay = 0) group; an empty group is left out.

    Rules: "none" decays everything; "ndim<2" exempts tensors with fewer than 2 dims (biases, norm
    gains); "ndim<2+embeddings" also exempts nn.Embedding / nn.EmbeddingBag weights, even when tied
    to an output layer. Frozen parameters are left out; a shared parameter appears once.
    """
    if rule not in NO_DECAY_RULES:
        raise ConfigError(
            f"unknown no-decay rule '{rule}'{did_you_mean(rule, NO_DECAY_RULES)}; "
            f"choose from {', '.join(NO_DECAY_RULES)}"
        )
    embedding_ids = set()
    if rule == "ndim<2+embeddings":
        embedding_ids = {
            id(module.weight) for module in model.modules() if isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        }
    decay, no_decay = [], []
    for param in model.parameters():  # yields each shared parameter once
        if not param.requires_grad:
            continue
        exempt = rule != "none" and (param.ndim < 2 or id(param) in embedding_ids)
        (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    lr: float  # default learning rate (the schedule's eta_max)
    weight_decay: float  # default weight decay for the decay group
    no_decay: str  # one of NO_DECAY_RULES
    build: Callable[..., torch.optim.Optimizer]  # (param groups, lr[, betas=]) -> optimizer
    reason: str  # why these defaults, in one line
    betas: tuple[float, ...] | None = None  # the default betas, where the optimizer has any (build takes betas=)


def _sgd(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    # Each group's weight_decay is coupled L2 here: torch's SGD adds it to the gradient.
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def _msgdw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return MSGDW(groups, lr=lr, momentum=0.9)


def _msgdw_ema(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    return MSGDW(groups, lr=lr, momentum=0.9, ema=True)


ADAN_BETAS = (0.98, 0.92, 0.99)  # sail-sg's defaults
ADAMW_BETAS = (0.9, 0.999)  # torch's defaults (nanoGPT's GPT-2 recipe uses (0.9, 0.95): components set their own)
LION_BETAS = (0.9, 0.99)  # Chen et al. 2023


def _adan(groups: list[dict], lr: float, betas: tuple[float, ...] = ADAN_BETAS) -> torch.optim.Optimizer:
    return Adan(groups, lr=lr, betas=betas)


def _adamw(groups: list[dict], lr: float, betas: tuple[float, ...] = ADAMW_BETAS) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def _lion(groups: list[dict], lr: float, betas: tuple[float, ...] = LION_BETAS) -> torch.optim.Optimizer:
    return Lion(groups, lr=lr, betas=betas)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(
        name="sgd",
        lr=0.1,  # the classic ResNet/CIFAR peak LR; UBA's digits check uses SGD momentum 0.9 at 0.1
        weight_decay=5e-4,  # the CIFAR recipe's coupled L2
        no_decay="none",  # the classic recipe decays every parameter, norm gains and biases included
        build=_sgd,
        reason="classic ResNet/CIFAR recipe: momentum 0.9, lr 0.1, coupled L2 5e-4 on every parameter",
    ),
    "msgdw": OptimizerSpec(
        name="msgdw",
        lr=0.1,  # same scale as sgd (same momentum form), so the two differ only in how decay is applied
        weight_decay=5e-4,  # the top of the DNT paper's sweep {0, 1e-5, 1e-4, 5e-4}
        no_decay="ndim<2+embeddings",  # DNT decays only matrices: no norm gains, biases or embeddings
        build=_msgdw,
        reason="DNT's mSGDW: momentum 0.9, decoupled decay on matrices only, at the sgd scale",
    ),
    "msgdw_ema": OptimizerSpec(
        name="msgdw_ema",
        lr=1.0,  # the EMA form's step is (1 - mu) = 0.1 of PyTorch's: lr 1.0 here is msgdw at 0.1
        weight_decay=5e-5,  # lr * wd equal to msgdw's 0.1 * 5e-4, so the decay per step matches too
        no_decay="ndim<2+embeddings",  # as msgdw
        build=_msgdw_ema,
        reason="mSGDW with EMA momentum b = 0.9 b + 0.1 g, the form in which DNT's peak lr 1.0 is meaningful",
    ),
    "adamw": OptimizerSpec(
        name="adamw",
        lr=1e-3,  # torch's default, a safe peak for small models
        weight_decay=0.01,  # torch's default
        no_decay="ndim<2+embeddings",  # the transformer convention: norms, biases and embeddings undecayed
        build=_adamw,
        betas=ADAMW_BETAS,
        reason="torch defaults: lr 1e-3, betas (0.9, 0.999), wd 0.01 on matrices",
    ),
    "adan": OptimizerSpec(
        name="adan",
        lr=1e-3,  # sail-sg's default, LieSD's runs (EKAN's own Config sets its paper's 3e-3)
        weight_decay=0.0,  # none of their runs decays
        no_decay="ndim<2+embeddings",  # as adamw, should a sweep turn decay on
        build=_adan,
        betas=ADAN_BETAS,
        reason="Adan (Xie et al. 2022) at the sail-sg defaults: betas (0.98, 0.92, 0.99), eps 1e-8",
    ),
    "lion": OptimizerSpec(
        name="lion",
        lr=3e-4,  # ~3x below adamw (Chen et al.: 3-10x): every coordinate moves by the full lr each step
        weight_decay=0.03,  # 3x above adamw, so lr * wd (the decay per step) stays at adamw's 1e-5
        no_decay="ndim<2+embeddings",  # as adamw, so the two compare on the same parameters
        build=_lion,
        betas=LION_BETAS,
        reason="Chen et al. 2023: lr 3-10x below AdamW and wd 3-10x above, betas (0.9, 0.99)",
    ),
}

OptimizerName = Literal["sgd", "msgdw", "msgdw_ema", "adamw", "adan", "lion"]


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float | None = None,
    weight_decay: float | None = None,
    betas: tuple[float, ...] | None = None,
) -> torch.optim.Optimizer:
    """The named optimizer over model's parameters; lr / weight_decay / betas None take the spec's defaults."""
    spec = OPTIMIZERS.get(name)
    if spec is None:
        raise ConfigError(
            f"unknown optimizer '{name}'{did_you_mean(name, OPTIMIZERS)}; choose from {', '.join(OPTIMIZERS)}"
        )
    lr = spec.lr if lr is None else lr
    weight_decay = spec.weight_decay if weight_decay is None else weight_decay
    if lr <= 0:
        raise ConfigError(f"the learning rate of optimizer '{name}' must be positive, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"the weight decay of optimizer '{name}' must be non-negative, got {weight_decay}")
    groups = param_groups(model, spec.no_decay, weight_decay)
    if betas is None:
        return spec.build(groups, lr)
    if spec.betas is None:
        raise ConfigError(f"optimizer '{name}' has no betas")
    betas = tuple(float(beta) for beta in betas)
    if len(betas) != len(spec.betas) or not all(0.0 <= beta < 1.0 for beta in betas):
        raise ConfigError(f"optimizer '{name}' takes {len(spec.betas)} betas in [0, 1), got {betas}")
    return spec.build(groups, lr, betas=betas)
