"""Prefect for real: a server on loopback, the prefect.yaml deployments on a process work pool with a
worker, `prefect deployment run 'train/uba' --watch` end to end, and a malformed parameter rejected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.distributed import free_port
from pipelines.serve import deployments_from_prefect_yaml, prefect_environment, start_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def prefect(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A Prefect server, the deployments and a process worker; all stopped by pid afterwards."""
    home = tmp_path_factory.mktemp("prefect")
    port = free_port()
    env = {
        **os.environ,
        **prefect_environment(home, port),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    server = start_server(home, port)
    worker = None
    try:
        created = prefect("work-pool", "create", "paperzoo", "--type", "process", env=env)
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = prefect("--no-prompt", "deploy", "--all", env=env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "paperzoo"],
            cwd=ROOT,
            env=env,
            stdout=open(home / "worker.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        yield env
    finally:
        if worker is not None:
            stop(worker)
        stop(server)


def test_every_prefect_yaml_deployment_names_a_flow():
    from pipelines.flows import FLOWS

    names = {function.fn.__name__ for function in FLOWS.values()}
    for deployment in deployments_from_prefect_yaml():
        path, function = deployment["entrypoint"].split(":")
        assert path == "pipelines/flows.py" and function in names
        assert deployment["enforce_parameter_schema"] is True


def test_every_component_and_sweep_has_a_deployment(params):
    deployments = deployments_from_prefect_yaml()
    trained = {d["parameters"]["component"] for d in deployments if d["entrypoint"].endswith(":train_flow")}
    swept = {d["parameters"]["sweep"] for d in deployments if d["entrypoint"].endswith(":sweep_flow")}
    assert trained == set(params["components"])
    assert swept == set(params["sweeps"])


def test_deployment_run_trains_uba(prefect_env, data_root, tmp_path):
    started = time.perf_counter()
    done = prefect(
        "deployment",
        "run",
        "train/uba",
        "--param",
        "preset=test",
        "--param",
        f"run_root={tmp_path}",
        "--param",
        f"data_dir={data_root}",
        "--param",
        'overrides={"schedule.phi": 0.5}',
        "--watch",
        env=prefect_env,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "uba").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["val/acc"] <= 1
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["overrides"] == {"schedule": {"phi": 0.5}}
    print(f"prefect deployment run --watch: {elapsed:.1f} s")


def test_malformed_parameter_is_rejected_with_its_name(prefect_env, tmp_path):
    done = prefect(
        "deployment",
        "run",
        "train/uba",
        "--param",
        "seed=abc",
        "--param",
        f"run_root={tmp_path}",
        env=prefect_env,
        timeout=120,
    )
    assert done.returncode != 0
    assert "seed" in done.stdout + done.stderr
    assert not (tmp_path / "uba").exists()
