"""The results report: every component's latest metrics beside the paper's numbers, and each sweep's table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.core.errors import ConfigError
from components.core.files import atomic_write_json, atomic_write_text
from components.core.registry import REGISTRY
from pipelines.sweep import format_value

COMPONENTS_DIR = Path(__file__).resolve().parent.parent / "components"


def latest_run(run_root: Path, slug: str, dvc_only: bool = False) -> Path | None:
    """DVC's stable run if there is one, else (unless dvc_only) the newest completed `paperzoo run`."""
    stable = run_root / "dvc" / slug
    if (stable / "metrics.json").is_file() or dvc_only:
        return stable if (stable / "metrics.json").is_file() else None
    runs = sorted((p for p in (run_root / slug).glob("*") if (p / "metrics.json").is_file()),
                  key=lambda p: p.name)
    return runs[-1] if runs else None


def paper_numbers(slug: str) -> list[dict[str, Any]]:
    path = COMPONENTS_DIR / slug / "paper.yaml"
    if not path.is_file():
        return []
    return list((yaml.safe_load(path.read_text()) or {}).get("results", []))


def build_report(params: Mapping[str, Any], run_root: Path = Path("runs"), out_dir: Path = Path("reports"),
                 dvc_only: bool = False) -> Path:
    """dvc_only: read only DVC's stage outputs, so the DVC report stage depends on nothing untracked."""
    run_root, out_dir = Path(run_root), Path(out_dir)
    slugs = list(params.get("components") or REGISTRY)
    lines = ["# paperzoo results", ""]
    collected: dict[str, Any] = {}
    for slug in slugs:
        if slug not in REGISTRY:
            raise ConfigError(f"report: unknown component '{slug}'")
        lines += [f"## {slug}", ""]
        run = latest_run(run_root, slug, dvc_only)
        if run is None:
            lines += [f"No completed run yet: `paperzoo run {slug}` or `dvc repro`.", ""]
        else:
            metrics = json.loads((run / "metrics.json").read_text())
            info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
            collected[slug] = {"run_dir": str(run), "preset": info.get("preset"), "metrics": metrics}
            lines += [f"Run `{run}` (preset {info.get('preset')}, seed {info.get('seed')}, "
                      f"code {info.get('code', {}).get('git_sha', '?')[:10]}).", "",
                      "| metric | value |", "|---|---|"]
            lines += [f"| {key} | {format_value(value)} |" for key, value in sorted(metrics.items())]
            lines.append("")
            for plot in sorted(run.glob("*.png")):
                lines += [f"![{plot.stem}]({Path('..') / plot})", ""]
        numbers = paper_numbers(slug)
        if numbers:
            lines += ["Paper:", "", "| metric | value | dataset | setting | source |", "|---|---|---|---|---|"]
            lines += [f"| {n.get('metric')} | {format_value(n.get('value')) if n.get('value') is not None else 'n/a'} | "
                      f"{n.get('dataset')} | "
                      f"{n.get('setting')} | {n.get('source')} |" for n in numbers]
            lines.append("")
    sweep_root = run_root / "sweeps"
    for name in () if dvc_only else (params.get("sweeps") or {}):
        finished = sorted((sweep_root / name).glob("*/summary.md"))
        if finished:
            lines += [finished[-1].read_text(), f"(from `{finished[-1].parent}`)", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
    atomic_write_json(out_dir / "metrics.json", collected)
    return out_dir / "report.md"
