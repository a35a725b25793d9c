"""How a model is trained across processes. The launcher picks one; components only call its methods.

`plain` is one process; `ddp` wraps the model in DistributedDataParallel (gloo on CPU, NCCL on GPU);
`deepspeed` lives in components/core/deepspeed_strategy.py, the one module that imports deepspeed.
All keep one interface, including save/load of (possibly sharded) state and weight export.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_model, save_model

from components.core.errors import ConfigError, did_you_mean


class Strategy(Protocol):
    name: str

    def prepare(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        grad_clip: float | None = None,
    ) -> tuple:
        """grad_clip: the component's max global gradient norm (its Config's, recorded in config.yaml; None: no
        clipping). The strategy clips where it keeps the gradients (DeepSpeed: inside the engine, across ZeRO's
        partitions), so components never clip themselves."""
        ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> float | None:
        """Clip (when prepared with grad_clip), optimizer step, zero the gradients, then advance the schedule by
        one optimizer step. Returns the global gradient norm before clipping when clipping, else None."""
        ...

    def save(self, directory: Path) -> None:
        """Training state for resume; called on every rank (sharded strategies write one file per rank)."""
        ...

    def load(self, directory: Path) -> None: ...

    def save_weights(self, path: Path) -> None:
        """The full model's weights as one safetensors file; called on every rank, written by rank 0."""
        ...

    def mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a per-rank value (e.g. the loss of each rank's share of the batch), for logging."""
        ...

    def full_grad(self, param: torch.nn.Parameter) -> torch.Tensor | None:
        """The whole rank-averaged gradient of a trainable parameter, after backward and before step (None if it
        has none): what a gradient probe reads. DeepSpeed assembles it from ZeRO's partitions with a collective,
        so every rank asks for the same parameters in the same order."""
        ...


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return value
    total = value.detach().clone()
    torch.distributed.all_reduce(total)
    return total / torch.distributed.get_world_size()


def is_main_process() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


class ReplicatedStrategy:
    """Every process holds the whole model: `plain` (one process) and `ddp`, which differs only in wrapping
    the model in DistributedDataParallel so gradients are averaged across ranks during backward."""

    def __init__(self, device: str = "cpu", data_parallel: bool = False, **_: Any) -> None:
        self.name = "ddp" if data_parallel else "plain"
        self.device = device
        self.data_parallel = data_parallel
        self.model: torch.nn.Module | None = None  # the unwrapped model: what is saved and loaded
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.grad_clip: float | None = None

    def prepare(self, model, optimizer, scheduler=None, grad_clip: float | None = None):
        self.model, self.optimizer, self.scheduler, self.grad_clip = model, optimizer, scheduler, grad_clip
        return (self._data_parallel(model) if self.data_parallel else model), optimizer, scheduler

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float | None:
        norm = None
        if self.grad_clip is not None:  # after DDP's all-reduce: every rank clips the same averaged gradient
            params = [p for p in self.model.parameters() if p.grad is not None]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return norm

    def save(self, directory: Path) -> None:
        if not is_main_process():  # every rank holds the same replica
            return
        directory = Path(directory)
        save_model(self.model, str(directory / "model.safetensors"))
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        torch.save(state, directory / "optimizer.pt")

    def load(self, directory: Path) -> None:
        directory = Path(directory)
        load_model(self.model, str(directory / "model.safetensors"), device=str(self.device))
        state = torch.load(directory / "optimizer.pt", weights_only=False, map_location=self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def save_weights(self, path: Path) -> None:
        if is_main_process():
            save_model(self.model, str(path))

    def mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        return mean_across_ranks(value)

    def full_grad(self, param: torch.nn.Parameter) -> torch.Tensor | None:
        return param.grad  # DDP has averaged it across ranks during backward

    def _data_parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        if not torch.distributed.is_initialized():
            raise ConfigError(
                "strategy ddp needs a process group: run it through torchrun, SLURM or a profile with processes > 1"
            )
        device_ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=device_ids)


def plain_strategy(device: str = "cpu", **options: Any) -> ReplicatedStrategy:
    return ReplicatedStrategy(device, data_parallel=False)


def ddp_strategy(device: str = "cpu", **options: Any) -> ReplicatedStrategy:
    return ReplicatedStrategy(device, data_parallel=True)


STRATEGIES = {
    "plain": "components.core.strategy:plain_strategy",
    "ddp": "components.core.strategy:ddp_strategy",
    "deepspeed": "components.core.deepspeed_strategy:DeepSpeedStrategy",
}


def make_strategy(name: str, device: str = "cpu", options: dict[str, Any] | None = None) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(
            f"unknown strategy '{name}'{did_you_mean(name, STRATEGIES)}; choose from {', '.join(STRATEGIES)}"
        )
    module_name, attribute = STRATEGIES[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)(device=device, **(options or {}))
