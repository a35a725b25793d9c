"""Shared fixtures: the prepared digits dataset (made once per session) and the project's params."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipelines.params import load_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with images/digits prepared exactly as params.yaml asks."""
    from pipelines.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    spec = load_params(ROOT / "params.yaml")["datasets"]["images/digits"]
    prepare("images/digits", dict(spec), root)
    return root


@pytest.fixture
def params() -> dict:
    return copy.deepcopy(load_params(ROOT / "params.yaml"))
