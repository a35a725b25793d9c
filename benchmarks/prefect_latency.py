"""End-to-end latency of `prefect deployment run 'train/uba' --watch` (server, process worker, flow run)
against the same uba smoke run from the CLI, side by side in one session. Prints a table.

    python benchmarks/prefect_latency.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.distributed import free_port  # noqa: E402
from pipelines.serve import prefect_environment, start_server  # noqa: E402


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pzprefect-") as tmp:
        home, port = Path(tmp) / "home", free_port()
        env = {
            **os.environ,
            **prefect_environment(home, port),
            "CI": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        server = start_server(home, port)
        prefect = [sys.executable, "-m", "prefect"]
        worker = None
        try:
            timed([sys.executable, "-m", "pipelines.cli", "deploy"], env)  # the process pool and every deployment
            worker = subprocess.Popen(
                prefect + ["worker", "start", "--pool", "paperzoo"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            rows = []
            for attempt in range(2):
                cli = timed(["paperzoo", "run", "uba", "--run-root", f"{tmp}/cli{attempt}"], env)
                flow = timed(
                    prefect + ["deployment", "run", "train/uba", "--param", f"run_root={tmp}/flow{attempt}", "--watch"],
                    env,
                )
                rows.append((attempt + 1, cli, flow))
        finally:
            for process in (worker, server):
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=30)
    print("| attempt | paperzoo run uba (s) | prefect deployment run 'train/uba' --watch (s) | ratio |")
    print("|---|---|---|---|")
    for attempt, cli, flow in rows:
        print(f"| {attempt} | {cli:.2f} | {flow:.2f} | {flow / cli:.2f}x |")


if __name__ == "__main__":
    main()
