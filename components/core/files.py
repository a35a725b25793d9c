"""Writes that never leave a half-written file or folder: write a temporary sibling, then rename over the target."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
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


# A staging folder is `.<name>.tmp-<pid>.<host>-<random>`, a retired one `.<name>.old-<pid>.<host>-<random>`: the
# pid and host say whether the process that made it still runs, so a later writer of the same target can remove
# what a killed one left without touching a concurrent writer's folder.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_FOREIGN_STALE_S = 24 * 3600  # a leftover of another host (or of older code): stale once untouched this long
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _leftovers(final_dir: Path) -> list[tuple[Path, bool]]:
    """Hidden staging and retired folders of `final_dir` whose writer is gone, with whether each is retired."""
    found = []
    try:
        entries = list(final_dir.parent.iterdir())
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        for kind in ("tmp", "old"):
            prefix = f".{final_dir.name}.{kind}-"
            if not entry.name.startswith(prefix):
                continue
            owner, dash, _random = entry.name[len(prefix) :].partition("-")
            pid, dot, host = owner.partition(".")
            if dash and dot and pid.isdigit() and host == _HOST:
                stale = int(pid) != os.getpid() and not _process_alive(int(pid))
            else:  # written on another host, or by older code without a pid: judge by age alone
                try:
                    stale = now - entry.lstat().st_mtime > _FOREIGN_STALE_S
                except OSError:
                    stale = False
            if stale and entry.is_dir() and not entry.is_symlink():
                found.append((entry, kind == "old"))
    return found


def remove_stale_leftovers(final_dir: Path) -> list[Path]:
    """Remove what killed writers of `final_dir` left beside it; returns the folders removed.

    A retired folder holds the previous `final_dir`: where a writer died between moving it aside and moving
    the new one in (only possible without an atomic exchange), and `final_dir` is missing, it is moved back."""
    final_dir = Path(final_dir)
    removed = []
    leftovers = _leftovers(final_dir)
    if not final_dir.exists():
        retired = [path / final_dir.name for path, is_old in leftovers if is_old and (path / final_dir.name).is_dir()]
        if retired:
            newest = max(retired, key=lambda path: path.stat().st_mtime)
            try:
                os.replace(newest, final_dir)
            except OSError:
                pass
    for path, _ in leftovers:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(first), None, str(second))


@contextmanager
def atomic_directory(final_dir: Path) -> Iterator[Path]:
    """Yield an empty sibling folder; on success it replaces `final_dir`, on error it is removed.

    The new folder replaces the old one in a single atomic exchange where the system offers one (Linux),
    else the old one is moved aside first; either way a crash leaves the old dataset or the new one (plus
    a hidden `.<name>.*` leftover, which the next write of the same target removes), never a half-written one.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers(final_dir)
    owner = f"{os.getpid()}.{_HOST}-"
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-{owner}", dir=final_dir.parent))
    try:
        yield staging
        # mkdtemp makes 0700 folders; a dataset should be as readable as any other folder the user makes
        os.chmod(staging, 0o777 & ~current_umask())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    try:
        if final_dir.is_dir() and not final_dir.is_symlink() and _exchange(staging, final_dir):
            shutil.rmtree(staging, ignore_errors=True)  # now the previous version
            return
        if final_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-{owner}", dir=final_dir.parent))
            os.replace(final_dir, retired / final_dir.name)
        os.replace(staging, final_dir)
    except BaseException:
        if retired is not None and not final_dir.exists() and (retired / final_dir.name).exists():
            os.replace(retired / final_dir.name, final_dir)  # put the previous version back
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
