"""How a model is trained across devices. The launcher picks one; components only call its methods.

`plain` is one process on one device. DDP and DeepSpeed (the only module that may import deepspeed)
come with the launch backends and keep this interface, including save/load of sharded state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_model, save_model


class Strategy(Protocol):
    name: str

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> tuple: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> None:
        """Optimizer step, zero the gradients, then advance the schedule by one optimizer step."""
        ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


class PlainStrategy:
    name = "plain"

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None

    def prepare(self, model, optimizer, scheduler=None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        return model, optimizer, scheduler

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_model(self.model, str(directory / "model.safetensors"))
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        torch.save(state, directory / "optimizer.pt")

    def load(self, directory: Path) -> None:
        directory = Path(directory)
        load_model(self.model, str(directory / "model.safetensors"))
        state = torch.load(directory / "optimizer.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


STRATEGIES = {"plain": PlainStrategy}
