"""The ray backend for real: a private local Ray on loopback, Tune trials of the uba component at its test preset.

The first test lets the backend start and stop its own Ray (the default path) and checks that it is
hermetic; the others share one Ray started by a module fixture, since each start costs seconds.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from pathlib import Path

import psutil
import pytest
import ray

from cluster.backends import get_backend
from cluster.backends.ray_backend import local_ray
from cluster.launch import LaunchSpec
from cluster.profiles import Profile
from cluster.runner import plan_run
from pipelines.sweep import expand_sweep

pytestmark = pytest.mark.integration

RAY_DAEMONS = ("raylet", "gcs_server")


@pytest.fixture(autouse=True)
def no_ambient_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the backend would connect to it instead of its own Ray


def make_specs(params, data_root, root: Path, points, backend: str, evaluations: int = 0) -> list[LaunchSpec]:
    specs = []
    for index, (overrides, seed) in enumerate(points):
        request = plan_run("uba", params, preset="test", overrides=overrides, seed=seed, data_dir=data_root)
        folder = root / f"{index:03d}-s{seed}"
        specs.append(LaunchSpec.from_request(request, folder, data_root, backend=backend, evaluations=evaluations))
    return specs


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class Watch(threading.Thread):
    """Samples, while the backend runs, the descendants it starts and every socket they listen on or bind.

    Children alive before the watch (multiprocessing's resource tracker, which an earlier test's spawned
    worker leaves for the life of this process) are not the backend's and are left out.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.before = {(child.pid, child.create_time()) for child in psutil.Process().children(recursive=True)}
        self.sockets: set[tuple[str, str, int]] = set()
        self.processes: dict[tuple[int, float], str] = {}  # (pid, start time) -> name
        self.temp_dirs: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.done.is_set():
            for process in [me, *me.children(recursive=True)]:
                try:
                    name = process.name()
                    if process.pid != me.pid and (process.pid, process.create_time()) not in self.before:
                        self.processes[(process.pid, process.create_time())] = name
                    if name in RAY_DAEMONS:
                        self.temp_dirs |= {
                            arg.split("=", 1)[1]
                            for arg in process.cmdline()
                            if arg.startswith(("--temp_dir=", "--temp-dir="))
                        }
                    for conn in process.net_connections(kind="inet"):
                        if conn.status in (psutil.CONN_LISTEN, psutil.CONN_NONE) and conn.laddr:
                            self.sockets.add((name, conn.laddr.ip, conn.laddr.port))
                except psutil.Error:
                    pass
            self.done.wait(0.3)


def still_running(processes: dict[tuple[int, float], str]) -> list[str]:
    alive = []
    for (pid, started), name in processes.items():
        try:
            if psutil.Process(pid).create_time() == started:
                alive.append(f"{name} ({pid})")
        except psutil.NoSuchProcess:
            pass
    return alive


def test_backend_starts_a_loopback_ray_and_leaves_nothing_running(params, data_root, tmp_path):
    assert not ray.is_initialized(), "this test checks the backend's own Ray: it must run before the shared one"
    specs = make_specs(params, data_root, tmp_path / "trials", [({"schedule.phi": 2}, 0)], "ray")
    watch = Watch()
    watch.start()
    try:
        (outcome,) = get_backend("ray")(specs, Profile(), workdir=tmp_path / "sweep", metric="val/loss")
    finally:
        watch.done.set()
        watch.join()
    assert outcome.status == "completed", outcome.error
    assert set(RAY_DAEMONS) <= {name for name, _, _ in watch.sockets}, f"Ray never seen listening: {watch.sockets}"
    exposed = sorted(entry for entry in watch.sockets if not is_loopback(entry[1]))
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert not ray.is_initialized()
    assert not still_running(watch.processes), f"outlived the backend: {still_running(watch.processes)}"
    assert watch.temp_dirs and all(d.startswith("/tmp/pzray-") for d in watch.temp_dirs), watch.temp_dirs
    assert not any(Path(d).exists() for d in watch.temp_dirs), "Ray's temporary folder was left behind"
    assert (tmp_path / "sweep" / "tune" / "trial-000").is_dir()  # Tune's own files are under workdir


@pytest.fixture(scope="module")
def shared_ray():
    with local_ray(num_cpus=2):
        yield


def test_ray_trials_equal_local_trials_bit_for_bit(params, data_root, tmp_path, shared_ray):
    grid = {"schedule.phi": [0.5, 2, 5], "optimizer": ["adamw"]}
    points = [(trial.overrides, trial.seed) for trial in expand_sweep(params["sweeps"]["uba_phi"], grid, [1])]
    assert len(points) == 3
    on_ray = get_backend("ray")(
        make_specs(params, data_root, tmp_path / "ray", points, "ray"),
        Profile(),
        workdir=tmp_path / "sweep",
        metric="val/loss",
        mode="min",
    )
    here = get_backend("local")(
        make_specs(params, data_root, tmp_path / "local", points, "local"),
        Profile(),
        workdir=tmp_path / "local-sweep",
        metric="val/loss",
        mode="min",
    )
    assert [o.status for o in on_ray] == ["completed"] * 3
    assert [o.metrics for o in on_ray] == [o.metrics for o in here]
    assert len({o.metrics["val/loss"] for o in on_ray}) == 3  # three different trials, not one run thrice
    for ray_outcome, local_outcome in zip(on_ray, here):
        curves = [Path(o.spec.run_dir, "metrics.jsonl").read_text() for o in (ray_outcome, local_outcome)]
        assert curves[0] == curves[1]
        info = json.loads(Path(ray_outcome.spec.run_dir, "run.json").read_text())
        assert info["backend"] == "ray" and info["threads"] == 1


def test_diverging_trial_fails_and_the_other_finishes(params, data_root, tmp_path, shared_ray):
    specs = make_specs(params, data_root, tmp_path / "trials", [({"lr": 0.05}, 0), ({"lr": 1e6}, 0)], "ray")
    good, bad = get_backend("ray")(specs, Profile(), workdir=tmp_path / "sweep", metric="val/loss")
    assert good.status == "completed" and "val/loss" in good.metrics
    assert bad.status == "failed" and "diverged at step" in bad.error and "\n" not in bad.error
    assert json.loads(Path(bad.spec.run_dir, "run.json").read_text())["status"] == "failed"


def test_asha_stops_a_lagging_trial_and_its_run_says_so(params, data_root, tmp_path, shared_ray):
    # No eval_every override: the uba_phi sweep's own `evaluations` makes the trials report val/loss mid-run.
    # One trial at a time, so the good one sets every rung before the slow one reaches it.
    evaluations = params["sweeps"]["uba_phi"]["evaluations"]
    points = [({}, 0), ({"lr": 1e-5}, 0)]
    specs = make_specs(params, data_root, tmp_path / "trials", points, "ray", evaluations=evaluations)
    good, slow = get_backend("ray")(specs, Profile(), workdir=tmp_path / "sweep", metric="val/loss", max_concurrent=1)
    assert good.status == "completed"
    assert slow.status == "stopped" and "ASHA" in slow.error
    info = json.loads(Path(slow.spec.run_dir, "run.json").read_text())
    assert info["status"] == "stopped"
    records = [json.loads(line) for line in Path(slow.spec.run_dir, "metrics.jsonl").read_text().splitlines()]
    evaluations = [record for record in records if "val/loss" in record]
    assert slow.metrics["val/loss"] == evaluations[-1]["val/loss"] > good.metrics["val/loss"]
    assert len(evaluations) < 8  # stopped before its budget: 30 steps, val/loss at 7 points and the end


def test_a_sweep_ranked_at_the_end_declares_no_scheduler_and_ray_says_so(params, capsys):
    # every params.yaml sweep whose metric only exists at the end of a run says `scheduler: none`; the Ray backend
    # then runs plain FIFO and tells the user why, instead of an ASHA that could stop nothing
    from ray.tune.schedulers import ASHAScheduler

    from cluster.backends.ray_backend import make_scheduler

    assert make_scheduler("none", "test/acc", "max") is None
    assert "no early stopping" in capsys.readouterr().out
    assert isinstance(make_scheduler("asha", "val/loss", "min"), ASHAScheduler)
    declared = {name: sweep.get("scheduler", "asha") for name, sweep in params["sweeps"].items()}
    assert declared["lion_vs_sgd"] == declared["adamw_l1_optimizers"] == "none"  # final/train_loss, loglog_slope
    assert declared["uba_phi"] == "asha"  # val/loss, a training curve
