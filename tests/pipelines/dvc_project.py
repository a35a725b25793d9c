"""A copy of the project as a fresh git repository, reproduced once by `dvc repro` at the `test` preset, for
the tests that drive DVC for real (each test module works on its own copy of that reproduced repository)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GIT_USER = ("-c", "user.name=paperzoo-test", "-c", "user.email=test@localhost")


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    return [name for name in listed if name and (ROOT / name).is_file()]


def sh(*args: str, cwd: Path, check: bool = True) -> str:
    """Run a command with this interpreter's environment first on PATH and the copy's own packages first on
    the import path (the editable install points at the original tree); return stdout + stderr."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(cwd)}
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def edit_params(repo: Path, edit) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def reproduced_project(dest: Path) -> tuple[Path, str]:
    """A fresh git repository holding the project at the test preset, after its first `dvc repro`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in project_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    params = dest / "params.yaml"  # edited as text: the file keeps its comments and layout, as a user's would
    params.write_text(re.sub(r"^preset: \w+", "preset: test", params.read_text(), count=1, flags=re.M))
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", *GIT_USER, "commit", "-q", "-m", "project", cwd=dest)
    first = sh("dvc", "repro", cwd=dest)
    sh("git", "add", "-A", cwd=dest)  # dvc.lock and DVC's .gitignore files: later changes stand out
    sh("git", *GIT_USER, "commit", "-q", "-m", "first repro", cwd=dest)
    return dest, first


def copy_of(reproduced: Path, dest: Path) -> Path:
    """An independent copy (its own DVC cache, data, runs and git history)."""
    shutil.copytree(reproduced, dest, symlinks=True)
    return dest
