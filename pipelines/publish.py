"""Publish one finished run to the Hugging Face Hub: one commit per run, and never a lost result.

The upload folder is always built locally first (atomically), so a run without a token, offline, or whose push
failed is still a complete Hub folder on disk. The push is `create_repo(exist_ok=True)` then one `upload_folder`
commit that mirrors the folder (files of an earlier run that this one lacks are deleted in the same commit), so the
repository's history is one commit per published run and its tip is exactly one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.core.errors import PaperzooError
from components.core.files import atomic_directory

RUN_FILES = ("config.yaml", "metrics.json", "metrics.jsonl", "run.json", "environment.json")
ARTEFACT_PATTERNS = ("*.png", "*.csv")
WEIGHTS = "model.safetensors"
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)  # the statuses huggingface_hub's own backoff retries
DATA_KINDS = {
    "images": "image-classification",
    "tokens": "text-generation",
    "series": "time-series-forecasting",
    "video": "text-to-video",
    "graphs": "graph-ml",
    "tables": "tabular-classification",
}


class PublishError(PaperzooError):
    """A run that cannot be published, or a push that failed; names the local folder that still holds it.
    `retryable` is True only for a Hub that answered 5xx/408/429, did not answer or ran past the deadline."""


class DeadlineReached(Exception):
    """Raised by the request hook once `paperzoo publish --timeout` has run out (huggingface_hub does not retry it)."""


@dataclass(frozen=True)
class PublishResult:
    local_dir: Path
    url: str | None  # the repository's page; None when nothing was pushed
    commit_oid: str | None
    pushed: bool
    message: str


@dataclass(frozen=True)
class CardTask:
    """What a component's metrics measure, in model-index terms (task type/name, dataset type/name)."""

    task_type: str
    task_name: str
    dataset_type: str
    dataset_name: str


def uba_task(config: Mapping[str, Any]) -> CardTask:
    if config.get("task") == "quadratic":
        q = config.get("quadratic") or {}
        return CardTask(
            "other",
            "Worst-case residual of gradient descent",
            "synthetic/diagonal-quadratic",
            f"diagonal quadratic, {q.get('eigenvalues')} eigenvalues in [{q.get('mu')}, {q.get('L')}]",
        )
    return CardTask("image-classification", "Image classification", config["dataset"], config["dataset"])


def default_task(config: Mapping[str, Any]) -> CardTask:
    """A component without its own entry: the task follows the kind of the dataset its config names."""
    dataset = str(config.get("dataset") or "unknown")
    task = DATA_KINDS.get(dataset.split("/", 1)[0], "other")
    return CardTask(task, task.replace("-", " ").capitalize(), dataset, dataset)


CARD_TASKS: dict[str, Callable[[Mapping[str, Any]], CardTask]] = {"uba": uba_task}


def metric_split(key: str) -> str | None:
    """'test/acc' -> test, 'val/loss' -> validation, 'final/train_loss' -> train; None when the key names no split."""
    parts = key.replace("_", "/").split("/")
    for word, split in (("test", "test"), ("val", "validation"), ("valid", "validation"), ("train", "train")):
        if word in parts:
            return split
    return None


def metric_type(key: str) -> str:
    last = key.rsplit("/", 1)[-1]
    last = last.split("_", 1)[1] if last.startswith(("train_", "val_", "test_")) else last
    return {"acc": "accuracy", "top1": "accuracy", "ppl": "perplexity"}.get(last, last)


def run_id_of(run_dir: Path, info: Mapping[str, Any]) -> str:
    return f"{info.get('component', '?')}/{run_dir.name}"


def code_state(code: Mapping[str, Any]) -> str:
    """'clean', 'dirty, diff sha256 <12 hex>', or why that is not known (a run.json from before the digest)."""
    dirty = code.get("dirty")
    if dirty is None:
        return "not recorded" if not code else "unknown (no git checkout)"
    if not dirty:
        return "clean"
    digest = code.get("diff_sha256")
    return f"dirty, diff sha256 {digest[:12]}" if digest else "dirty, diff not recorded"


def code_label(info: Mapping[str, Any]) -> str:
    """The commit message's short form: 'code 0123abc, clean'."""
    code = info.get("code") or {}
    sha = str(code.get("git_sha") or "unknown")
    return f"code {sha[:7] if sha != 'unknown' else sha}, {code_state(code)}"


def code_text(info: Mapping[str, Any]) -> str:
    """The full form: '<40-hex sha> (clean)', '<sha> (dirty, diff sha256 <64 hex>)'."""
    code = info.get("code") or {}
    state = code_state(code)
    if code.get("dirty") and code.get("diff_sha256"):
        state = f"dirty, diff sha256 {code['diff_sha256']}"
    return f"{code.get('git_sha') or 'unknown'} ({state})"


def dataset_provenance(info: Mapping[str, Any]) -> list[tuple[str, str, str]] | None:
    """(dataset, manifest sha256, DVC md5) per dataset the run read, from run.json schema 2; None for a run.json
    from before, which recorded no datasets."""
    datasets = info.get("datasets")
    if not isinstance(datasets, Mapping):
        return None
    return [
        (
            str(name),
            str((digests or {}).get("manifest_sha256") or "not recorded"),
            str((digests or {}).get("dvc_md5") or "not tracked by DVC"),
        )
        for name, digests in sorted(datasets.items())
    ]


def data_lines(datasets: list[tuple[str, str, str]] | None) -> list[str]:
    """The commit description's data lines."""
    if datasets is None:
        return ["data: not recorded"]
    if not datasets:
        return ["data: none"]
    return [f"data: {name} manifest sha256 {manifest}, DVC md5 {md5}" for name, manifest, md5 in datasets]


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """run.json and metrics.json of a completed run, or a one-line PublishError saying what is missing."""
    if not run_dir.is_dir():
        raise PublishError(f"{run_dir} is not a directory; pass a run directory such as runs/uba/<time>-<hash>-s0")
    missing = [name for name in ("run.json", "metrics.json", "config.yaml") if not (run_dir / name).is_file()]
    if missing:
        raise PublishError(
            f"{run_dir} is not a finished run (no {', '.join(missing)}); "
            "publish a directory that `paperzoo run` completed"
        )
    try:
        info = json.loads((run_dir / "run.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError) as err:
        raise PublishError(f"{run_dir}: cannot read run.json/metrics.json ({err})") from err
    if info.get("status") != "completed":
        raise PublishError(
            f"{run_dir} is not a finished run (status '{info.get('status')}'); "
            f"finish it first with `paperzoo run --resume {run_dir}`"
        )
    return info, metrics


def eval_results(slug: str, config: Mapping[str, Any], metrics: Mapping[str, float]) -> list:
    from huggingface_hub import EvalResult

    task = CARD_TASKS.get(slug, default_task)(config)
    return [
        EvalResult(
            task_type=task.task_type,
            task_name=task.task_name,
            dataset_type=task.dataset_type,
            dataset_name=task.dataset_name,
            dataset_split=metric_split(key),
            metric_type=metric_type(key),
            metric_name=key,
            metric_value=float(value),
        )
        for key, value in sorted(metrics.items())
        if isinstance(value, (int, float)) and math.isfinite(value)
    ]


def paper_of(slug: str) -> dict[str, Any]:
    import components

    path = Path(components.__file__).parent / slug / "paper.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def reproduce_command(info: Mapping[str, Any]) -> str:
    sets = "".join(
        " --set " + shlex.quote(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
        for key, value in flatten(info.get("overrides") or {}).items()
    )
    return f"paperzoo run {info.get('component')} --preset {info.get('preset')} --seed {info.get('seed', 0)}{sets}"


def cell(value: Any) -> str:
    """A markdown table cell: no pipe or newline may end the cell early."""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def model_card(
    run_dir: Path,
    repo_id: str,
    info: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, float],
    files: list[str],
):
    """The README.md: model-index results (task, dataset, split, metric) in the metadata, the run in the body."""
    from huggingface_hub import ModelCard, ModelCardData

    slug = str(info.get("component"))
    run_id = run_id_of(run_dir, info)
    paper = paper_of(slug)
    about = paper.get("paper") or {}
    code = info.get("code") or {}
    results = eval_results(slug, config, metrics)
    tags = ["paperzoo", slug] + ([f"arxiv:{about['arxiv']}"] if about.get("arxiv") else [])
    data = ModelCardData(model_name=f"paperzoo-{slug}", eval_results=results or None, tags=tags)
    rows = [
        ("run", run_id),
        ("component", slug),
        ("preset", info.get("preset")),
        ("seed", info.get("seed")),
        ("config hash", info.get("config_hash")),
        ("code", code_text(info)),
        (
            "backend / strategy / world size",
            f"{info.get('backend')} / {info.get('strategy')} / {info.get('world_size')}",
        ),
        ("started", info.get("started")),
        ("wall time", f"{info.get('wall_seconds')} s"),
    ]
    lines = [f"# {slug}: {run_id}", ""]
    if about.get("title"):
        arxiv = f" ([arXiv {about['arxiv']}](https://arxiv.org/abs/{about['arxiv']}))" if about.get("arxiv") else ""
        lines += [f"One run of paperzoo's `{slug}` component, which reproduces *{about['title']}*{arxiv}.", ""]
    lines += [
        "| | |",
        "|---|---|",
        *(f"| {key} | {cell(value)} |" for key, value in rows),
        "",
        "## Results",
        "",
        "| metric | split | value |",
        "|---|---|---|",
        *(f"| {r.metric_name} | {r.dataset_split or ''} | {r.metric_value:.6g} |" for r in results),
        "",
    ]
    claims = paper.get("results") or []
    if claims:
        lines += [
            "## The paper's numbers",
            "",
            "From the component's paper.yaml; an empty value is not yet known.",
            "",
            "| metric | value | dataset | setting | source |",
            "|---|---|---|---|---|",
        ]
        columns = ("metric", "value", "dataset", "setting", "source")
        lines += ["| " + " | ".join(cell(c.get(key)) for key in columns) + " |" for c in claims]
        lines += [""]
    datasets = dataset_provenance(info)
    lines += ["## Data", ""]
    if datasets is None:
        lines += ["Dataset digests: not recorded (this run.json predates them).", ""]
    elif not datasets:
        lines += ["This run reads no dataset.", ""]
    else:
        lines += [
            "The manifest lists every shard's sha256; the DVC md5 is the dataset folder's hash as DVC recorded it.",
            "",
            "| dataset | manifest sha256 | DVC md5 |",
            "|---|---|---|",
            *(f"| {cell(name)} | {cell(manifest)} | {cell(md5)} |" for name, manifest, md5 in datasets),
            "",
        ]
    checkout = [f"git checkout {code['git_sha']}"] if code.get("git_sha", "unknown") != "unknown" else []
    if checkout and code.get("dirty"):
        checkout.append(f"# the run had uncommitted source edits ({code_state(code)}) that this checkout lacks")
    lines += ["## Reproduce", "", "```bash", *checkout, reproduce_command(info), "```", "", "## Files", ""]
    described = {
        "config.yaml": "the resolved config",
        "metrics.json": "final metrics",
        "metrics.jsonl": "metrics per step",
        "run.json": "status, seed, code version, dataset digests, timing",
        "environment.json": "Python and package versions",
        WEIGHTS: "the trained weights (safetensors)",
    }
    lines += [f"- `{name}`" + (f": {described[name]}" if name in described else "") for name in files]
    plots = [name for name in files if name.endswith(".png")]
    if plots:
        lines += ["", "## Plots", "", *(f"![{name}]({name})" for name in plots)]
    lines += ["", f"Download: `hf download {repo_id}`", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def build_folder(
    run_dir: Path, repo_id: str, info: Mapping[str, Any], metrics: Mapping[str, float], target: Path
) -> list[str]:
    """Write the Hub folder at `target` atomically (a temporary sibling renamed over it); returns its file names."""
    names = [name for name in RUN_FILES if (run_dir / name).is_file()]
    names += sorted({path.name for pattern in ARTEFACT_PATTERNS for path in run_dir.glob(pattern) if path.is_file()})
    if (run_dir / WEIGHTS).is_file():
        names.append(WEIGHTS)
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    with atomic_directory(target) as staging:
        for name in names:
            shutil.copyfile(run_dir / name, staging / name)
        model_card(run_dir, repo_id, info, config, metrics, names).save(staging / "README.md")
    return ["README.md", *names]


def hub_endpoint() -> str:
    """huggingface_hub's HF_ENDPOINT, read now (its constants module reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@contextmanager
def request_timeout(seconds: float, deadline: float | None = None) -> Iterator[None]:
    """huggingface_hub's shared client has no timeout (a stalled server hangs a push forever): give it one while
    pushing, so a stall becomes a timeout that is retried, then put the previous client factory back. With a
    deadline (time.monotonic()), every request's timeout is also capped by the time left, and a request that
    would start after it raises DeadlineReached, so a hanging Hub cannot hold a push past `--timeout`."""
    import httpx2
    from huggingface_hub.utils import _http, set_client_factory

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

    def cap(request) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineReached(f"no time left for {request.method} {request.url.path}")
        request.extensions["timeout"] = httpx2.Timeout(min(seconds, left)).as_dict()

    def factory():
        client = previous()
        client.timeout = httpx2.Timeout(seconds)
        if deadline is not None:
            client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], cap]}
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)


def causes(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def classify(err: BaseException) -> tuple[str, str]:
    """('auth' | 'transient' | 'deadline' | 'fatal', a one-line description) of a failed push."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    for cause in causes(err):
        if isinstance(cause, DeadlineReached):
            return "deadline", f"--timeout reached: {cause}"
        if isinstance(cause, HfHubHTTPError) and cause.response is not None:
            response = cause.response
            try:
                line = f"HTTP {response.status_code} from {response.request.method} {response.request.url.path}"
            except RuntimeError:  # a response built without its request
                line = f"HTTP {response.status_code}"
            if response.status_code in (401, 403):
                return "auth", line
            return ("transient" if response.status_code in TRANSIENT_STATUS else "fatal"), line
        if isinstance(cause, OfflineModeIsEnabled):
            return "fatal", "HF_HUB_OFFLINE is set"
        if isinstance(cause, httpx2.TransportError):
            return "transient", f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else 'no reply'}"
    text = str(err).strip().splitlines()
    return "fatal", f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def push(local_dir: Path, repo_id: str, *, token: str, private: bool, commit_message: str, description: str):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint(), token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=local_dir,
        commit_message=commit_message,
        commit_description=description,
        delete_patterns=["*"],
    )
    return str(repo_url), info.oid


def publish_run(
    run_dir: Path,
    repo_id: str,
    *,
    token: str | None = None,
    local_root: Path = Path("published"),
    private: bool = False,
    retries: int = 4,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    deadline_s: float | None = None,
    say: Callable[[str], None] = print,
) -> PublishResult:
    """Build the run's Hub folder under local_root/<component>/<run>, then push it as one commit when a token is
    available (the argument, HF_TOKEN or a cached `hf auth login`).

    5xx, 408/429, connection errors and timeouts are retried `retries` times with exponential backoff (backoff_s,
    2*backoff_s, ...); 401/403 fail at once. Each request times out after timeout_s; deadline_s (`--timeout`)
    bounds the whole push, retries and waits included. Every failure is a one-line PublishError naming the local
    folder, which is never removed; it is `retryable` only when the Hub's fault may pass.
    """
    run_dir = Path(run_dir)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--repo-id '{repo_id}' must be ORG/NAME (a user or organisation, then the model name)")
    if deadline_s is not None and not (
        isinstance(deadline_s, (int, float)) and math.isfinite(deadline_s) and deadline_s > 0
    ):
        raise PublishError(f"--timeout must be a positive number of seconds, got {deadline_s!r}")
    info, metrics = read_run(run_dir)
    run_id = run_id_of(run_dir, info)
    from pipelines.operations import check_writable

    check_writable(Path(local_root), "--local-root")
    local_dir = Path(local_root) / str(info["component"]) / run_dir.name
    files = build_folder(run_dir, repo_id, info, metrics, local_dir)
    say(f"wrote {local_dir} ({len(files)} files: {', '.join(files)})")

    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        message = (
            f"HF_HUB_OFFLINE is set, so nothing was pushed; the Hub folder is {local_dir}; unset it and "
            f"run `paperzoo publish {run_dir} --repo-id {repo_id}` to push"
        )
        say(message)
        return PublishResult(local_dir, None, None, False, message)
    try:
        token = token or get_token()
    except Exception as err:  # an OIDC exchange (HF_OIDC_RESOURCE) that failed
        raise PublishError(f"cannot get a Hub token ({classify(err)[1]}); the run is kept in {local_dir}") from err
    if not token:
        message = (
            f"no Hugging Face token, so nothing was pushed; the Hub folder is {local_dir}; to push it, log in "
            f"with `hf auth login` (or set HF_TOKEN to a write token) and run "
            f"`paperzoo publish {run_dir} --repo-id {repo_id}`"
        )
        say(message)
        return PublishResult(local_dir, None, None, False, message)

    commit_message = f"paperzoo run {run_id} ({code_label(info)})"
    description = "\n".join(
        [
            f"run: {run_id}",
            f"code: {code_text(info)}",
            *data_lines(dataset_provenance(info)),
            f"preset: {info.get('preset')}",
            f"seed: {info.get('seed')}",
            f"config hash: {info.get('config_hash')}",
            f"started: {info.get('started')}",
        ]
    )
    endpoint = hub_endpoint()
    attempts = retries + 1
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    for attempt in range(1, attempts + 1):
        say(f"pushing {run_id} to {endpoint}/{repo_id} (attempt {attempt} of {attempts})")
        try:
            with request_timeout(timeout_s, deadline):
                url, oid = push(
                    local_dir,
                    repo_id,
                    token=token,
                    private=private,
                    commit_message=commit_message,
                    description=description,
                )
        except Exception as err:
            kind, line = classify(err)
            if kind == "auth":
                raise PublishError(
                    f"the Hub refused the token for {repo_id} ({line}): it is invalid or lacks write "
                    f"access to that repository; use a write token (`hf auth login` or HF_TOKEN); "
                    f"the run is kept in {local_dir}"
                ) from err
            if kind == "fatal":
                raise PublishError(
                    f"push of {run_id} to {repo_id} failed ({line}); the run is kept in {local_dir}"
                ) from err
            wait = backoff_s * 2 ** (attempt - 1)
            if kind == "deadline" or (deadline is not None and time.monotonic() + wait >= deadline):
                raise PublishError(
                    f"push of {run_id} to {repo_id} gave up at --timeout {deadline_s:g} s after {attempt} "
                    f"attempt(s) ({line}); the run is kept in {local_dir}; retry with `paperzoo publish "
                    f"{run_dir} --repo-id {repo_id}`",
                    retryable=True,
                ) from err
            if attempt == attempts:
                raise PublishError(
                    f"push of {run_id} to {repo_id} failed after {attempts} attempts ({line}); the "
                    f"run is kept in {local_dir}; retry with `paperzoo publish {run_dir} --repo-id "
                    f"{repo_id}`",
                    retryable=True,
                ) from err
            say(f"push failed ({line}); retrying in {wait:g} s")
            time.sleep(wait)
        else:
            message = f"pushed {run_id} to {url} (commit {oid}); the Hub folder is also kept in {local_dir}"
            say(message)
            return PublishResult(local_dir, url, oid, True, message)
    raise AssertionError("unreachable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `paperzoo publish` arguments, for pipelines/cli.py's subparser."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a completed run, e.g. runs/uba/<time>-<hash>-s0")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the Hub model repository")
    parser.add_argument("--private", action="store_true", help="create the repository private (if it is new)")
    parser.add_argument(
        "--local-root", type=Path, default=Path("published"), help="where the Hub folder is written first (published/)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up pushing after SECONDS, retries included (default: no limit; each request times out after 60 s)",
    )


def cmd_publish(args: argparse.Namespace) -> None:
    publish_run(
        args.run_dir,
        args.repo_id,
        local_root=args.local_root,
        private=args.private,
        deadline_s=getattr(args, "timeout", None),
    )
