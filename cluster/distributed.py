"""The launcher's translation of the environment (torchrun's or SLURM's variables) into ranks.

Components never read these variables (the dinov2 / fairseq2 pattern): they get rank and world size
from RunContext, which the launcher fills from a DistEnv.

A run whose ranks all live on this machine talks over loopback only: its rendezvous address is 127.0.0.1,
the TCPStore that rank 0 serves listens on 127.0.0.1 (torch's own listens on every interface, whatever
the address), and gloo/NCCL bind the loopback interface. A run across nodes keeps torch's defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from cluster.environ import temporary_environment

if TYPE_CHECKING:
    from torch.distributed import TCPStore


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


LOOPBACK = "127.0.0.1"
# What gloo and NCCL bind to: the interface their variables name, else the address this host's name
# resolves to (a real interface on most machines).
SOCKET_INTERFACE_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def is_loopback(host: str) -> bool:
    """A loopback address literally (127.0.0.1, ::1) or 'localhost'. Host names are never resolved: on
    Debian a machine's own name resolves to 127.0.1.1 there while the other nodes reach it elsewhere."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_interface() -> str | None:
    names = {name for _, name in socket.if_nameindex()}
    return next((name for name in ("lo", "lo0") if name in names), None)  # Linux, macOS


def from_environment(environ: Mapping[str, str] | None = None) -> DistEnv:
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or submitit's TorchDistributedEnvironment
        one_machine = env.get("LOCAL_WORLD_SIZE") == env["WORLD_SIZE"]  # every rank on this machine
        return DistEnv(
            int(env["RANK"]),
            int(env["WORLD_SIZE"]),
            int(env.get("LOCAL_RANK", 0)),
            LOOPBACK if one_machine else env.get("MASTER_ADDR", LOOPBACK),
            int(env.get("MASTER_PORT", 29500)),
        )
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        job = int(env.get("SLURM_JOB_ID", "0"))
        if env.get("SLURM_NNODES", env.get("SLURM_JOB_NUM_NODES")) == "1":
            host = LOOPBACK  # every task on this node
        else:  # multi-node: rank 0's host name, reachable from the other nodes (unchanged)
            host = first_slurm_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", LOOPBACK)))
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
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def loopback_store(
    host: str, port: int, world_size: int, *, is_master: bool, timeout: timedelta, multi_tenant: bool = False
) -> TCPStore:
    """A TCPStore whose server (on the master) listens on the loopback address `host` only, port 0: any free.

    TCPStore's server binds every interface (:: or 0.0.0.0) whatever host it is given; it binds nothing
    itself when handed a socket that already listens, which is bound here to loopback.
    """
    from torch.distributed import TCPStore

    address = "::1" if host.strip("[]") == "::1" else LOOPBACK
    if not is_master:
        return TCPStore(address, port, world_size, False, timeout)
    listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(socket.SOMAXCONN)
        port = listener.getsockname()[1]
    except BaseException:
        listener.close()
        raise
    # the store owns (and closes) the listening socket from here on
    return TCPStore(
        address, port, world_size, True, timeout, multi_tenant=multi_tenant, master_listen_fd=listener.detach()
    )


def device_for(dist: DistEnv, use_gpu: bool) -> str:
    import torch  # here, not at the top: reading ranks from the environment (reports, lineage) needs no torch

    if use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        return f"cuda:{dist.local_rank}"
    return "cpu"


def init_process_group(dist: DistEnv, device: str) -> None:
    """gloo on CPU, NCCL on GPU; a group of one for strategies that always need one (DeepSpeed)."""
    import torch

    if torch.distributed.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    timeout = timedelta(minutes=10)
    if is_loopback(dist.master_addr) and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        # every rank on this machine, and rank 0 serves the store (under torchrun its agent does, on loopback
        # too: cluster/backends/torchrun.py, and the ranks below are its clients)
        port = dist.master_port if dist.distributed else 0  # a group of one: no other rank looks for it
        store = loopback_store(dist.master_addr, port, dist.world_size, is_master=dist.rank == 0, timeout=timeout)
        torch.distributed.init_process_group(
            backend, store=store, rank=dist.rank, world_size=dist.world_size, timeout=timeout
        )
        return
    # across nodes, rank 0's store must be reachable from the others: torch's default (every interface) stays
    torch.distributed.init_process_group(backend, rank=dist.rank, world_size=dist.world_size, timeout=timeout)


def rendezvous_environment(dist: DistEnv):
    """The rendezvous variables of `dist` for the length of one run (torch's env:// rendezvous and DeepSpeed
    read them), then the previous values back, or every process this one starts later (a SLURM job,
    torchrun) would inherit a stale rank 0 of a world of 1. On one machine they include the loopback
    interface for gloo and NCCL, read whenever a process group is made (DeepSpeed makes some mid-run)."""
    port = dist.master_port if dist.distributed else free_port()
    variables = {
        "RANK": str(dist.rank),
        "WORLD_SIZE": str(dist.world_size),
        "LOCAL_RANK": str(dist.local_rank),
        "MASTER_ADDR": dist.master_addr,
        "MASTER_PORT": str(port),
    }
    interface = loopback_interface() if is_loopback(dist.master_addr) else None
    if interface:  # gloo and NCCL listen on loopback, unless the user chose their interface
        variables.update({name: interface for name in SOCKET_INTERFACE_VARIABLES if name not in os.environ})
    return temporary_environment(variables)


def barrier() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def destroy_process_group() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
