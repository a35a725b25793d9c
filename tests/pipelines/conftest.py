"""Fixtures of the pipeline tests: the project reproduced once by DVC, shared by the modules that drive DVC."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.dvc_project import reproduced_project


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> tuple[Path, str]:
    """The project after its first `dvc repro` at the test preset, and that repro's output. Never modified:
    tests copy it (dvc_project.copy_of)."""
    return reproduced_project(tmp_path_factory.mktemp("reproduced") / "repo")
