"""Prefect for real: a server on loopback, `paperzoo deploy` registering the deployments of params.yaml on a
process work pool with a worker, `prefect deployment run 'train/uba' --watch` end to end, and a malformed
parameter rejected. The deployments themselves come from one function, checked without a server first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cluster.distributed import free_port
from pipelines.deployments import deployment_specs, served_deployments
from pipelines.serve import prefect_environment, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
START_BUDGET_S = float(os.environ.get("PAPERZOO_TEST_START_BUDGET_S") or 240)  # tests/conftest.py sets it
RUN_TIMEOUT_S = 300 + START_BUDGET_S  # a flow run: a worker's subprocess starting, then a test-preset training
pytestmark = pytest.mark.integration


def prefect(*args: str, env: dict[str, str], timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def api(env: dict[str, str], route: str, body: dict) -> list[dict]:
    """POST to the server's REST API (the filter routes), as the prefect client would."""
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_for_worker(env: dict[str, str], pool: str, worker: subprocess.Popen, log: Path) -> None:
    """Until a worker of `pool` is ONLINE on the server, within the start-up budget; fails naming what it waited for."""
    deadline = time.monotonic() + START_BUDGET_S
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the Prefect worker exited with code {worker.returncode}; see {log}"
        if any(w["status"] == "ONLINE" for w in api(env, f"work_pools/{pool}/workers/filter", {})):
            return
        time.sleep(0.5)
    pytest.fail(f"no Prefect worker of pool {pool} came ONLINE within {START_BUDGET_S:.0f} s; see {log}")


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A Prefect server, `paperzoo deploy` and a process worker; all stopped by pid afterwards."""
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
        deployed = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "deploy", "--pool", "paperzoo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert (
            "created work pool paperzoo" in deployed.stdout
            and "prefect worker start --pool paperzoo" in deployed.stdout
        )
        log = home / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "paperzoo"],
            cwd=home,  # anywhere: the deployments name the project folder as their working directory
            env=env,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_worker(env, "paperzoo", worker, log)
        yield env
    finally:
        if worker is not None:
            stop_server(worker)  # the same: SIGTERM to its process group, SIGKILL after 30 s
        stop_server(server)


def test_start_budgets_reach_prefect():
    """tests/conftest.py's budget is what Prefect's ephemeral server (a flow called without a server) waits."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    from pipelines.serve import start_timeout

    assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == START_BUDGET_S == start_timeout() >= 180


def test_specs_cover_every_component_sweep_and_dataset(params):
    from pipelines.flows import FLOWS

    specs = deployment_specs(params)
    names = [spec.full_name for spec in specs]
    assert len(names) == len(set(names))
    assert all(spec.flow in FLOWS and FLOWS[spec.flow].name == spec.flow for spec in specs)
    by_flow = {flow: {spec.name: spec.parameters for spec in specs if spec.flow == flow} for flow in FLOWS}
    assert by_flow["train"] == {slug: {"component": slug} for slug in params["components"]}
    assert by_flow["sweep"] == {name: {"sweep": name} for name in params["sweeps"]}
    every_dataset = {*params["datasets"], *(params.get("derived_datasets") or {})}  # derived ones are prepared too
    assert {p["dataset"] for p in by_flow["prepare"].values()} == every_dataset
    assert by_flow["prepare"]["digits"] == {"dataset": "images/digits"}  # the short name users type
    assert by_flow["publish"] == {"hub": {}} and by_flow["reproduce"] == {"all": {}}


def test_a_new_paper_in_params_is_a_new_deployment(params):
    params["components"].append("toy")  # deployment_specs reads params only: no prefect.yaml to edit
    params["sweeps"]["toy_lr"] = {"component": "toy", "grid": {"lr": [0.1, 1]}}
    params["datasets"]["series/digits"] = {"source": "two-sine"}  # shares a short name with images/digits
    names = {spec.full_name: spec.parameters for spec in deployment_specs(params)}
    assert names["train/toy"] == {"component": "toy"} and names["sweep/toy_lr"] == {"sweep": "toy_lr"}
    assert names["prepare/images-digits"] == {"dataset": "images/digits"}
    assert names["prepare/series-digits"] == {"dataset": "series/digits"}


def test_serve_and_deploy_use_the_same_deployments(params):
    specs = deployment_specs(params)
    served = served_deployments(specs)  # what `paperzoo serve` hands to prefect.serve
    assert [f"{d.flow_name}/{d.name}" for d in served] == [spec.full_name for spec in specs]
    assert all(d.enforce_parameter_schema and d.entrypoint.endswith("_flow") for d in served)
    assert [d.parameters for d in served] == [spec.parameters for spec in specs]


def test_flow_runs_keep_no_result_files_and_no_cache():
    """The run directory holds a run's outcome: Prefect writes no result files and computes no cache key."""
    from prefect.cache_policies import NO_CACHE

    import pipelines.flows as flows

    tasks = [flows.prepare_task, flows.run_task, flows.sweep_task, flows.publish_task, flows.reproduce_task]
    assert all(t.persist_result is False and t.cache_policy == NO_CACHE for t in tasks)
    assert all(f.persist_result is False for f in flows.FLOWS.values())


def test_workers_and_runners_ask_for_new_runs_every_second(monkeypatch, tmp_path):
    """Prefect's default poll, 10 s, was most of a deployment run's extra latency (benchmarks/prefect_latency.py)."""
    from prefect.settings import Settings

    from pipelines.serve import POLL_SECONDS

    for name, value in prefect_environment(tmp_path, 4200).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.worker.query_seconds == settings.runner.poll_frequency == POLL_SECONDS <= 2


def test_paperzoo_deploy_registers_every_deployment(prefect_env, params):
    flows = {f["id"]: f["name"] for f in api(prefect_env, "flows/filter", {})}
    registered = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api(prefect_env, "deployments/filter", {})}
    assert set(registered) == {spec.full_name for spec in deployment_specs(params)}
    uba = registered["train/uba"]
    assert uba["work_pool_name"] == "paperzoo" and uba["enforce_parameter_schema"] is True
    assert uba["entrypoint"] == "pipelines/flows.py:train_flow" and uba["parameters"] == {"component": "uba"}
    assert uba["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    ]  # the worker runs flows in the project folder
    redeployed = subprocess.run(  # idempotent: a second deploy updates, the pool already exists
        [sys.executable, "-m", "pipelines.cli", "deploy"],
        cwd=ROOT,
        env=prefect_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert redeployed.returncode == 0, redeployed.stdout + redeployed.stderr
    assert "created" not in redeployed.stdout.split(";")[0]
    assert len(api(prefect_env, "deployments/filter", {})) == len(registered)


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
        timeout=START_BUDGET_S,
    )
    assert done.returncode != 0
    assert "seed" in done.stdout + done.stderr
    assert not (tmp_path / "uba").exists()


# Retries only where retrying can help. The flows run in-process on Prefect's ephemeral server (the first call
# starts it, ~10 s on a loaded machine; later calls take about a second); the Hub and the cluster are replaced
# by functions that fail as they would, so each test counts the attempts Prefect made.


def finished_run(directory: Path) -> Path:
    """A completed run directory, reduced to what publish reads."""
    run = directory / "runs" / "uba" / "20260101-000000-0123abcd-s0"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"component": "uba", "status": "completed", "preset": "test", "seed": 0}))
    (run / "metrics.json").write_text(json.dumps({"val/acc": 0.5}))
    (run / "config.yaml").write_text("task: digits_mlp\ndataset: images/digits\n")
    return run


def hub_error(status: int):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "http://hub.invalid/api/repos/create")
    return HfHubHTTPError(f"{status} from the Hub", response=httpx2.Response(status, request=request))


@pytest.fixture
def online_hub(monkeypatch, tmp_path):
    """publish_run with a token, online, writing its folder under tmp_path; push() is the test's to replace."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.chdir(tmp_path)  # publish_task writes published/ relative to the working directory
    pushes: list[int] = []

    def replace_push(*statuses: int):
        """push() fails with these HTTP statuses in turn, then succeeds."""
        import pipelines.publish

        def push(*args, **kwargs):
            pushes.append(1)
            if len(pushes) <= len(statuses):
                raise hub_error(statuses[len(pushes) - 1])
            return "http://hub.invalid/lab/uba", "0" * 40

        monkeypatch.setattr(pipelines.publish, "push", push)
        return pushes

    return replace_push


@pytest.mark.parametrize(
    "error, retry",
    [
        ("ConfigError('uba: optimizer')", False),
        ("DataError('no manifest')", False),
        ("RunError('diverged at step 3')", False),
        ("RunError('run failed: the SLURM job was lost', retryable=True)", True),
        ("PublishError('HTTP 401')", False),
        ("PublishError('HTTP 503 after 1 attempts', retryable=True)", True),
        ("OSError('connection reset')", True),
        ("TypeError('a bug')", False),
    ],
)
def test_retry_only_what_retrying_can_fix(error, retry):
    from components.core.errors import ConfigError, DataError, RunError, is_retryable  # noqa: F401
    from pipelines.publish import PublishError  # noqa: F401

    assert is_retryable(eval(error)) is retry


def test_a_config_error_fails_the_flow_at_once_with_its_line(monkeypatch, tmp_path):
    from pipelines import operations
    from pipelines.flows import train_flow

    calls: list[int] = []
    real = operations.run_component
    monkeypatch.setattr(operations, "run_component", lambda *a, **k: calls.append(1) or real(*a, **k))
    started = time.monotonic()
    state = train_flow(
        component="uba",
        overrides={"optimizer": "adamx"},
        params_file=str(ROOT / "params.yaml"),
        data_dir=str(tmp_path),
        run_root=str(tmp_path / "runs"),
        return_state=True,
    )
    elapsed = time.monotonic() - started
    assert state.is_failed() and calls == [1]  # no retry: CLUSTER_RETRIES would wait 10 s, then 20 s
    assert "uba: optimizer = 'adamx' is not one of" in state.message and "(did you mean 'adamw'?)" in state.message
    assert "\n" not in state.message and not (tmp_path / "runs").exists()
    print(f"train flow with a config error: {elapsed:.1f} s (ephemeral server start included on a first call)")


def test_a_rejected_token_fails_the_publish_flow_at_once(online_hub, tmp_path):
    from pipelines.flows import publish_flow

    pushes = online_hub(401, 401, 401, 401)
    state = publish_flow(run_dir=str(finished_run(tmp_path)), repo_id="lab/uba", return_state=True)
    assert state.is_failed() and pushes == [1]  # NETWORK_RETRIES would try 3 more times over 35 s
    assert "the Hub refused the token for lab/uba (HTTP 401" in state.message and "\n" not in state.message


def test_a_5xx_is_retried_by_prefect(online_hub, tmp_path, monkeypatch):
    import pipelines.flows
    from pipelines.flows import publish_flow

    monkeypatch.setattr(
        pipelines.flows, "publish_task", pipelines.flows.publish_task.with_options(retry_delay_seconds=0)
    )
    pushes = online_hub(500, 503)
    result = publish_flow(run_dir=str(finished_run(tmp_path)), repo_id="lab/uba")
    assert pushes == [1, 1, 1] and result["pushed"] and result["url"] == "http://hub.invalid/lab/uba"


def test_a_lost_cluster_job_is_retried_and_the_result_is_the_run(monkeypatch, tmp_path):
    import pipelines.flows
    from components.core.errors import RunError
    from pipelines import operations
    from pipelines.flows import train_flow

    attempts: list[int] = []

    def run_component(*args, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise RunError("run failed: the SLURM job was lost (NODE_FAIL)", retryable=True)
        return operations.RunOutcome(tmp_path / "runs" / "uba" / "run", {"val/acc": 0.5})

    monkeypatch.setattr(operations, "run_component", run_component)
    monkeypatch.setattr(pipelines.flows, "run_task", pipelines.flows.run_task.with_options(retry_delay_seconds=0))
    result = train_flow(component="uba", backend="submitit", run_root=str(tmp_path / "runs"))
    assert attempts == [1, 1]
    assert result == {"run_dir": str(tmp_path / "runs" / "uba" / "run"), "metrics": {"val/acc": 0.5}}
