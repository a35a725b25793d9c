"""The rows of `make bench`'s one table: each benchmark script given `--summary FILE` appends its headline
measurements there as JSON lines, beside its own detailed table (benchmarks/bench.py collects them)."""

from __future__ import annotations

import json
from pathlib import Path


def add_row(path: Path | None, row: str, now: str, aim: str, meets: bool | None) -> None:
    """One row: what was measured, the figure as measured in this run (a ratio to its reference where there is
    one), the issue's aim, and whether the figure meets it (None: no aim to meet)."""
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"row": row, "now": now, "aim": aim, "meets": meets}) + "\n")
