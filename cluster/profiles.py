"""Cluster profiles (cluster/profiles/*.yaml): how much compute a run gets and which training strategy.

A profile applies to every backend: `local` and `torchrun` use processes/strategy/threads, `submitit`
also turns partition, nodes, GPUs, CPUs, memory and time into SLURM resources, `ray` uses the per-trial
CPUs and GPUs. The paper never picks the strategy; the profile does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from components.core.config import load_yaml, validate
from components.core.errors import ConfigError, did_you_mean

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "local"
    processes: int = Field(1, ge=1)  # training processes per node (one per GPU on a GPU node)
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)  # 0: CPU training (gloo)
    cpus_per_task: int = Field(1, ge=1)
    mem_gb: float = Field(4, gt=0)
    timeout_min: int = Field(60, ge=1)  # SLURM time limit; submitit counts preemptions as timeouts below 15
    partition: str | None = None
    strategy: Literal["plain", "ddp", "deepspeed"] = "plain"
    deepspeed_config: str | None = None  # a JSON file in cluster/deepspeed/ (ZeRO stage, offload, precision)
    threads: int = Field(1, ge=1)  # torch threads per process, pinned so CPU metrics are bit-exact
    slurm_extra: dict[str, Any] = Field(default_factory=dict)  # passed to submitit as slurm_additional_parameters

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes

    def strategy_options(self) -> dict[str, Any]:
        if self.strategy != "deepspeed":
            return {}
        path = Path(self.deepspeed_config or "zero0.json")
        if not path.is_absolute() and not path.exists():
            path = DEEPSPEED_DIR / path
        if not path.is_file():
            raise ConfigError(
                f"profile {self.name}: deepspeed_config '{self.deepspeed_config}' not found (looked in {DEEPSPEED_DIR})"
            )
        import json

        try:
            return {"config": json.loads(path.read_text()), "config_file": str(path)}
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path | None = None) -> Profile:
    """A name in cluster/profiles/ ('local', 'cpu-ddp2', ...) or a path to a YAML file."""
    if name_or_path is None:
        return Profile()
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown profile '{name_or_path}'{did_you_mean(str(name_or_path), available_profiles())}; "
            f"profiles: {', '.join(available_profiles())}"
        )
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    profile = validate(Profile, data, scope=f"profile {path.stem}")
    profile.strategy_options()  # a missing DeepSpeed config is an error now, not on the cluster
    return profile
