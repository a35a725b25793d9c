"""Prefect flows: the operations of pipelines/operations.py as flows with typed parameters.

Prefect owns operations (retries, schedules, a UI, shared workers); DVC keeps lineage, so `reproduce`
drives DVC through its Python API instead of re-implementing the chain. Each flow calls the same
function as the CLI verb of the same name; the deployments follow from params.yaml (pipelines/deployments.py:
`paperzoo serve` for one user, `paperzoo deploy` for a shared server). Tasks that touch a cluster or the
network retry with exponential backoff, but only where retrying can help (retry_can_help): a bad config, a
missing dataset or a rejected Hub token fails the flow run at once, its one line in the run's state message;
a 5xx or a timeout from the Hub and a job lost on the cluster keep their retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from components.core.errors import is_retryable
from pipelines import operations

Backend = Literal["local", "torchrun", "submitit", "ray"]
Preset = Literal["test", "smoke", "paper"]


def retry_can_help(task: Any, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry_condition_fn: retry a failed task only when its exception may pass (errors.is_retryable:
    never a PaperzooError a user has to fix, such as a ConfigError or a 401 from the Hub). Prefect calls this only
    for a plain function, so it must stay one."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            result = state.result(raise_on_failure=False)
        except Exception:  # a result that cannot be read: nothing to judge, so the retry policy decides
            result = None
        error = result if isinstance(result, BaseException) else None
    retry = error is None or is_retryable(error)
    if not retry:
        try:
            get_run_logger().info("not retrying %s: %s", type(error).__name__, error)
        except Exception:  # no run context to log to: the decision stands
            pass
    return retry


# A run's outcome lives in its run directory (run.json, metrics.json); a task returns a small summary that Prefect
# keeps in memory only: no result files to write or read back, and no cache policy (Prefect's default hashes every
# call's inputs and the task's source for a cache these flows never read).
NO_RESULT_STORE = {"persist_result": False}
CLUSTER_RETRIES = {
    **NO_RESULT_STORE,
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=10),
    "retry_condition_fn": retry_can_help,
}
NETWORK_RETRIES = {
    **NO_RESULT_STORE,
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_condition_fn": retry_can_help,
}


@task(name="prepare-dataset", **NO_RESULT_STORE)
def prepare_task(dataset: str, options: dict[str, Any], params_file: str, data_dir: str) -> str:
    return str(operations.prepare_dataset(dataset, options, params_file=Path(params_file), data_dir=Path(data_dir)))


@task(name="run-component", **CLUSTER_RETRIES)
def run_task(
    component: str,
    preset: Preset | None,
    overrides: dict[str, Any],
    seed: int,
    backend: Backend,
    profile: str | None,
    params_file: str,
    data_dir: str,
    run_root: str,
    checkpoint_every: int,
) -> dict:
    outcome = operations.run_component(
        component,
        preset=preset,
        overrides=overrides,
        seed=seed,
        backend=backend,
        profile=profile,
        params_file=Path(params_file),
        data_dir=Path(data_dir),
        run_root=Path(run_root),
        checkpoint_every=checkpoint_every,
    )
    return {"run_dir": str(outcome.run_dir), "metrics": outcome.metrics}


@task(name="run-sweep", **CLUSTER_RETRIES)
def sweep_task(
    sweep: str,
    backend: Backend,
    profile: str | None,
    grid: dict[str, list[Any]] | None,
    seeds: list[int] | None,
    preset: Preset | None,
    params_file: str,
    data_dir: str,
    run_root: str,
) -> dict:
    outcome = operations.run_named_sweep(
        sweep,
        backend=backend,
        profile=profile,
        grid=grid,
        seeds=seeds,
        preset=preset,
        params_file=Path(params_file),
        data_dir=Path(data_dir),
        run_root=Path(run_root),
    )
    return {
        "directory": str(outcome.directory),
        "summary": outcome.markdown,
        "failed": sum(r.status != "completed" for r in outcome.results),
    }


@task(name="publish-run", **NETWORK_RETRIES)
def publish_task(run_dir: str, repo_id: str, private: bool) -> dict:
    from pipelines.publish import publish_run

    result = publish_run(Path(run_dir), repo_id, private=private, retries=0)  # Prefect owns the retries here
    return {"local_dir": str(result.local_dir), "url": result.url, "pushed": result.pushed, "message": result.message}


@task(name="dvc-reproduce", **NO_RESULT_STORE)
def reproduce_task(root: str, targets: list[str] | None, force: bool) -> list[str]:
    from dvc.repo import Repo

    with Repo(root) as repo:
        stages = repo.reproduce(targets=targets or None, force=force)
    return [stage.addressing for stage in stages]


@flow(name="prepare", log_prints=True, **NO_RESULT_STORE)
def prepare_flow(
    dataset: str = "images/digits",
    options: dict[str, Any] | None = None,
    params_file: str = "params.yaml",
    data_dir: str = "data",
) -> str:
    """Prepare one dataset named in params.yaml (options override its entry)."""
    return prepare_task(dataset, options or {}, params_file, data_dir)


@flow(name="train", log_prints=True, **NO_RESULT_STORE)
def train_flow(
    component: str,
    preset: Preset | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    backend: Backend = "local",
    profile: str | None = None,
    params_file: str = "params.yaml",
    data_dir: str = "data",
    run_root: str = "runs",
    checkpoint_every: int = 0,
) -> dict:
    """Train one component with one config: overrides are {"schedule.phi": 0.7, ...}, as --set on the CLI."""
    result = run_task(
        component, preset, overrides or {}, seed, backend, profile, params_file, data_dir, run_root, checkpoint_every
    )
    get_run_logger().info("run directory: %s; metrics: %s", result["run_dir"], result["metrics"])
    return result


@flow(name="sweep", log_prints=True, **NO_RESULT_STORE)
def sweep_flow(
    sweep: str,
    backend: Backend = "local",
    profile: str | None = None,
    grid: dict[str, list[Any]] | None = None,
    seeds: list[int] | None = None,
    preset: Preset | None = None,
    params_file: str = "params.yaml",
    data_dir: str = "data",
    run_root: str = "runs",
) -> dict:
    """Run a named sweep from params.yaml on one backend (inside one task); grid/seeds narrow it."""
    result = sweep_task(sweep, backend, profile, grid, seeds, preset, params_file, data_dir, run_root)
    get_run_logger().info("sweep directory: %s\n%s", result["directory"], result["summary"])
    return result


@flow(name="publish", log_prints=True, **NO_RESULT_STORE)
def publish_flow(run_dir: str, repo_id: str, private: bool = False) -> dict:
    """Push one run directory to the Hugging Face Hub (or write the folder locally without a token)."""
    result = publish_task(run_dir, repo_id, private)
    get_run_logger().info(result["message"])
    return result


@flow(name="reproduce", log_prints=True, **NO_RESULT_STORE)
def reproduce_flow(root: str = ".", targets: list[str] | None = None, force: bool = False) -> list[str]:
    """`dvc repro` through DVC's Python API: lineage stays in DVC; returns the stages that ran."""
    ran = reproduce_task(root, targets, force)
    get_run_logger().info("stages run: %s", ", ".join(ran) or "none (up to date)")
    return ran


FLOWS = {
    "prepare": prepare_flow,
    "train": train_flow,
    "sweep": sweep_flow,
    "publish": publish_flow,
    "reproduce": reproduce_flow,
}
