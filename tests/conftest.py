"""Shared fixtures: the prepared digits dataset (made once per session) and the project's params."""

from __future__ import annotations

import copy
import os
import signal
import tempfile
from pathlib import Path

import pytest

from pipelines.params import load_params

ROOT = Path(__file__).resolve().parent.parent

# Hermetic Prefect for every test: its own home, no analytics, no run heartbeats, quiet logs.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="pzprefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", None)  # unset: Prefect sends no heartbeats
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test reaches the Hub except through its loopback double
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with every dataset of params.yaml prepared exactly as it asks (all embedded, seconds)."""
    from pipelines.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    for name, spec in load_params(ROOT / "params.yaml")["datasets"].items():
        prepare(name, dict(spec), root)
    return root


@pytest.fixture
def params() -> dict:
    return copy.deepcopy(load_params(ROOT / "params.yaml"))


class PreemptAt:
    """A metrics sink that sends this process SIGTERM at a given step, as SLURM does before preemption."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, metrics, step=None):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def preempt_at():
    return PreemptAt
