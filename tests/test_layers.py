"""The layers of docs/architecture.md: components/ never imports the orchestration stack; deepspeed lives in one core module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"ray", "submitit", "prefect", "dvc", "dvclive", "cluster", "pipelines"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_components_import_no_orchestration():
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p) & FORBIDDEN)
        for p in (ROOT / "components").rglob("*.py")
        if imported_roots(p) & FORBIDDEN
    }
    assert offenders == {}


def test_deepspeed_is_imported_by_at_most_one_core_module():
    users = [p.relative_to(ROOT) for p in (ROOT / "components").rglob("*.py") if "deepspeed" in imported_roots(p)]
    assert len(users) <= 1
    assert all(p.parts[:2] == ("components", "core") for p in users)


def test_the_layer_test_bites(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import ray.tune\nfrom prefect import flow\nfrom pipelines.cli import main\n")
    assert imported_roots(bad) & FORBIDDEN == {"ray", "prefect", "pipelines"}


def test_cluster_never_imports_pipelines():
    offenders = [str(p) for p in (ROOT / "cluster").rglob("*.py") if "pipelines" in imported_roots(p)]
    assert offenders == []
