"""The Prefect deployments, derived from params.yaml in one place: `deployment_specs`.

One deployment per dataset (`prepare/<short name>`), per component (`train/<slug>`) and per sweep
(`sweep/<name>`) of params.yaml, plus `publish/hub` and `reproduce/all`; adding a paper, a sweep or a
dataset to params.yaml adds its deployment, with nothing else to edit. Two ways to run them:

- `paperzoo serve` (one user): `flow.to_deployment` for each spec, served from that process by `prefect.serve`;
- `paperzoo deploy` (shared): `register` records each spec on the server at PREFECT_API_URL for a `process`
  work pool, with this folder (`flow.from_source`) as the working directory the worker runs flows in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.core.errors import RunError
from pipelines.params import dataset_specs

ROOT = Path(__file__).resolve().parent.parent
FLOWS_FILE = "pipelines/flows.py"  # relative to ROOT: the entrypoint a worker loads
DEFAULT_POOL = "paperzoo"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: `prefect deployment run '<flow>/<name>'` runs flow FLOWS[flow] with these parameters."""

    flow: str  # a key of pipelines.flows.FLOWS, which is also the flow's Prefect name
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.flow}/{self.name}"


def dataset_deployment_names(datasets: Mapping[str, Any]) -> dict[str, str]:
    """images/digits -> digits; where two kinds share a short name, both become kind-name (images-digits)."""
    short = {name: name.rsplit("/", 1)[-1] for name in datasets}
    counts = Counter(short.values())
    return {name: value if counts[value] == 1 else name.replace("/", "-") for name, value in short.items()}


def paper_title(slug: str) -> str | None:
    """The paper's title from components/<slug>/paper.yaml, if it has one (read as text: no component import)."""
    import yaml

    from components.registry import REGISTRY

    module = REGISTRY.get(slug, "").split(":")[0]
    path = ROOT.joinpath(*module.split(".")[:-1], "paper.yaml")
    try:
        title = (yaml.safe_load(path.read_text()) or {}).get("paper", {}).get("title")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return title if isinstance(title, str) else None


def deployment_specs(params: Mapping[str, Any]) -> list[DeploymentSpec]:
    """Every deployment of the project, from params.yaml's datasets, components and sweeps."""
    datasets = dataset_specs(params)
    specs = [
        DeploymentSpec(
            "prepare",
            short,
            f"Prepare {name} (params.yaml: source {datasets[name].get('source')}) under data/{name}.",
            {"dataset": name},
        )
        for name, short in dataset_deployment_names(datasets).items()
    ]
    for slug in params.get("components") or []:
        title = paper_title(slug)
        specs.append(
            DeploymentSpec(
                "train",
                slug,
                f"Train {slug}{f' ({title})' if title else ''} with params.yaml's {slug} section, "
                "at params.yaml's preset unless given.",
                {"component": slug},
            )
        )
    for name, sweep in (params.get("sweeps") or {}).items():
        axes = ", ".join(sweep.get("grid") or {}) or "seeds only"
        specs.append(
            DeploymentSpec(
                "sweep",
                name,
                f"Sweep {name} of params.yaml ({sweep.get('component')}: {axes}); narrow it with grid/seeds.",
                {"sweep": name},
            )
        )
    specs.append(DeploymentSpec("publish", "hub", "Push one run directory to the Hugging Face Hub."))
    specs.append(DeploymentSpec("reproduce", "all", "dvc repro through DVC's Python API (prepare -> train -> report)."))
    return specs


def served_deployments(specs: list[DeploymentSpec]) -> list:
    """For `prefect.serve` (one user): the imported flows' deployments, run by the serving process."""
    from pipelines.flows import FLOWS

    return [
        FLOWS[spec.flow].to_deployment(name=spec.name, parameters=spec.parameters, description=spec.description)
        for spec in specs
    ]


def ensure_process_pool(pool: str) -> bool:
    """Create the `process` work pool if the server has none of that name; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
            return True
    if existing.type != "process":
        raise RunError(f"work pool '{pool}' is of type {existing.type}, not process; choose another with --pool")
    return False


def register(specs: list[DeploymentSpec], pool: str = DEFAULT_POOL, source: Path = ROOT) -> bool:
    """Record every spec on the server at PREFECT_API_URL for the process work pool `pool` (created if
    missing); a worker started with `prefect worker start --pool <pool>` runs the flows in `source`.
    Existing deployments of the same names are updated. Returns whether the pool was created."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL

    from pipelines.flows import FLOWS

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise RunError(
            "PREFECT_API_URL is not set: start a server (prefect server start, or paperzoo serve) "
            "and export PREFECT_API_URL=http://HOST:4200/api"
        )
    try:
        created = ensure_process_pool(pool)
    except RunError:
        raise
    except Exception as err:  # httpx's connection errors, the server's answers
        raise RunError(f"could not reach the Prefect server at {api_url}: {err}") from err
    loaded = {
        key: flow.from_source(source=str(source), entrypoint=f"{FLOWS_FILE}:{FLOWS[key].fn.__name__}")
        for key in dict.fromkeys(spec.flow for spec in specs)
    }
    for spec in specs:
        loaded[spec.flow].to_deployment(
            name=spec.name, parameters=spec.parameters, description=spec.description, work_pool_name=pool
        ).apply()
    return created
