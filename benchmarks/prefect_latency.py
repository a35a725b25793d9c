"""End-to-end latency of `prefect deployment run 'train/uba' --watch` (server, process worker, flow run)
against the same uba run from the CLI, interleaved in one session, and where the difference goes.

    python benchmarks/prefect_latency.py [--attempts 3] [--preset smoke] [--default-poll-attempts 2]

One Prefect server on loopback, `paperzoo deploy`, then a process worker polling as paperzoo's settings say
(pipelines/serve.py: POLL_SECONDS); each attempt runs `paperzoo run uba`, then the deployment with --watch, then
the deployment from Python (run_deployment), one after the other. A last phase restarts the worker at Prefect's
default poll (10 s), which was most of the gap before. The breakdown of each flow run comes from the server's state timestamps and the run's own run.json:
  submit  `prefect deployment run` starting and creating the flow run (its imports, one API call)
  poll    scheduled -> pending: the worker noticing the run (its query interval)
  start   pending -> running: the worker's subprocess starting (python, Prefect's import, loading the flow)
  task    running -> task end, less the run itself: the flow and task machinery, `operations` resolving the run
  run     run.json's wall_seconds: the training, as the CLI run pays it too
  finish  task end -> the caller returning: `--watch` streams events, then waits for 3 s without a new log or
          event (Prefect's FlowRunSubscriber straggler_timeout, not configurable from the CLI); the row
          `run_deployment(poll_interval=0.5)` is the same run waited for from Python, without that wait
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from summary import add_row  # noqa: E402 - benchmarks/summary.py, beside this script

from cluster.distributed import free_port  # noqa: E402
from pipelines.datasets import prepare  # noqa: E402
from pipelines.params import load_params  # noqa: E402
from pipelines.serve import POLL_SECONDS, prefect_environment, start_server, stop_server  # noqa: E402

PREFECT_DEFAULT_POLL_S = 10  # PREFECT_WORKER_QUERY_SECONDS when nobody sets it


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.time()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return start, done.stdout


def api(env: dict[str, str], route: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}/{route}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def breakdown(env: dict[str, str], output: str, submitted: float, ended: float, run_root: Path) -> dict[str, float]:
    """Seconds per phase of one flow run (see the module's docstring)."""
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    states = {s["type"]: stamp(s["timestamp"]) for s in api(env, f"flow_run_states/?flow_run_id={flow_run_id}")}
    flow_run = api(env, f"flow_runs/{flow_run_id}")
    (task_run,) = api(env, "task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    (info,) = [json.loads(p.read_text()) for p in run_root.glob("uba/*/run.json")]
    created, task_end = stamp(flow_run["created"]), stamp(task_run["end_time"])
    return {
        "submit": created - submitted,
        "poll": states["PENDING"] - states["SCHEDULED"],
        "start": states["RUNNING"] - states["PENDING"],
        "task": task_end - states["RUNNING"] - info["wall_seconds"],
        "run": info["wall_seconds"],
        "finish": ended - task_end,
    }


def start_worker(env: dict[str, str], poll_s: float, log: Path) -> subprocess.Popen:
    name = f"bench-poll-{poll_s:g}s"
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "paperzoo", "--name", name],
        cwd=ROOT,
        env={**env, "PREFECT_WORKER_QUERY_SECONDS": str(poll_s)},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the server lists it ONLINE, so no run waits for its start-up
        workers = api(env, "work_pools/paperzoo/workers/filter", {})
        if any(w["name"] == name and w["status"] == "ONLINE" for w in workers):
            return worker
        if worker.poll() is not None:
            sys.exit(f"the worker exited; see {log}")
        time.sleep(0.5)
    sys.exit(f"the worker never came online; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=3, help="CLI and deployment runs, interleaved")
    parser.add_argument("--preset", default="smoke", help="uba's preset for both (the issue measured smoke)")
    parser.add_argument("--default-poll-attempts", type=int, default=2, help="deployment runs at Prefect's 10 s poll")
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    args = parser.parse_args()

    rows: list[tuple[str, float, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="pzprefect-") as tmp:
        home, port, data = Path(tmp) / "home", free_port(), Path(tmp) / "data"
        prepare("images/digits", dict(load_params(ROOT / "params.yaml")["datasets"]["images/digits"]), data)
        env = {
            **os.environ,
            **prefect_environment(home, port),
            "CI": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        server = start_server(home, port)
        worker = None
        counter = iter(range(10**6))

        def cli_run() -> float:
            root = f"{tmp}/cli{next(counter)}"
            start, _ = timed(
                ["paperzoo", "run", "uba", "--preset", args.preset, "--data-dir", str(data)] + ["--run-root", root], env
            )
            return time.time() - start

        def flow_run() -> tuple[float, dict[str, float]]:
            root = Path(f"{tmp}/flow{next(counter)}")
            params = [f"preset={args.preset}", f"data_dir={data}", f"run_root={root}"]
            command = [sys.executable, "-m", "prefect", "deployment", "run", "train/uba", "--watch"]
            start, output = timed(command + [item for p in params for item in ("--param", p)], env)
            ended = time.time()
            return ended - start, breakdown(env, output, start, ended, root)

        def api_run() -> tuple[float, dict[str, float]]:
            """The same deployment from Python, waiting by polling the run's state: no --watch straggler wait."""
            root = Path(f"{tmp}/api{next(counter)}")
            params = {"preset": args.preset, "data_dir": str(data), "run_root": str(root)}
            script = (
                "from prefect.deployments import run_deployment\n"
                f"run = run_deployment('train/uba', parameters={params!r}, poll_interval=0.5)\n"
                "assert run.state.is_completed(), run.state\n"
                "print('UUID:', run.id)\n"
            )
            start, output = timed([sys.executable, "-c", script], env)
            ended = time.time()
            return ended - start, breakdown(env, output, start, ended, root)

        try:
            timed([sys.executable, "-m", "pipelines.cli", "deploy"], env)  # the process pool and every deployment
            worker = start_worker(env, POLL_SECONDS, home / "worker.log")
            flow_run()  # warm-up: the page cache, the server's first queries
            for _ in range(args.attempts):
                cli = cli_run()
                flow, parts = flow_run()
                rows.append((f"--watch, worker poll {POLL_SECONDS} s (paperzoo)", cli, flow, parts))
                print(rows[-1], flush=True)
                api, parts = api_run()
                rows.append((f"run_deployment(poll_interval=0.5), worker poll {POLL_SECONDS} s", cli, api, parts))
                print(rows[-1], flush=True)
            stop_server(worker)  # SIGTERM to its process group; the next worker is the only one polling
            worker = start_worker(env, PREFECT_DEFAULT_POLL_S, home / "worker-default.log")
            for _ in range(args.default_poll_attempts):
                cli = cli_run()
                flow, parts = flow_run()
                rows.append((f"--watch, worker poll {PREFECT_DEFAULT_POLL_S} s (Prefect's default)", cli, flow, parts))
                print(rows[-1], flush=True)
        finally:
            for process in (worker, server):
                if process is not None:
                    stop_server(process)  # SIGTERM to its process group, SIGKILL after 30 s

    phases = list(rows[0][3])
    print(f"uba --preset {args.preset}; seconds; each deployment run beside a CLI run made just before it")
    print("| path | paperzoo run (s) | deployment run (s) | extra (s) | ratio | " + " | ".join(phases) + " |")
    print("|---|---|---|---|---|" + "---|" * len(phases))
    for label, cli, flow, parts in rows:
        shown = " | ".join(f"{parts[p]:.2f}" for p in phases)
        print(f"| {label} | {cli:.2f} | {flow:.2f} | {flow - cli:+.2f} | {flow / cli:.2f}x | {shown} |")
    for prefix, row in (
        ("--watch, worker poll", "`prefect deployment run 'train/uba' --watch` vs the same CLI run"),
        ("run_deployment", "the same deployment run from Python (`run_deployment`) vs the CLI run"),
    ):
        extra = min(flow - cli for label, cli, flow, _ in rows if label.startswith(prefix) and "default" not in label)
        add_row(args.summary, row, f"{extra:+.1f} s per run", "<= +2 s", extra <= 2.0)


if __name__ == "__main__":
    main()
