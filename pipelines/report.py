"""The results report: every component's latest metrics beside the paper's numbers, and each sweep's table.

`build_report` writes reports/index.html and reports/index.md (the same document, rendered twice),
reports/metrics.json, and the plots under reports/plots/. Nothing in the output depends on the clock or
on the order files were written, and the PNGs carry no metadata, so an unchanged set of runs gives
byte-identical files and DVC sees no change.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from components.core.errors import ConfigError
from components.core.files import atomic_directory, atomic_write_json, atomic_write_text
from components.core.registry import REGISTRY
from pipelines.sweep import format_value

COMPONENTS_DIR = Path(__file__).resolve().parent.parent / "components"
TITLE = "paperzoo results"
MISSING = "—"


def latest_run(run_root: Path, slug: str, dvc_only: bool = False) -> Path | None:
    """DVC's stable run if there is one, else (unless dvc_only) the newest completed `paperzoo run`."""
    stable = run_root / "dvc" / slug
    if (stable / "metrics.json").is_file() or dvc_only:
        return stable if (stable / "metrics.json").is_file() else None
    runs = sorted((p for p in (run_root / slug).glob("*") if (p / "metrics.json").is_file()), key=lambda p: p.name)
    return runs[-1] if runs else None


def paper_yaml(slug: str) -> dict[str, Any]:
    path = COMPONENTS_DIR / slug / "paper.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def file_name(*parts: str) -> str:
    """A plot's file name from free text (slugs, sweep and metric names): stable and safe on any filesystem."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part).strip("_.") or "_" for part in parts) + ".png"


# The document: a few block and inline types, rendered once as HTML and once as Markdown so that the
# two files always say the same thing.


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Link:
    text: str
    href: str
    code: bool = False


@dataclass(frozen=True)
class Tag:
    """Text with a CSS class in HTML (a status badge, a muted note); plain text in Markdown."""

    text: str
    css: str


@dataclass(frozen=True)
class Break:
    pass


BR = Break()
Inline = str | Code | Link | Tag | Break
Cell = Sequence[Inline]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    inlines: Sequence[Inline]
    css: str = ""


@dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    numeric: frozenset[int] = frozenset()  # right-aligned columns
    anchor: str = ""
    best_first: bool = False  # highlight the first row (sweep tables are sorted best first)


@dataclass
class Figure:
    src: str  # relative to the report's folder: plots/<name>.png
    caption: str


@dataclass
class Figures:
    figures: Sequence[Figure] = field(default_factory=list)


Block = Heading | Para | Table | Figures


def cell(value: Any) -> Cell:
    if value is None or value == "":
        return [MISSING]
    return [format_value(value)]


CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1d2330;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 56px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d8dde6; }
h3 { font-size: 17px; margin: 26px 0 8px; }
p { margin: 6px 0 10px; }
p.meta { color: #5a6475; font-size: 13.5px; }
a { color: #1f5fbf; text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 12.5px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  background: #eceff4; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; background: #fff; font-size: 13.5px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { padding: 6px 9px; border-bottom: 1px solid #e3e7ee; text-align: left; vertical-align: top; }
th { background: #eef1f6; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
td:first-child code { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td { background: #eaf6ec; }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  background: #e4e7ec; color: #454d5c; white-space: nowrap; }
.status-completed { background: #dcf2e1; color: #17692f; }
.status-failed, .status-diverged { background: #fbe0e0; color: #9b1c1c; }
.status-preempted, .status-running { background: #fdf1d6; color: #8a5a00; }
.muted { color: #6b7485; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0 16px; }
figure { margin: 0; background: #fff; padding: 8px; border-radius: 4px; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  flex: 1 1 460px; max-width: 620px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: 12.5px; color: #5a6475; margin-top: 4px; }
"""


def html_inline(item: Inline) -> str:
    if isinstance(item, Break):
        return "<br>"
    if isinstance(item, Code):
        return f"<code>{html.escape(item.text)}</code>"
    if isinstance(item, Link):
        text = f"<code>{html.escape(item.text)}</code>" if item.code else html.escape(item.text)
        return f'<a href="{html.escape(item.href)}">{text}</a>'
    if isinstance(item, Tag):
        return f'<span class="{html.escape(item.css)}">{html.escape(item.text)}</span>'
    return html.escape(item)


def html_inlines(items: Sequence[Inline]) -> str:
    return "".join(html_inline(item) for item in items)


def html_block(block: Block) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        css = f' class="{html.escape(block.css)}"' if block.css else ""
        return f"<p{css}>{html_inlines(block.inlines)}</p>"
    if isinstance(block, Table):
        anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
        head = "".join(f"<th>{html.escape(column)}</th>" for column in block.columns)
        rows = []
        for index, row in enumerate(block.rows):
            css = ' class="best"' if block.best_first and index == 0 else ""
            cells = "".join(
                ('<td class="num">' if i in block.numeric else "<td>") + html_inlines(c) + "</td>"
                for i, c in enumerate(row)
            )
            rows.append(f"<tr{css}>{cells}</tr>")
        body = "\n".join(rows)
        return f'<div class="scroll"><table{anchor}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'
    figures = "\n".join(
        f'<figure><img src="{html.escape(quote(f.src))}" alt="{html.escape(f.caption)}">'
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for f in block.figures
    )
    return f'<div class="figures">\n{figures}\n</div>'


def render_html(blocks: Sequence[Block]) -> str:
    body = "\n".join(html_block(block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(TITLE)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{html.escape(TITLE)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def md_text(text: str) -> str:
    """Markdown-escape what could start markup or break a table row; newlines become spaces."""
    text = " ".join(str(text).splitlines())
    return re.sub(r"([\\`*\[\]<>|])", r"\\\1", text)


def md_code(text: str) -> str:
    text = " ".join(str(text).splitlines()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_inline(item: Inline) -> str:
    if isinstance(item, Break):
        return "<br>"
    if isinstance(item, Code):
        return md_code(item.text)
    if isinstance(item, Link):
        text = md_code(item.text) if item.code else md_text(item.text)
        return f"[{text}](<{quote(item.href, safe='/:#')}>)"
    if isinstance(item, Tag):
        return md_text(item.text)
    return md_text(item)


def md_inlines(items: Sequence[Inline]) -> str:
    return "".join(md_inline(item) for item in items)


def md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {md_text(block.text)}"
    if isinstance(block, Para):
        return md_inlines(block.inlines)
    if isinstance(block, Table):
        lines = [
            "| " + " | ".join(md_text(column) for column in block.columns) + " |",
            "|" + "".join("---:|" if i in block.numeric else "---|" for i in range(len(block.columns))),
        ]
        lines += ["| " + " | ".join(md_inlines(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    return "\n\n".join(f"![{md_text(f.caption)}](<{quote(f.src)}>)" for f in block.figures)


def render_markdown(blocks: Sequence[Block]) -> str:
    return f"# {md_text(TITLE)}\n\n" + "\n\n".join(md_block(block) for block in blocks) + "\n"


# Plots. matplotlib's object API (no pyplot: no global backend or figure state), the Agg canvas, and no
# PNG metadata, so the bytes depend on the data and the matplotlib version only.

PLOT_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def save_plot(path: Path, draw: Callable[[Any], None], size: tuple[float, float] = (6.0, 3.6)) -> None:
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    with matplotlib.rc_context(PLOT_STYLE):
        fig = MplFigure(figsize=size, dpi=110)
        ax = fig.subplots()
        draw(ax)
        fig.tight_layout()
        fig.savefig(path, format="png", metadata={"Software": None})


def spans_decades(values: Sequence[float], ratio: float) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return len(positive) == len(values) and len(positive) > 1 and max(positive) / min(positive) >= ratio


def loss_curve(records: Sequence[Mapping[str, Any]], title: str, path: Path) -> bool:
    """train/loss over steps (raw and a running mean), with any logged val/loss as points."""
    train = [
        (r["step"], r["train/loss"]) for r in records if "step" in r and isinstance(r.get("train/loss"), (int, float))
    ]
    val = [(r["step"], r["val/loss"]) for r in records if "step" in r and isinstance(r.get("val/loss"), (int, float))]
    if not train:
        return False

    def draw(ax: Any) -> None:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="#7aa6e0", linewidth=0.8, alpha=0.7, label="train/loss")
        window = max(1, len(losses) // 25)  # a running mean over ~4% of the run shows the trend under SGD noise
        if window > 1:
            smooth = [statistics.fmean(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
            ax.plot(steps, smooth, color="#1f4e99", linewidth=1.6, label=f"train/loss, mean of {window} steps")
        if val:
            ax.plot(*zip(*val), "o", color="#d9622b", markersize=5, label="val/loss")
        if spans_decades([y for _, y in train + val], 50):
            ax.set_yscale("log")
        ax.set(xlabel="optimizer step", ylabel="loss", title=title)
        ax.legend(loc="upper right")

    save_plot(path, draw)
    return True


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_vs_axis(
    trials: Sequence[Mapping[str, Any]], axes: Sequence[str], metric: str, mode: str, title: str, path: Path
) -> str | None:
    """The sweep's metric against its first numeric axis (else its first axis), one line per value of the
    other axes, mean and standard deviation over seeds. Returns the x axis, or None when nothing finished."""
    done = [t for t in trials if t.get("status") == "completed" and is_number((t.get("metrics") or {}).get(metric))]
    if not done or not axes:
        return None
    x_axis = next((a for a in axes if all(is_number(t["overrides"].get(a)) for t in trials)), axes[0])
    others = [a for a in axes if a != x_axis]
    numeric_x = all(is_number(t["overrides"].get(x_axis)) for t in trials)
    xs = list(dict.fromkeys(t["overrides"].get(x_axis) for t in trials))
    xs = sorted(xs) if numeric_x else xs
    lines: dict[tuple, dict[Any, list[float]]] = {}
    for t in trials:  # every trial, failed ones too, so that line order is the grid's order
        key = tuple(t["overrides"].get(a) for a in others)
        lines.setdefault(key, {})
    for t in done:
        key = tuple(t["overrides"].get(a) for a in others)
        lines[key].setdefault(t["overrides"].get(x_axis), []).append(float(t["metrics"][metric]))

    def draw(ax: Any) -> None:
        position = {x: (x if numeric_x else i) for i, x in enumerate(xs)}
        for key, points in lines.items():
            shown = [x for x in xs if points.get(x)]
            if not shown:
                continue
            means = [statistics.fmean(points[x]) for x in shown]
            stds = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in shown]
            label = ", ".join(f"{a}={format_value(v)}" for a, v in zip(others, key)) or metric
            ax.errorbar(
                [position[x] for x in shown],
                means,
                yerr=stds,
                marker="o",
                markersize=4,
                capsize=3,
                linewidth=1.4,
                label=label,
            )
        if numeric_x and spans_decades([float(x) for x in xs], 10):
            ax.set_xscale("log")
        if numeric_x:
            ax.set_xticks([float(x) for x in xs], [format_value(x) for x in xs])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(xs)), [str(x) for x in xs])
        if spans_decades([m for p in lines.values() for v in p.values() for m in v], 20):
            ax.set_yscale("log")
        better = "lower" if mode == "min" else "higher"
        ax.set(xlabel=x_axis, ylabel=f"{metric} ({better} is better)", title=title)
        if len(lines) > 1 or others:
            ax.legend(loc="best")

    save_plot(path, draw)
    return x_axis


def schedule_curves(
    trials: Sequence[Mapping[str, Any]], axes: Sequence[str], base_config: Mapping[str, Any], title: str, path: Path
) -> bool:
    """The LR multiplier over the step budget for each value of the sweep's schedule.* axes, computed from the
    schedule function itself with the trials' own schedule section and budget."""
    from components.core.schedules import ScheduleConfig, multiplier

    schedule_axes = [a for a in axes if a.startswith("schedule.")]
    budget = base_config.get("budget")
    if not schedule_axes or not isinstance(base_config.get("schedule"), Mapping) or not is_number(budget):
        return False
    budget = int(budget)
    variants = list(dict.fromkeys(tuple(t["overrides"].get(a) for a in schedule_axes) for t in trials))
    if all(is_number(v) for variant in variants for v in variant):
        variants.sort()
    configs = []
    for variant in variants:
        fields = dict(base_config["schedule"])
        fields.update({a.split(".", 1)[1]: v for a, v in zip(schedule_axes, variant)})
        try:
            configs.append((variant, ScheduleConfig(**fields)))
        except (ValueError, TypeError):
            return False
    steps = range(budget + 1)

    def draw(ax: Any) -> None:
        fractions = [s / budget for s in steps]
        for variant, cfg in configs:
            label = ", ".join(f"{a.split('.', 1)[1]}={format_value(v)}" for a, v in zip(schedule_axes, variant))
            ax.plot(fractions, [multiplier(cfg, s, budget) for s in steps], linewidth=1.6, label=label)
        reference = configs[0][1].model_copy(update={"name": "cosine"})
        ax.plot(
            fractions,
            [multiplier(reference, s, budget) for s in steps],
            color="#555555",
            linestyle="--",
            linewidth=1.0,
            label="cosine (reference)",
        )
        ax.set(
            xlabel=f"fraction of the step budget (budget = {budget} steps)",
            ylabel="LR / peak LR",
            title=title,
            xlim=(0, 1),
            ylim=(0, 1.05),
        )
        ax.legend(loc="lower left")

    save_plot(path, draw)
    return True


# Sections.


def run_href(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), Path(out_dir).absolute())).as_posix() + "/"


def status_tag(status: str) -> Tag:
    return Tag(status, f"status status-{re.sub(r'[^a-z0-9-]+', '-', status.lower())}")


@dataclass
class ComponentResult:
    slug: str
    run: Path | None
    info: dict[str, Any]
    metrics: dict[str, Any]
    paper: dict[str, Any]


def key_metrics(result: ComponentResult) -> list[str]:
    """The paper's metrics that this run reports, in paper.yaml's order; else the run's own, alphabetically."""
    named = list(dict.fromkeys(n.get("metric") for n in result.paper.get("results") or []))
    chosen = [m for m in named if m in result.metrics]
    return chosen or sorted(result.metrics)[:4]


def components_table(results: Sequence[ComponentResult], out_dir: Path) -> Table:
    rows = []
    for r in results:
        numbers = [n for n in r.paper.get("results") or [] if n.get("value") is not None]
        paper: list[Inline] = []
        for n in numbers:
            paper += ([BR] if paper else []) + [Code(str(n.get("metric"))), f" {format_value(n.get('value'))}"]
        if r.run is None:
            rows.append(
                [
                    [Code(r.slug)],
                    [status_tag("no run yet")],
                    [MISSING],
                    [Tag("run ", "muted"), Code(f"paperzoo run {r.slug}"), Tag(" or ", "muted"), Code("dvc repro")],
                    paper or [MISSING],
                    [MISSING],
                    [MISSING],
                ]
            )
            continue
        ours: list[Inline] = []
        for name in key_metrics(r):
            ours += ([BR] if ours else []) + [Code(name), f" {format_value(r.metrics[name])}"]
        setup = f"{r.info.get('preset', '?')}, seed {r.info.get('seed', '?')}"
        rows.append(
            [
                [Code(r.slug)],
                [status_tag(str(r.info.get("status", "completed")))],
                [setup],
                ours or [MISSING],
                paper or [MISSING],
                [format_duration(r.info.get("wall_seconds"))],
                [Link(str(r.run), run_href(r.run, out_dir), code=True)],
            ]
        )
    return Table(
        ["component", "status", "preset", "key metrics (this run)", "paper (paper.yaml)", "run time", "run"],
        rows,
        numeric=frozenset({5}),
        anchor="components",
    )


def component_section(r: ComponentResult, out_dir: Path, plots: Path) -> list[Block]:
    blocks: list[Block] = [Heading(3, r.slug, anchor=f"component-{file_name(r.slug)[:-4]}")]
    paper = r.paper.get("paper") or {}
    if paper.get("title"):
        cite = [str(paper["title"])]
        cite += [f" — {paper['authors']}"] if paper.get("authors") else []
        extra = ", ".join(
            str(x) for x in (f"arXiv {paper['arxiv']}" if paper.get("arxiv") else None, paper.get("venue")) if x
        )
        cite += [f" ({extra})"] if extra else []
        blocks.append(Para(cite))
    if r.run is None:
        blocks.append(
            Para(
                [
                    Tag("No completed run yet: ", "muted"),
                    Code(f"paperzoo run {r.slug}"),
                    Tag(" or ", "muted"),
                    Code("dvc repro"),
                    Tag(".", "muted"),
                ]
            )
        )
    else:
        code = r.info.get("code") or {}
        sha = str(code.get("git_sha") or "?")[:10] + (" (dirty)" if code.get("dirty") else "")
        blocks.append(
            Para(
                [
                    "Run ",
                    Link(str(r.run), run_href(r.run, out_dir), code=True),
                    f" · preset {r.info.get('preset', '?')} · seed {r.info.get('seed', '?')} · code ",
                    Code(sha),
                    f" · started {r.info.get('started', '?')} · {format_duration(r.info.get('wall_seconds'))}",
                ],
                css="meta",
            )
        )
    numbers = r.paper.get("results") or []
    rows = []
    for name in sorted(r.metrics):
        matching = [n for n in numbers if n.get("metric") == name] or [{}]
        rows += [paper_row(name, r.metrics[name] if i == 0 else None, n) for i, n in enumerate(matching)]
    rows += [paper_row(str(n.get("metric")), None, n) for n in numbers if n.get("metric") not in r.metrics]
    if rows:
        blocks.append(
            Table(["metric", "this run", "paper", "dataset", "setting", "source"], rows, numeric=frozenset({1, 2}))
        )
    if r.run is not None:
        name = file_name(r.slug, "loss")
        title = f"{r.slug}: training loss ({r.info.get('preset', '?')} preset, seed {r.info.get('seed', '?')})"
        if loss_curve(read_jsonl(r.run / "metrics.jsonl"), title, plots / name):
            blocks.append(Figures([Figure(f"plots/{name}", f"{r.slug}: train/loss over optimizer steps")]))
    return blocks


def paper_row(name: str, ours: Any, number: Mapping[str, Any]) -> list[Cell]:
    return [
        [Code(name)],
        cell(ours),
        cell(number.get("value")),
        cell(number.get("dataset")),
        cell(number.get("setting")),
        cell(number.get("source")),
    ]


def parse_number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if text.lstrip("-").isdigit() else value


def sweep_section(name: str, directory: Path, out_dir: Path, plots: Path) -> list[Block]:
    """The latest finished run of one sweep: its summary table (mean ± std over seeds) and its plots."""
    info = read_json(directory / "sweep.json")
    trials = read_jsonl(directory / "trials.jsonl")
    metric, mode = info.get("metric", "val/loss"), info.get("mode", "min")
    with open(directory / "summary.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        summary = [{k: parse_number(v) for k, v in row.items()} for row in reader]
    first_stat = next((i for i, c in enumerate(header) if c.endswith((" mean", " std"))), len(header))
    axes = [c for c in header[:first_stat] if c not in ("seeds", "failed")]
    if trials:
        axes = list(dict.fromkeys([*trials[0].get("overrides", {})] + axes))
    stats = list(dict.fromkeys(c[: -len(" mean")] for c in header if c.endswith(" mean")))
    stats = [metric] + [s for s in stats if s != metric] if metric in stats else stats

    failed = sum(1 for t in trials if t.get("status") != "completed")
    walls = [read_json(trial_dir(directory, t) / "run.json").get("wall_seconds") for t in trials]
    total = sum(w for w in walls if is_number(w)) if any(is_number(w) for w in walls) else None
    blocks: list[Block] = [
        Heading(3, name, anchor=f"sweep-{file_name(name)[:-4]}"),
        Para(
            [
                f"Component {info.get('component', '?')} · {len(trials) or '?'} trials ({failed} failed) on "
                f"{info.get('backend', '?')} · ranked by {metric} ({mode}) · trials' run time "
                f"{format_duration(total)} · from ",
                Link(str(directory), run_href(directory, out_dir), code=True),
            ],
            css="meta",
        ),
    ]
    columns = [*axes, *stats, "seeds", "failed"]
    rows = []
    for row in summary:
        cells: list[Cell] = [cell(row.get(a)) for a in axes]
        seeds, failed_here = row.get("seeds"), row.get("failed")
        spread = not (is_number(seeds) and is_number(failed_here) and seeds - failed_here < 2)
        for s in stats:
            mean, std = row.get(f"{s} mean"), row.get(f"{s} std") if spread else None
            cells.append(
                [MISSING]
                if mean in (None, "")
                else [format_value(mean) + ("" if std in (None, "") else f" ± {std:.2g}")]
            )
        cells += [cell(row.get("seeds")), cell(row.get("failed"))]
        rows.append(cells)
    numeric = frozenset(range(len(axes), len(columns)))
    blocks.append(Table(columns, rows, numeric=numeric, best_first=True))
    blocks.append(
        Para(
            [
                Tag(
                    f"Each metric is the mean ± the standard deviation over seeds (none shown where fewer "
                    f"than two finished); rows are sorted best first by mean {metric}.",
                    "muted",
                )
            ]
        )
    )

    figures = []
    plot = file_name("sweep", name, metric)
    x_axis = metric_vs_axis(trials, axes, metric, mode, f"{name}: final {metric}", plots / plot)
    if x_axis is not None:
        figures.append(Figure(f"plots/{plot}", f"{name}: final {metric} against {x_axis}, mean ± std over seeds"))
    base = (
        yaml.safe_load((trial_dir(directory, trials[0]) / "config.yaml").read_text())
        if trials and (trial_dir(directory, trials[0]) / "config.yaml").is_file()
        else {}
    )
    plot = file_name("sweep", name, "schedules")
    if schedule_curves(trials, axes, base or {}, f"{name}: learning-rate schedules", plots / plot):
        figures.append(Figure(f"plots/{plot}", f"{name}: LR multiplier over the budget for each swept schedule"))
    if figures:
        blocks.append(Figures(figures))
    return blocks


def trial_dir(sweep_dir: Path, trial: Mapping[str, Any]) -> Path:
    """A trial's run directory as recorded, else the same name under this sweep's trials/ (the sweep moved)."""
    recorded = Path(str(trial.get("run_dir", "")))
    if recorded.name and (recorded / "run.json").is_file():
        return recorded
    return sweep_dir / "trials" / recorded.name


def latest_sweep(sweep_root: Path, name: str) -> Path | None:
    finished = sorted(p.parent for p in (sweep_root / name).glob("*/summary.csv"))
    return finished[-1] if finished else None


def build_report(
    params: Mapping[str, Any], run_root: Path = Path("runs"), out_dir: Path = Path("reports"), dvc_only: bool = False
) -> Path:
    """dvc_only: read only DVC's stage outputs, so the DVC report stage depends on nothing untracked."""
    run_root, out_dir = Path(run_root), Path(out_dir)
    slugs = list(params.get("components") or REGISTRY)
    for slug in slugs:
        if slug not in REGISTRY:
            raise ConfigError(f"report: unknown component '{slug}'")
    results = []
    for slug in slugs:
        run = latest_run(run_root, slug, dvc_only)
        results.append(
            ComponentResult(
                slug,
                run,
                read_json(run / "run.json") if run else {},
                read_json(run / "metrics.json") if run else {},
                paper_yaml(slug),
            )
        )
    sweeps = (
        [] if dvc_only else [(name, latest_sweep(run_root / "sweeps", name)) for name in params.get("sweeps") or {}]
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir / "plots") as plots:
        body: list[Block] = [Heading(2, "Components", anchor="components-section"), components_table(results, out_dir)]
        for result in results:
            body += component_section(result, out_dir, plots)
        if not dvc_only and sweeps:
            body.append(Heading(2, "Sweeps", anchor="sweeps"))
            for name, directory in sweeps:
                if directory is None:
                    body += [
                        Heading(3, name),
                        Para(
                            [Tag("No finished run yet: ", "muted"), Code(f"paperzoo sweep {name}"), Tag(".", "muted")]
                        ),
                    ]
                else:
                    body += sweep_section(name, directory, out_dir, plots)

    sources = [r.run for r in results if r.run is not None] + [d for _, d in sweeps if d is not None]
    intro: list[Inline] = [
        "Generated by ",
        Code("paperzoo report" + (" --dvc-only" if dvc_only else "")),
        " from "
        + (f"{len(sources)} run director{'y' if len(sources) == 1 else 'ies'}: " if sources else "no runs yet."),
    ]
    for i, source in enumerate(sources):
        intro += ([", "] if i else []) + [Link(str(source), run_href(source, out_dir), code=True)]
    intro += [
        ". " if sources else " ",
        "Each component shows its latest run (DVC's if there is one) beside the numbers its paper.yaml gives"
        + ("." if dvc_only else "; each sweep, its latest finished run."),
    ]
    blocks: list[Block] = [Para(intro, css="meta"), *body]

    atomic_write_text(out_dir / "index.md", render_markdown(blocks))
    atomic_write_text(out_dir / "index.html", render_html(blocks))
    atomic_write_json(
        out_dir / "metrics.json",
        {
            r.slug: {"run_dir": str(r.run), "preset": r.info.get("preset"), "metrics": r.metrics}
            for r in results
            if r.run is not None
        },
    )
    return out_dir / "index.html"
