"""`paperzoo serve`: everything one user needs on loopback, a Prefect server (its SQLite database under
~/.paperzoo/prefect) and the deployments of params.yaml (pipelines/deployments.py) served from this process
with `prefect.serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from components.core.errors import RunError

# How long to wait for a starting server's /health (a loaded machine takes tens of seconds; a server that
# exits is noticed at once). PAPERZOO_PREFECT_START_TIMEOUT overrides it, as the test suite does.
START_TIMEOUT_S = 300.0
# How often a worker (PREFECT_WORKER_QUERY_SECONDS) or `paperzoo serve`'s runner (PREFECT_RUNNER_POLL_FREQUENCY) asks
# the server for flow runs to start. Prefect's default, 10 s, leaves a new run waiting 5 s on average (benchmarks/
# prefect_latency.py); one query a second is a light load for a lab's server.
POLL_SECONDS = 1


def start_timeout() -> float:
    return float(os.environ.get("PAPERZOO_PREFECT_START_TIMEOUT") or START_TIMEOUT_S)


def prefect_environment(home: Path, port: int) -> dict[str, str]:
    """Hermetic settings: our own PREFECT_HOME, loopback only, no analytics; workers and runners poll every second."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_WORKER_QUERY_SECONDS": str(POLL_SECONDS),
        "PREFECT_RUNNER_POLL_FREQUENCY": str(POLL_SECONDS),
    }


def wait_healthy(api_url: str, process: subprocess.Popen, log: Path, timeout: float | None = None) -> None:
    timeout = start_timeout() if timeout is None else timeout
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
    raise RunError(
        f"the Prefect server did not answer {api_url}/health within {timeout:.0f} s (a busy machine? "
        f"PAPERZOO_PREFECT_START_TIMEOUT raises the wait); see {log}"
    )


def start_server(home: Path, port: int, timeout: float | None = None) -> subprocess.Popen:
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
    try:
        wait_healthy(env["PREFECT_API_URL"], process, log, timeout)
    except BaseException:
        stop_server(process)
        raise
    return process


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it was started in a session of its own), SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve(home: Path, port: int = 4200, params_file: Path = Path("params.yaml")) -> None:
    from pipelines.deployments import deployment_specs, served_deployments
    from pipelines.params import load_params

    specs = deployment_specs(load_params(params_file))  # a bad params.yaml fails before a server starts
    server = start_server(home, port)
    os.environ.update(prefect_environment(home, port))
    try:
        from prefect import serve as prefect_serve

        served = served_deployments(specs)
        print(f"Prefect UI: http://127.0.0.1:{port}  (API http://127.0.0.1:{port}/api, data in {home})")
        print(f"In another shell: export PREFECT_API_URL=http://127.0.0.1:{port}/api")
        print("  prefect deployment run 'train/uba' --param preset=smoke --watch")
        prefect_serve(*served)
    finally:
        stop_server(server)
