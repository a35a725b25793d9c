"""Dataset registry: params.yaml's `datasets:` entries -> the source that prepares them, and verification.

`prepare("images/digits", {"source": "sklearn-digits", "repeat": 1}, Path("data"))` writes
`data/images/digits/`; `verify(Path("data"))` re-hashes every shard of every prepared dataset.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

from components.core.errors import ConfigError, DataError, did_you_mean
from components.core.shards import MANIFEST, check_dataset, dataset_files, prepare_command, sha256_file

# source name -> "module:function"; imported only when used, so listing sources stays cheap
SOURCES: dict[str, str] = {
    "sklearn-digits": "pipelines.datasets.images:prepare_digits",
    "imagefolder": "pipelines.datasets.images:prepare_imagefolder",
    "statsmodels-co2": "pipelines.datasets.series:prepare_co2",
    "csv": "pipelines.datasets.series:prepare_csv",
    "two-sine": "pipelines.datasets.series:prepare_two_sine",
    "moving-squares": "pipelines.datasets.video:prepare_moving_squares",
    "video-folder": "pipelines.datasets.video:prepare_video_folder",
    "three-body": "pipelines.datasets.procedural:prepare_three_body",
}


def load_source(source: str) -> Callable[..., dict]:
    if source not in SOURCES:
        raise ConfigError(
            f"unknown dataset source '{source}'{did_you_mean(source, SOURCES)}: use one of {', '.join(sorted(SOURCES))}"
        )
    module_name, attribute = SOURCES[source].split(":")
    return getattr(importlib.import_module(module_name), attribute)


def source_options(source: str) -> dict[str, inspect.Parameter]:
    """The options a source accepts (its keyword-only parameters)."""
    parameters = inspect.signature(load_source(source)).parameters.values()
    return {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_spec(name: str, spec: dict) -> tuple[str, dict]:
    """Validate a params.yaml `datasets:` entry before any work; returns (source, options)."""
    where = f"params.yaml datasets.{name}"
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or any(part.startswith(".") for part in parts):
        raise ConfigError(f"{where}: a dataset name is '<kind>/<name>', e.g. 'images/digits'")
    if not isinstance(spec, dict) or "source" not in spec:
        raise ConfigError(f"{where}: needs a 'source' ({', '.join(sorted(SOURCES))})")
    source = spec["source"]
    if source not in SOURCES:
        raise ConfigError(
            f"{where}.source: unknown source '{source}'{did_you_mean(source, SOURCES)}: "
            f"use one of {', '.join(sorted(SOURCES))}"
        )
    options = {key: value for key, value in spec.items() if key != "source"}
    accepted = source_options(source)
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"{where}: unknown option '{key}' for source {source}{did_you_mean(key, accepted)}: "
                f"it accepts {', '.join(accepted)}"
            )
    for key, parameter in accepted.items():
        if parameter.default is inspect.Parameter.empty and key not in options:
            raise ConfigError(f"{where}: source {source} needs option '{key}'")
    return source, options


def prepare(name: str, spec: dict, data_root: Path) -> Path:
    """Prepare dataset `name` (e.g. "images/digits") from its params.yaml entry into `data_root/name`.

    The source writes into a staging folder and swaps it in at the end, so an interrupted prepare
    leaves the previous version (or nothing) in place. Returns the dataset folder.
    """
    source, options = check_spec(name, spec)
    out_dir = Path(data_root) / name
    load_source(source)(out_dir, **options)
    return out_dir


def _dataset_names(data_root: Path) -> list[str]:
    names = []
    for manifest_path in sorted(Path(data_root).rglob(MANIFEST)):
        relative = manifest_path.parent.relative_to(data_root)
        # hidden folders are staging or retired copies of a dataset being replaced
        if not any(part.startswith(".") for part in relative.parts):
            names.append(relative.as_posix())
    return names


def verify(data_root: Path, name: str | None = None) -> list[str]:
    """Check the full sha256 of every shard of one dataset, or of every dataset under `data_root`.

    Raises DataError naming the first shard that is missing, of the wrong size or whose hash differs;
    returns the names of the verified datasets.
    """
    data_root = Path(data_root)
    names = [name] if name is not None else _dataset_names(data_root)
    for dataset in names:
        manifest = check_dataset(data_root, dataset)
        for entry in dataset_files(manifest):
            path = data_root / dataset / entry["file"]
            if sha256_file(path) != entry["sha256"]:
                raise DataError(
                    f"shard {path} does not match its sha256 in the manifest: "
                    f"re-prepare it with `{prepare_command(dataset)}` (or `dvc pull` it)"
                )
    return names
