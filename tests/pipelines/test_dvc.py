"""DVC for real: `dvc repro` runs prepare -> train -> report, a second repro does nothing, changing one
component's parameter re-runs only its train stage and the report, and push/pull round-trip the data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    return [name for name in listed if name and (ROOT / name).is_file()]


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh git repository holding the project, with params.yaml at the test preset."""
    repo = tmp_path_factory.mktemp("repo")
    for name in project_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["preset"] = "test"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=repo)
    sh(
        "git",
        "-c",
        "user.name=paperzoo-test",
        "-c",
        "user.email=test@localhost",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "empty",
        cwd=repo,
    )
    sh("git", "add", "-A", cwd=repo)
    sh(
        "git",
        "-c",
        "user.name=paperzoo-test",
        "-c",
        "user.email=test@localhost",
        "commit",
        "-q",
        "-m",
        "project",
        cwd=repo,
    )
    return repo


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_repro_then_nothing_then_only_what_changed(repo):
    listed = yaml.safe_load((repo / "params.yaml").read_text())
    first = sh("dvc", "repro", cwd=repo)
    assert ran_stages(first) == {f"prepare@{name}" for name in listed["datasets"]} | {
        f"train@{slug}" for slug in listed["components"]
    } | {"report"}
    for name in listed["datasets"]:
        assert (repo / "data" / name / "manifest.json").is_file()
    report = (repo / "reports/index.md").read_text()
    for slug in listed["components"]:
        assert (repo / "runs/dvc" / slug / "metrics.json").is_file()
        assert f"### {slug}" in report
    assert (repo / "reports/index.html").is_file() and (repo / "reports/plots/uba-loss.png").is_file()

    again = sh("dvc", "repro", cwd=repo)
    assert ran_stages(again) == set()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["uba"]["schedule"]["phi"] = 0.7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = sh("dvc", "repro", cwd=repo)
    assert ran_stages(changed) == {"train@uba", "report"}
    assert yaml.safe_load((repo / "runs/dvc/uba/config.yaml").read_text())["schedule"]["phi"] == 0.7


def test_push_and_pull_round_trip(repo):
    if not (repo / "dvc.lock").is_file():
        sh("dvc", "repro", cwd=repo)
    shards = sorted((repo / "data/images/digits").iterdir())
    before = {p.name: p.read_bytes() for p in shards}
    sh("dvc", "push", cwd=repo)
    assert any((repo / ".dvcstore").rglob("*"))
    shutil.rmtree(repo / "data/images/digits")
    shutil.rmtree(repo / ".dvc/cache")
    sh("dvc", "pull", cwd=repo)
    after = {p.name: p.read_bytes() for p in sorted((repo / "data/images/digits").iterdir())}
    assert after == before


def test_reproduce_flow_drives_dvc(repo, tmp_path, monkeypatch):
    """The Prefect `reproduce` flow runs DVC's own reproduce: only the changed component's stages run."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    from pipelines.flows import reproduce_flow

    sh("dvc", "repro", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["uba"]["schedule"]["phi"] = 3.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(repo)
    ran = reproduce_flow(root=str(repo))
    assert set(ran) == {"train@uba", "report"}
    assert reproduce_flow(root=str(repo)) == []
