"""DeepSpeed as a strategy: ZeRO stage, offload and precision come from a JSON config chosen by the
cluster profile, never by the paper. The only module under components/ that imports deepspeed.

On CPU, DeepSpeed's communication layer JIT-builds a shared-memory all-reduce op at its first init
(2-3 minutes and 1.6 GB, even at world size 1). We turn that op off for CPU runs, so DeepSpeed talks
plain gloo through torch.distributed: no build, ever, and the same results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from components.core.errors import ConfigError
from components.core.strategy import mean_across_ranks

SHM_OP = "deepspeed_shm_comm"


class DeepSpeedStrategy:
    name = "deepspeed"

    def __init__(
        self, device: str = "cpu", config: dict[str, Any] | None = None, config_file: str | None = None, **_: Any
    ) -> None:
        self.device = device
        self.config = dict(config or {"zero_optimization": {"stage": 0}})
        self.config_file = config_file
        if self.config.get("gradient_clipping"):
            raise ConfigError(
                f"{config_file or 'deepspeed config'}: remove 'gradient_clipping': clipping is a component setting "
                "(its Config's grad_clip, recorded in config.yaml), never a silent choice of the profile"
            )
        if self.config.get("gradient_accumulation_steps", 1) != 1:
            raise ConfigError(
                f"{config_file or 'deepspeed config'}: gradient_accumulation_steps must be 1 "
                "(components take one optimizer step per batch; schedules count optimizer steps)"
            )
        self.engine = None
        self.grad_clip: float | None = None

    def prepare(self, model, optimizer, scheduler=None, grad_clip: float | None = None):
        """grad_clip: the component's max gradient norm (None: no clipping). The engine clips inside its step,
        where ZeRO keeps the (partitioned) gradients."""
        self.grad_clip = grad_clip
        import deepspeed
        import deepspeed.ops

        if not self.device.startswith("cuda"):
            deepspeed.ops.__compatible_ops__[SHM_OP] = False
        deepspeed.init_distributed(dist_backend="nccl" if self.device.startswith("cuda") else "gloo")
        world_size = torch.distributed.get_world_size()
        # Components feed one micro-batch per optimizer step; DeepSpeed only needs the sizes to agree.
        config = {
            **self.config,
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            "train_batch_size": world_size,
            # Always set: left out, DeepSpeed (0.19) clips at its default 1.0, and ZeRO runs part from DDP's
            # curve once the gradient norm passes 1 (benchmarks/deepspeed_parity.py --unset-clipping). 0.0: off.
            "gradient_clipping": 0.0 if grad_clip is None else float(grad_clip),
        }
        config.setdefault("steps_per_print", 10**9)
        self.engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
        )
        return self.engine, optimizer, scheduler

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> float | None:
        self.engine.step()  # clip, optimizer step, zero grads, then lr_scheduler.step()
        if self.grad_clip is None:
            return None
        norm = self.engine.get_global_grad_norm()  # the pre-clip norm the engine measured over every partition
        return None if norm is None else float(norm)

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="deepspeed", save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(
            str(directory), tag="deepspeed", load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {directory}")

    def save_weights(self, path: Path) -> None:
        if self.engine.zero_optimization_partition_weights():  # ZeRO-3: gather the shards first (collective)
            state = self.engine._zero3_consolidated_16bit_state_dict()
        else:
            state = self.engine.module.state_dict()
        if torch.distributed.get_rank() == 0:
            save_file({key: value.detach().cpu().contiguous() for key, value in state.items()}, str(path))

    def mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        return mean_across_ranks(value)

    def full_grad(self, param: torch.nn.Parameter) -> torch.Tensor | None:
        from deepspeed.utils import safe_get_full_grad

        return safe_get_full_grad(param)  # ZeRO-1/2: gathered from the partitions; ZeRO-3: from the fp32 shard
