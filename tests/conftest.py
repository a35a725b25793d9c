"""Shared fixtures: the prepared digits dataset (made once per session) and the project's params."""

from __future__ import annotations

import copy
import os
import signal
import tempfile
from pathlib import Path

import pytest

from pipelines.params import dataset_specs, load_params

ROOT = Path(__file__).resolve().parent.parent

# Hermetic Prefect for every test: its own home, no analytics, no run heartbeats, quiet logs.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="pzprefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", None)  # unset: Prefect sends no heartbeats
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test reaches the Hub except through its loopback double
os.environ["DO_NOT_TRACK"] = "1"

# Start-up budgets, one number for every service a test starts: a loaded 2-core machine starts a Prefect
# server or a Ray node in tens of seconds, so each waits up to START_BUDGET_S (PAPERZOO_TEST_START_BUDGET_S
# overrides it) and then fails naming what it waited for. A service that dies is noticed at once, not after
# the budget. Set in the environment at import, before anything reads it, so subprocesses inherit it too.
START_BUDGET_S = int(os.environ.get("PAPERZOO_TEST_START_BUDGET_S") or 240)
START_BUDGETS = {
    "PAPERZOO_TEST_START_BUDGET_S": START_BUDGET_S,  # the tests' own waits (a worker online, a SLURM job, ...)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": START_BUDGET_S,  # a flow called without a server (20)
    "PAPERZOO_PREFECT_START_TIMEOUT": START_BUDGET_S,  # pipelines/serve.py's server (300 by default)
    "PAPERZOO_SLURM_START_TIMEOUT": START_BUDGET_S,  # cluster/slurm-local: munged's socket, the node idle (60)
    "RAY_gcs_server_port_wait_time_s": START_BUDGET_S,  # Ray's GCS: its port file and first connection (30)
    "RAY_py_gcs_connect_timeout_s": START_BUDGET_S,  # a driver's client connecting to the GCS (30)
    "RAY_raylet_start_wait_time_s": START_BUDGET_S,  # the GCS answering for a node still registering
    "RAY_worker_register_timeout_seconds": START_BUDGET_S,  # a Ray worker process registering (60)
}
os.environ.update({name: str(seconds) for name, seconds in START_BUDGETS.items()})


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with every dataset of params.yaml prepared exactly as it asks (all embedded, seconds)."""
    from pipelines.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    for name, spec in dataset_specs(load_params(ROOT / "params.yaml")).items():  # parents before derived
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
