"""`paperzoo serve`: everything one user needs on loopback, a Prefect server (its SQLite database under
~/.paperzoo/prefect) and the deployments served from this process with `prefect.serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from components.core.errors import RunError

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def prefect_environment(home: Path, port: int) -> dict[str, str]:
    """Hermetic settings: our own PREFECT_HOME, loopback only, no analytics."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }


def wait_healthy(api_url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RunError(f"the Prefect server exited with code {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RunError(f"the Prefect server did not answer {api_url}/health within {timeout:.0f} s; see {log}")


def start_server(home: Path, port: int) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    env = {**os.environ, **prefect_environment(home, port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_healthy(env["PREFECT_API_URL"], process, log)
    return process


def deployments_from_prefect_yaml() -> list[dict]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


def serve(home: Path, port: int = 4200) -> None:
    server = start_server(home, port)
    os.environ.update(prefect_environment(home, port))
    try:
        from prefect import serve as prefect_serve

        from pipelines import flows

        by_entrypoint = {
            f"pipelines/flows.py:{function.__name__}": function
            for function in (
                flows.prepare_flow,
                flows.train_flow,
                flows.sweep_flow,
                flows.publish_flow,
                flows.reproduce_flow,
            )
        }
        served = [
            by_entrypoint[d["entrypoint"]].to_deployment(
                name=d["name"], parameters=d.get("parameters", {}), description=d.get("description")
            )
            for d in deployments_from_prefect_yaml()
        ]
        print(f"Prefect UI: http://127.0.0.1:{port}  (API http://127.0.0.1:{port}/api, data in {home})")
        print(f"In another shell: export PREFECT_API_URL=http://127.0.0.1:{port}/api")
        print("  prefect deployment run 'train/uba' --param preset=smoke --watch")
        prefect_serve(*served)
    finally:
        server.terminate()
        server.wait(timeout=30)
