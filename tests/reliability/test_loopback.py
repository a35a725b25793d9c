"""Everything paperzoo starts on one machine listens on loopback only: a torchrun run (its agent's rendezvous
store and its ranks' gloo sockets), the ranks of a one-node SLURM job (rank 0's store, gloo), a private Ray,
the Prefect server and the local SLURM. Each service is started for real and, while it runs, every TCP
socket its processes listen on and every UDP socket they bind is sampled; each must be on 127.0.0.1 or ::1."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

from cluster.distributed import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
START_BUDGET_S = float(os.environ.get("PAPERZOO_TEST_START_BUDGET_S") or 240)  # tests/conftest.py sets it
SAMPLE_EVERY_S = 0.1
SETTLE_S = 2.0  # how long a started service is watched after it is up, for sockets it opens late


class Listener(NamedTuple):
    process: str
    pid: int
    kind: str  # tcp or udp
    ip: str
    port: int


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def tree(roots: Iterable[psutil.Process]) -> dict[int, str]:
    """pid -> name of the roots and all their descendants that are alive now."""
    found = {}
    for root in roots:
        try:
            for process in [root, *root.children(recursive=True)]:
                found[process.pid] = process.name()
        except psutil.Error:
            pass
    return found


class Watch(threading.Thread):
    """Samples, until stopped, every listening TCP socket and bound UDP socket of the processes `roots` names."""

    def __init__(self, roots: Callable[[], list[psutil.Process]]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.seen: set[Listener] = set()
        self.done = threading.Event()

    def sample(self) -> None:
        pids = tree(self.roots())
        for conn in psutil.net_connections(kind="inet"):
            listening = conn.status == psutil.CONN_LISTEN or (conn.type == 2 and conn.status == psutil.CONN_NONE)
            if conn.pid in pids and listening and conn.laddr:
                kind = "udp" if conn.type == 2 else "tcp"  # SOCK_DGRAM
                self.seen.add(Listener(pids[conn.pid], conn.pid, kind, conn.laddr.ip, conn.laddr.port))

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join()


def processes(*pids: int) -> list[psutil.Process]:
    alive = []
    for pid in pids:
        try:
            alive.append(psutil.Process(pid))
        except psutil.Error:
            pass
    return alive


def under_a_routable_host_name() -> list[str]:
    """A command prefix that runs a command under a host name resolving to this machine's first non-loopback
    address (a UTS namespace: needs root and unshare), or nothing. Where the machine's name resolves to
    127.0.0.1, gloo left to itself would bind loopback anyway and the test could not tell."""
    routable = [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family == socket.AF_INET and not is_loopback(address.address)
    ]
    if not routable or os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    prefix = ["unshare", "--uts", "sh", "-c", f'hostname {routable[0]} && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


def spec_file(tmp_path: Path, request: pytest.FixtureRequest, profile: str, backend: str) -> Path:
    """A uba run at its test preset, long enough to be watched while its ranks talk."""
    from cluster.launch import LaunchSpec
    from cluster.profiles import load_profile
    from cluster.runner import plan_run

    data_root, params = request.getfixturevalue("data_root"), request.getfixturevalue("params")
    run = plan_run("uba", params, preset="test", overrides=["budget=60"], seed=3, data_dir=data_root)
    spec = LaunchSpec.from_request(run, tmp_path / "run", data_root, load_profile(profile), backend=backend)
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    return path


def watch_ranks(tmp_path: Path, launchers: list[subprocess.Popen], log: Path) -> set[Listener]:
    try:
        with Watch(lambda: processes(*(launcher.pid for launcher in launchers))) as watch:
            for launcher in launchers:
                launcher.wait(timeout=START_BUDGET_S)
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
    assert all(launcher.returncode == 0 for launcher in launchers), log.read_text()[-2000:]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"
    return watch.seen


def watch_torchrun(tmp_path: Path, request: pytest.FixtureRequest) -> set[Listener]:
    """Two ranks over gloo through the torchrun backend's own command, watched until the run ends (under a
    routable host name where possible: see under_a_routable_host_name)."""
    from cluster.backends.torchrun import torchrun_command

    spec = spec_file(tmp_path, request, "cpu-ddp2", "torchrun")
    log = tmp_path / "torchrun.log"
    launcher = subprocess.Popen(
        [*under_a_routable_host_name(), *torchrun_command(spec, 2)],  # exec: the launcher keeps its pid
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    seen = watch_ranks(tmp_path, [launcher], log)
    assert len({s.pid for s in seen}) >= 3, f"not seen listening: the agent and both ranks: {seen}"
    return seen


def free_slurm_job_id() -> int:
    """A job id whose rendezvous port (cluster/distributed.py: 20000 + id % 20000) is free now."""
    while True:
        port = free_port()
        if 20000 <= port < 40000:
            return port - 20000


def watch_slurm_ranks(tmp_path: Path, request: pytest.FixtureRequest) -> set[Listener]:
    """The two tasks of a one-node SLURM job without torchrun (what `--backend submitit` runs: rank 0 serves
    the store itself), started here with the variables SLURM gives them."""
    spec = spec_file(tmp_path, request, "cpu-ddp2", "submitit")
    log = tmp_path / "ranks.log"
    job = {
        "SLURM_JOB_ID": str(free_slurm_job_id()),
        "SLURM_NTASKS": "2",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": socket.gethostname(),
        "OMP_NUM_THREADS": "1",
    }
    unrelated = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    base = {name: value for name, value in os.environ.items() if name not in unrelated}
    launchers = [
        subprocess.Popen(
            [*under_a_routable_host_name(), sys.executable, "-m", "cluster.launch", str(spec)],
            cwd=ROOT,
            env={**base, **job, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    seen = watch_ranks(tmp_path, launchers, log)
    assert {s.pid for s in seen} == {launcher.pid for launcher in launchers}, f"not seen listening: {seen}"
    return seen


def watch_ray(tmp_path: Path, request: pytest.FixtureRequest) -> set[Listener]:
    """The private Ray of cluster/backends/ray_backend.py, with one task run so that a worker starts."""
    import ray

    from cluster.backends.ray_backend import local_ray

    request.getfixturevalue("monkeypatch").delenv("RAY_ADDRESS", raising=False)
    with Watch(lambda: [psutil.Process()]) as watch:  # the driver (this process) listens too
        with local_ray(num_cpus=1):
            probe = ray.remote(num_cpus=1)(lambda: os.getpid())  # a lambda travels by value to the worker
            worker = ray.get(probe.remote(), timeout=START_BUDGET_S)
            time.sleep(SETTLE_S)
    names = {s.process for s in watch.seen}
    assert {"gcs_server", "raylet"} <= names, f"Ray's daemons never seen listening: {watch.seen}"
    assert worker in {s.pid for s in watch.seen}, f"Ray's worker {worker} never seen listening: {watch.seen}"
    return watch.seen


def watch_prefect(tmp_path: Path, request: pytest.FixtureRequest) -> set[Listener]:
    """`paperzoo serve`'s Prefect server (pipelines/serve.py), up and answering /health."""
    from pipelines.serve import start_server, stop_server

    port = free_port()
    server = start_server(tmp_path / "prefect", port)  # waits for /health within the start-up budget
    try:
        with Watch(lambda: processes(server.pid)) as watch:
            time.sleep(SETTLE_S)
    finally:
        stop_server(server)
    assert port in {s.port for s in watch.seen}, f"the server never seen listening on {port}: {watch.seen}"
    return watch.seen


def watch_slurm(tmp_path: Path, request: pytest.FixtureRequest) -> set[Listener]:
    """cluster/slurm-local's munged, slurmctld and slurmd: a private instance (its own folder and ports), so
    that a cluster someone else runs here is neither reused nor stopped."""
    state = tempfile.mkdtemp(prefix="pzslurm-", dir="/tmp")  # munge's socket path must stay short
    env = {
        **os.environ,
        "PAPERZOO_SLURM_DIR": state,
        "PAPERZOO_SLURMCTLD_PORT": str(free_port()),
        "PAPERZOO_SLURMD_PORT": str(free_port()),
    }

    def slurm_local(command: str) -> subprocess.CompletedProcess:
        # `up` waits up to the budget for munged, then for the node (and installs SLURM the first time)
        timeout = 900 + 2 * START_BUDGET_S + 60
        return subprocess.run(
            [str(ROOT / "cluster" / "slurm-local"), command], env=env, capture_output=True, text=True, timeout=timeout
        )

    def daemons() -> list[psutil.Process]:
        files = [Path(state) / f"{name}.pid" for name in ("munged", "slurmctld", "slurmd")]
        return processes(*(int(f.read_text().strip()) for f in files if f.is_file() and f.read_text().strip()))

    try:
        started = slurm_local("up")
        assert started.returncode == 0, started.stdout + started.stderr
        with Watch(daemons) as watch:
            time.sleep(SETTLE_S)
    finally:
        stopped = slurm_local("down")
        shutil.rmtree(state, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    names = {s.process for s in watch.seen}
    assert {"slurmctld", "slurmd"} <= names, f"SLURM's daemons never seen listening: {watch.seen}"
    return watch.seen


SERVICES = {
    "torchrun": watch_torchrun,
    "slurm-ranks": watch_slurm_ranks,
    "ray": watch_ray,
    "prefect": watch_prefect,
    "slurm": watch_slurm,
}


@pytest.mark.parametrize("service", SERVICES)
def test_service_listens_on_loopback_only(service, tmp_path, request):
    seen = SERVICES[service](tmp_path, request)
    print(f"{service} listens on:", *sorted(seen), sep="\n  ")  # shown with -s or on failure
    assert seen, f"{service}: nothing seen listening"
    exposed = sorted(s for s in seen if not is_loopback(s.ip))
    assert not exposed, f"{service} listens beyond loopback: {exposed}"
