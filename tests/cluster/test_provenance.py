"""Provenance: the code (commit, and a digest of edited source) and the data (manifest and DVC digests) of a run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.provenance import code_version, dataset_digests, portable_command
from cluster.runner import execute, plan_run

GIT = ["git", "-c", "user.name=paperzoo", "-c", "user.email=paperzoo@example.com", "-c", "commit.gpgsign=false"]
LOCK = """schema: '2.0'
stages:
  prepare@images/digits:
    cmd: paperzoo prepare images/digits
    outs:
    - path: data/images/digits
      hash: md5
      md5: {md5}
      size: 3687628
      nfiles: 4
  train@uba:
    cmd: paperzoo run uba --out runs/dvc/uba
    outs:
    - path: runs/dvc/uba
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
"""


def git(root: Path, *args: str) -> None:
    subprocess.run([*GIT, "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A committed project: a component source file, dvc.yaml, dvc.lock and a prepared dataset's manifest."""
    root = tmp_path / "project"
    (root / "components" / "toy").mkdir(parents=True)
    (root / "components" / "toy" / "component.py").write_text("LR = 0.1\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'toy'\n")
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "dvc.lock").write_text(LOCK.format(md5="5c7edd0e1053f93524319e0a92368f81.dir"))
    (root / "notes.md").write_text("notes\n")
    (root / "data" / "images" / "digits").mkdir(parents=True)
    (root / "data" / "images" / "digits" / "manifest.json").write_text('{"splits": {}}\n')
    (root / "data" / "images" / "other").mkdir(parents=True)
    (root / "data" / "images" / "other" / "manifest.json").write_text('{"splits": {"train": {}}}\n')
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def test_a_clean_checkout_is_clean(repo):
    code = code_version(repo)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert code == {"git_sha": head.strip(), "dirty": False}


def test_dvc_lock_data_and_other_files_do_not_make_it_dirty(repo):
    (repo / "dvc.lock").write_text(LOCK.format(md5="ffffffffffffffffffffffffffffffff.dir"))  # what `dvc repro` does
    (repo / "data" / "images" / "digits" / "manifest.json").write_text('{"splits": {"x": {}}}\n')
    (repo / "notes.md").write_text("edited\n")
    (repo / "components" / "toy" / "untracked.py").write_text("X = 1\n")
    assert code_version(repo)["dirty"] is False


def test_an_edited_source_file_is_dirty_with_a_digest_of_the_edit(repo):
    source = repo / "components" / "toy" / "component.py"
    source.write_text("LR = 0.2\n")
    first = code_version(repo)
    assert first["dirty"] is True and len(first["diff_sha256"]) == 64
    assert code_version(repo) == first  # the same edit, the same digest

    source.write_text("LR = 0.3\n")
    second = code_version(repo)
    assert second["dirty"] is True and second["diff_sha256"] != first["diff_sha256"]
    assert second["git_sha"] == first["git_sha"]

    git(repo, "add", "-A")  # staged edits still differ from HEAD
    assert code_version(repo) == second

    source.write_text("LR = 0.1\n")
    (repo / "pyproject.toml").write_text("[project]\nname = 'toy2'\n")
    assert code_version(repo)["dirty"] is True


def test_outside_a_git_checkout_nothing_is_claimed(tmp_path):
    assert code_version(tmp_path) == {"git_sha": "unknown", "dirty": None}


def test_dataset_digests_follow_the_manifest_and_read_dvc_lock(repo):
    manifest = repo / "data" / "images" / "digits" / "manifest.json"
    digests = dataset_digests(repo / "data", ["images/digits", "images/other"])
    assert digests["images/digits"] == {
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "dvc_md5": "5c7edd0e1053f93524319e0a92368f81.dir",
    }
    assert "dvc_md5" not in digests["images/other"]  # dvc.lock has no out for it
    assert digests["images/other"]["manifest_sha256"] != digests["images/digits"]["manifest_sha256"]

    manifest.write_text('{"splits": {"train": {"shards": []}}}\n')
    changed = dataset_digests(repo / "data", ["images/digits"])["images/digits"]
    assert changed["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert changed["manifest_sha256"] != digests["images/digits"]["manifest_sha256"]

    (repo / "dvc.lock").write_text(LOCK.format(md5="ffffffffffffffffffffffffffffffff.dir"))
    assert dataset_digests(repo / "data", ["images/digits"])["images/digits"]["dvc_md5"].startswith("ffff")


def test_dataset_digests_from_a_relative_data_dir_and_a_dvc_file(repo, monkeypatch):
    monkeypatch.chdir(repo / "components")  # dvc.yaml is found by walking up from the data folder, not from cwd
    relative = Path(os.path.relpath(repo / "data"))
    assert dataset_digests(relative, ["images/digits"])["images/digits"]["dvc_md5"].startswith("5c7e")
    (repo / "data" / "images" / "other.dvc").write_text("outs:\n- md5: abcdef.dir\n  path: other\n")
    assert dataset_digests(relative, ["images/other"])["images/other"]["dvc_md5"] == "abcdef.dir"


def test_dataset_digests_outside_a_dvc_project_and_a_missing_dataset(tmp_path):
    (tmp_path / "images" / "digits").mkdir(parents=True)
    (tmp_path / "images" / "digits" / "manifest.json").write_text("{}\n")
    digests = dataset_digests(tmp_path, ["images/digits", "images/absent"])
    assert digests == {
        "images/digits": {"manifest_sha256": hashlib.sha256(b"{}\n").hexdigest()},
        "images/absent": {"manifest_sha256": None},
    }


def test_portable_command(tmp_path):
    cwd = tmp_path / "work"
    command = portable_command(
        [
            str(cwd / ".venv" / "bin" / "paperzoo"),
            "run",
            "uba",
            "--out",
            str(cwd / "runs" / "x"),
            "--data=/srv/d",
            "-q",
        ],
        cwd,
    )
    assert command == ["paperzoo", "run", "uba", "--out", "runs/x", "--data=<abs>/d", "-q"]
    assert portable_command([str(cwd)], cwd) == [cwd.name] and portable_command([], cwd) == []


def test_a_run_records_schema_2_its_datasets_and_a_portable_command(params, data_root, tmp_path, monkeypatch):
    cwd = Path.cwd()
    monkeypatch.setattr(sys, "argv", [str(cwd / "bin" / "paperzoo"), "run", "uba", "--out", str(cwd / "runs" / "x")])
    request = plan_run("uba", params, preset="test", data_dir=data_root)
    run_dir = execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False).run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["schema"] == 2 and info["status"] == "completed"
    manifest = data_root / "images" / "digits" / "manifest.json"
    assert info["datasets"] == {"images/digits": {"manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}}
    assert info["command"] == ["paperzoo", "run", "uba", "--out", "runs/x"]
    assert not any(word.startswith("/") for word in info["command"])
    code = info["code"]
    assert len(code["git_sha"]) >= 7 and isinstance(code["dirty"], bool)
    assert ("diff_sha256" in code) == code["dirty"]
