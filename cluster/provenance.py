"""What a run was made from: the code (git commit, and a digest of uncommitted source edits) and the data (digests
of each dataset's manifest, and DVC's hash of the dataset folder where DVC tracks it).

Both are cheap enough to call at every run start: two git commands, and one small file read per dataset (a manifest
holds the sha256 of every shard, so its own digest stands for the data; no shard is hashed here). Neither function
knows about run directories, so a DVC lineage script can call them as well.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

# The tracked files that make a run's code: edits anywhere else (dvc.lock, which `dvc repro` rewrites, DVC outputs,
# docs, tests) do not make a run dirty.
SOURCE_PATHS = ("components", "cluster", "pipelines", "pyproject.toml", "requirements.lock")
GIT_TIMEOUT_S = 10.0
MANIFEST = "manifest.json"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    # GIT_OPTIONAL_LOCKS=0: never take index.lock to refresh stat data, so parallel run starts (a sweep) cannot
    # collide with each other or with someone's `git commit`.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, timeout=GIT_TIMEOUT_S, env=env, check=False
    )


def code_version(root: Path = REPO_ROOT) -> dict[str, Any]:
    """{"git_sha", "dirty", "diff_sha256" (only when dirty)} of the checkout at `root` (the project's top folder).

    dirty: a tracked source file (SOURCE_PATHS, relative to root) differs from HEAD, staged or not; untracked files
    do not count. diff_sha256: the sha256 of `git diff HEAD` over those paths, so two runs made from different
    edits of the same commit differ. Outside a git checkout (or when git fails or stalls): git_sha "unknown" and
    dirty None, since nothing is known either way.
    """
    try:
        head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
        sha = head.stdout.decode().strip() if head.returncode == 0 else ""
        if not sha:
            return {"git_sha": "unknown", "dirty": None}
        diff = _git(
            root,
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--binary",  # a binary edit changes the digest too
            "HEAD",
            "--",
            *SOURCE_PATHS,
        )
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": "unknown", "dirty": None}
    if diff.returncode != 0:
        return {"git_sha": sha, "dirty": None}
    if not diff.stdout:
        return {"git_sha": sha, "dirty": False}
    return {"git_sha": sha, "dirty": True, "diff_sha256": hashlib.sha256(diff.stdout).hexdigest()}


def project_root(start: Path) -> Path:
    """The folder holding dvc.yaml at or above `start`; the repository's own top folder when there is none."""
    start = Path(os.path.abspath(start))
    for folder in (start, *start.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return REPO_ROOT


def _load_yaml(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(), Loader=loader)
    except (OSError, yaml.YAMLError):
        return None


def _out_hashes(document: Any) -> dict[str, str]:
    """{out path: md5} of a dvc.lock (its stages' outs) or a .dvc file (its top-level outs)."""
    if not isinstance(document, dict):
        return {}
    groups = [document.get("outs")]
    stages = document.get("stages")
    if isinstance(stages, dict):
        groups += [stage.get("outs") for stage in stages.values() if isinstance(stage, dict)]
    hashes = {}
    for outs in groups:
        for out in outs if isinstance(outs, list) else []:
            if isinstance(out, dict) and out.get("path") and out.get("md5"):
                hashes[os.path.normpath(str(out["path"]))] = str(out["md5"])
    return hashes


def dataset_digests(data_dir: Path, names: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """{name: {"manifest_sha256": ..., "dvc_md5": ...}} for the datasets `names` under `data_dir`.

    manifest_sha256: the sha256 of data_dir/<name>/manifest.json's bytes (None when it does not exist); the
    manifest lists every shard's sha256, and runs verify what they read against it. dvc_md5: DVC's hash of the
    dataset folder (e.g. "5c7e...81.dir") as recorded in the project's dvc.lock (the project is the folder holding
    dvc.yaml at or above data_dir), or in a `<name>.dvc` file beside the dataset; absent when DVC does not track
    that very folder (a dataset prepared elsewhere, as in tests). It is what DVC last recorded, not a fresh hash.
    """
    data_dir = Path(os.path.abspath(data_dir))
    root = project_root(data_dir)
    lock: dict[str, str] | None = None
    digests: dict[str, dict[str, str | None]] = {}
    for name in names:
        folder = data_dir / name
        try:
            entry: dict[str, str | None] = {
                "manifest_sha256": hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
            }
        except OSError:
            entry = {"manifest_sha256": None}
        try:
            relative = os.path.normpath(folder.relative_to(root))
        except ValueError:
            relative = None
        if relative is not None:
            if lock is None:
                lock = _out_hashes(_load_yaml(root / "dvc.lock"))
            md5 = lock.get(relative)
            sidecar = folder.with_name(folder.name + ".dvc")
            if md5 is None and sidecar.is_file():
                md5 = _out_hashes(_load_yaml(sidecar)).get(folder.name)
            if md5 is not None:
                entry["dvc_md5"] = md5
        digests[name] = entry
    return digests


def portable_command(argv: Iterable[str], cwd: Path | None = None) -> list[str]:
    """argv with no absolute path of this machine: argv[0] as its basename, and each absolute path argument (alone
    or as the value of --option=PATH) made relative to cwd when under it."""
    cwd = Path(os.path.abspath(cwd or os.getcwd()))
    words = [str(word) for word in argv]

    def portable(word: str) -> str:
        if not os.path.isabs(word):
            return word
        path = Path(os.path.normpath(word))
        if path == cwd or cwd in path.parents:
            return path.relative_to(cwd).as_posix() or "."
        return f"<abs>/{path.name}"  # outside cwd: only the last name is kept, marked so it is not taken for a path

    def word_of(word: str) -> str:
        option, equals, value = word.partition("=")
        if equals and option.startswith("-"):
            return f"{option}={portable(value)}"
        return portable(word)

    return ([os.path.basename(words[0]) or words[0]] if words else []) + [word_of(word) for word in words[1:]]


__all__ = ["SOURCE_PATHS", "code_version", "dataset_digests", "portable_command", "project_root"]
