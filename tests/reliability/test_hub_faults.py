"""Catalogue: the Hub's faults against its loopback double, through the CLI's entry function. A rejected token
and a push that cannot finish are one line each; a transient fault is retried; the local folder is never lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.pipelines.test_publish import REPO, finished_run, hub, offline_hub  # noqa: F401 (fixtures)


@dataclass(frozen=True)
class Case:
    name: str
    arrange: Callable  # (hub, monkeypatch) -> extra CLI arguments
    code: int
    said: str  # in the one error line (code 2) or in stdout (code 0)
    pushed: bool


def with_token(token: str, fault: Callable | None = None, *extra: str) -> Callable:
    def arrange(double, monkeypatch):
        monkeypatch.setenv("HF_TOKEN", double.token if token == "valid" else token)
        if fault is not None:
            fault(double)
        return list(extra)

    return arrange


CASES = [
    Case("rejected_token_fails_at_once", with_token("hf_wrong"), 2, "401", False),
    Case(
        "server_errors_until_the_timeout",
        with_token("valid", lambda d: d.fail_next(1000, 500), "--timeout", "3"),
        2,
        "--timeout 3 s",
        False,
    ),
    Case("one_server_error_is_retried", with_token("valid", lambda d: d.fail_next(1, 503)), 0, "pushed", True),
    Case(
        "hanging_hub_ends_at_the_timeout",
        with_token("valid", lambda d: d.stall_next(1000, 30.0), "--timeout", "1"),
        2,
        "--timeout 1 s",
        False,
    ),
    Case("no_token_writes_the_folder_and_says_so", lambda double, monkeypatch: [], 0, "published", False),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hub_fault(case, hub, finished_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    local_root = tmp_path / "published"
    extra = case.arrange(hub, monkeypatch)
    code = main(["publish", str(finished_run), "--repo-id", REPO, "--local-root", str(local_root), *extra])
    out, err = capsys.readouterr()
    assert code == case.code, err
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("paperzoo: error:") and case.said in lines[0], err
    else:
        assert case.said in out.lower()
    card = Path(local_root) / "uba" / finished_run.name / "README.md"
    assert card.is_file()  # the local folder is kept whatever the Hub did
    assert (REPO in hub.repos and hub.repos[REPO].head is not None) == case.pushed
