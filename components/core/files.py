"""Writes that never leave a half-written file or folder: write a temporary sibling, then rename over the target."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_directory(final_dir: Path) -> Iterator[Path]:
    """Yield an empty sibling folder; on success it replaces `final_dir`, on error it is removed.

    The older `final_dir` is moved aside only once the new one is complete, so a crash leaves either
    the old dataset or the new one (plus a hidden `.<name>.*` leftover), never a half-written one.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # mkdtemp makes 0700 folders; a dataset should be as readable as any other folder the user makes
    os.chmod(staging, 0o777 & ~current_umask())
    retired = None
    if final_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-", dir=final_dir.parent))
        os.replace(final_dir, retired / final_dir.name)
    os.replace(staging, final_dir)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
