"""Dataset registry: params.yaml's `datasets:` entries -> the source that prepares them, and verification.

`prepare("images/digits", {"source": "sklearn-digits", "repeat": 1}, Path("data"))` writes
`data/images/digits/`; `verify(Path("data"))` re-hashes every shard of every prepared dataset.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.core.errors import ConfigError, DataError, did_you_mean
from components.core.shards import MANIFEST, check_dataset, dataset_files, prepare_command, sha256_file

# source name -> "module:function"; imported only when used, so listing sources stays cheap
SOURCES: dict[str, str] = {
    "sklearn-digits": "pipelines.datasets.images:prepare_digits",
    "imagefolder": "pipelines.datasets.images:prepare_imagefolder",
    "cifar-python": "pipelines.datasets.cifar:prepare_cifar_python",
    "statsmodels-co2": "pipelines.datasets.series:prepare_co2",
    "csv": "pipelines.datasets.series:prepare_csv",
    "two-sine": "pipelines.datasets.series:prepare_two_sine",
    "moving-squares": "pipelines.datasets.video:prepare_moving_squares",
    "video-folder": "pipelines.datasets.video:prepare_video_folder",
    "three-body": "pipelines.datasets.procedural:prepare_three_body",
    "dvs-gesture": "pipelines.datasets.events:prepare_dvs_gesture",
    "mnist-idx": "pipelines.datasets.mnist:prepare_mnist_idx",
    "permuted-tasks": "pipelines.datasets.continual:prepare_permuted_tasks",
    "split-classes": "pipelines.datasets.continual:prepare_split_classes",
    "pykeen": "pipelines.datasets.graphs:prepare_pykeen",
    "kg-tsv": "pipelines.datasets.graphs:prepare_kg_tsv",
    "pde-fields": "pipelines.datasets.fields:prepare_pde_fields",
    "fields-file": "pipelines.datasets.fields:prepare_fields_file",
    "nupa": "pipelines.datasets.tokens:prepare_nupa",
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
    hints = typing.get_type_hints(load_source(source))
    options = {key: checked_option(where, source, key, value, hints.get(key)) for key, value in options.items()}
    return source, options


def checked_option(where: str, source: str, key: str, value: Any, annotation: Any) -> Any:
    """`value` as option `key`'s annotated type (int, float, str, bool or a Literal), or a ConfigError naming it."""
    if typing.get_origin(annotation) is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(
                f"{where}: option {key} of source {source} must be one of {', '.join(map(repr, allowed))}, "
                f"got {value!r}{did_you_mean(value, allowed)}"
            )
        return value
    expected = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation)
    if expected is None:
        return value
    if annotation is bool:
        ok = isinstance(value, bool)
    elif isinstance(value, bool):
        ok = False  # YAML's true/false is no count, fraction or path
    elif annotation is int:
        ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        value = int(value) if ok else value
    elif annotation is float:
        ok = isinstance(value, (int, float))
    else:  # str: a YAML number given for a path or name is meant as its text
        ok = isinstance(value, (str, int, float))
        value = str(value) if ok else value
    if not ok:
        raise ConfigError(f"{where}: option {key} of source {source} must be {expected}, got {value!r}")
    return value


def prepare(name: str, spec: dict, data_root: Path) -> Path:
    """Prepare dataset `name` (e.g. "images/digits") from its params.yaml entry into `data_root/name`.

    The source writes into a staging folder and swaps it in at the end, so an interrupted prepare
    leaves the previous version (or nothing) in place. Returns the dataset folder.
    """
    source, options = check_spec(name, spec)
    out_dir = Path(data_root) / name
    try:
        load_source(source)(out_dir, **options)
    except OSError as error:
        if error.errno not in _STORAGE_ERRORS:
            raise
        raise storage_error(error, name, out_dir) from None
    return out_dir


# what a full, read-only or forbidden disk raises: a one-line DataError instead of a traceback
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def storage_error(error: OSError, name: str, out_dir: Path) -> DataError:
    """The DataError for an OSError of the disk: which path, what happened, what to do."""
    reason = f"{os.strerror(error.errno)} [{errno.errorcode.get(error.errno, error.errno)}]"
    filename = Path(error.filename) if error.filename else None
    root = out_dir.parent.parent.resolve()
    if filename is not None:
        where = filename.resolve()
        if not (where.is_relative_to(root) or where in root.parents):  # a source file, not the data root
            return DataError(f"cannot read {filename} for dataset '{name}': {reason}")
    advice = {
        errno.ENOSPC: "free space there or prepare into another --data-dir",
        errno.EDQUOT: "free space there or prepare into another --data-dir",
        errno.EFBIG: "prepare into another --data-dir",
    }.get(error.errno, "make it writable or prepare into another --data-dir")
    return DataError(f"cannot write dataset '{name}' to {out_dir}: {reason}; {advice} (nothing was changed)")


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
        manifest = check_dataset(data_root, dataset, verify=False)
        for entry in dataset_files(manifest):  # hashed afresh, whatever this process checked before
            path = data_root / dataset / entry["file"]
            if sha256_file(path) != entry["sha256"]:
                raise DataError(
                    f"shard {path} does not match its sha256 in the manifest: "
                    f"re-prepare it with `{prepare_command(dataset)}` (or `dvc pull` it)"
                )
    return names
