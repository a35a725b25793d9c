"""docs/adding-a-paper.md, followed literally with its worked example on a reproduced copy of the project:
every block marked with a file is written, the table line and the params.yaml section are added, every `$`
command must succeed, and then `dvc repro` trains the new component alone and the report shows its row."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.pipelines.dvc_project import ROOT, copy_of, ran_stages, sh

pytestmark = pytest.mark.integration

GUIDE = ROOT / "docs" / "adding-a-paper.md"
BLOCK = re.compile(r"^```(\w+)[ \t]*([^\n]*)\n(.*?)^```", re.M | re.S)
TABLE_OPENING = "REGISTRY: dict[str, str] = {\n"


def guide_steps() -> list[tuple[str, str, str]]:
    """(language, marker, body) of every fenced block of the guide, in order."""
    return BLOCK.findall(GUIDE.read_text())


def add_section(repo: Path, body: str) -> str:
    """The guide's params.yaml step: the section appended, its slug added to `components`."""
    (slug,) = yaml.safe_load(body)
    params = repo / "params.yaml"
    text = params.read_text()
    text = re.sub(r"^(components: \[[^\]]*)\]", rf"\1, {slug}]", text, count=1, flags=re.M)
    params.write_text(text.rstrip("\n") + "\n\n" + body)
    return slug


def test_the_guide_adds_a_paper_that_alone_is_trained(reproduced, tmp_path):
    repo = copy_of(reproduced[0], tmp_path / "repo")
    (repo / ".venv").symlink_to(ROOT / ".venv")  # `make` finds the installed stack, as after `make setup`
    installed = (ROOT / ".venv/bin/.installed").stat().st_mtime
    for prerequisite in ("pyproject.toml", "requirements.lock"):  # ... and takes it as up to date
        os.utime(repo / prerequisite, (installed - 1, installed - 1))
    outputs: dict[str, str] = {}
    slug = None
    for language, marker, body in guide_steps():
        if marker.startswith("file="):
            path = repo / marker.removeprefix("file=")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif marker == "registry-line":
            table = repo / "components" / "registry.py"
            assert TABLE_OPENING in table.read_text()
            table.write_text(table.read_text().replace(TABLE_OPENING, TABLE_OPENING + body, 1))
        elif marker == "params-section":
            slug = add_section(repo, body)
        elif language == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    outputs[line[2:]] = sh(*shlex.split(line[2:]), cwd=repo)
    assert slug == "example_logreg"
    assert "example_logreg" in outputs["paperzoo list"]
    assert "2 killed of 2 mutants" in outputs["make mutants SLUG=example_logreg"]

    assert ran_stages(outputs["dvc repro"]) == {"lineage", f"train@{slug}", "report"}
    assert f"{slug}: inputs changed: new" in outputs["dvc repro"]
    assert (repo / "runs/dvc" / slug / "metrics.json").is_file()
    report = (repo / "reports/index.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("|") and slug in line)
    assert "0.95" in report and row  # the paper's number stands beside ours
    touched = sh("git", "status", "--porcelain", "--untracked-files=all", cwd=repo).split("\n")
    outside = {line[3:] for line in touched if line and not line[3:].startswith(f"components/{slug}/")}
    added = {f"tests/components/test_{slug}.py", f"tests/mutants/{slug}.py"}
    assert outside == {"components/registry.py", "params.yaml", "dvc.lock", *added}
