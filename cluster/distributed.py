"""The launcher's translation of the environment (torchrun's or SLURM's variables) into ranks.

Components never read these variables (the dinov2 / fairseq2 pattern): they get rank and world size
from RunContext, which the launcher fills from a DistEnv.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch

from cluster.environ import temporary_environment


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_slurm_host(nodelist: str) -> str:
    """'node[03-05,09],gpu1' -> 'node03' (scontrol expands it when available)."""
    try:
        hosts = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
        if hosts:
            return hosts[0]
    except (OSError, subprocess.SubprocessError):
        pass
    match = re.match(r"([^\[,]+)(?:\[(\d+))?", nodelist)
    return (match.group(1) + (match.group(2) or "")) if match else "127.0.0.1"


def from_environment(environ: Mapping[str, str] | None = None) -> DistEnv:
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or submitit's TorchDistributedEnvironment
        return DistEnv(
            int(env["RANK"]),
            int(env["WORLD_SIZE"]),
            int(env.get("LOCAL_RANK", 0)),
            env.get("MASTER_ADDR", "127.0.0.1"),
            int(env.get("MASTER_PORT", 29500)),
        )
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        job = int(env.get("SLURM_JOB_ID", "0"))
        host = first_slurm_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "127.0.0.1")))
        return DistEnv(
            int(env["SLURM_PROCID"]),
            int(env["SLURM_NTASKS"]),
            int(env.get("SLURM_LOCALID", 0)),
            host,
            20000 + job % 20000,
        )  # one port per job, so two jobs on a node do not collide
    return DistEnv()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def device_for(dist: DistEnv, use_gpu: bool) -> str:
    if use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        return f"cuda:{dist.local_rank}"
    return "cpu"


def init_process_group(dist: DistEnv, device: str) -> None:
    """gloo on CPU, NCCL on GPU; a group of one for strategies that always need one (DeepSpeed)."""
    if torch.distributed.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    torch.distributed.init_process_group(
        backend, rank=dist.rank, world_size=dist.world_size, timeout=timedelta(minutes=10)
    )


def rendezvous_environment(dist: DistEnv):
    """The rendezvous variables of `dist` for the length of one run (torch's env:// rendezvous and DeepSpeed
    read them), then the previous values back, or every process this one starts later (a SLURM job,
    torchrun) would inherit a stale rank 0 of a world of 1."""
    port = dist.master_port if dist.distributed else free_port()
    return temporary_environment(
        {
            "RANK": str(dist.rank),
            "WORLD_SIZE": str(dist.world_size),
            "LOCAL_RANK": str(dist.local_rank),
            "MASTER_ADDR": dist.master_addr,
            "MASTER_PORT": str(port),
        }
    )


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
