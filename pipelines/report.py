"""The results report: one document from everything under runs/, whoever asks for it.

`build_report` is the only builder: `paperzoo report` and DVC's report stage (the same command) call it
with the same inputs, so neither drops what the other shows. It writes reports/index.html and
reports/index.md (the same document, rendered twice), reports/metrics.json (the pipeline's metrics, for
`dvc metrics`), and the plots under reports/plots/. The document holds a table of contents and up to
three sections:

- Pipeline: one row per component in params.yaml's `components`, from runs/dvc/<slug> (what `dvc repro`
  trained), its key metrics beside the numbers its paper.yaml gives, each number saying its dataset and
  setting (ours: preset and dataset; the paper's: dataset and setting);
- Sweeps: each sweep of params.yaml with a finished run on disk, its latest table and plots;
- One-off runs: the newest completed `paperzoo run` per component under runs/<slug>/.

A section with nothing in it is left out, and so is its entry in the contents. Nothing in the output
depends on the clock or on the order files were written, and the PNGs carry no metadata, so an unchanged
set of runs gives byte-identical files and DVC sees no change.
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

from cluster.states import OK_STATES, State, run_state
from components.core.errors import ConfigError, PaperzooError
from components.core.files import atomic_directory, atomic_write_json, atomic_write_text
from components.registry import REGISTRY
from pipelines.compare import format_value

COMPONENTS_DIR = Path(__file__).resolve().parent.parent / "components"
TITLE = "paperzoo results"
MISSING = "—"


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
class BulletList:
    items: Sequence[Sequence[Inline]]
    css: str = ""


@dataclass
class Figure:
    src: str  # relative to the report's folder: plots/<name>.png
    caption: str


@dataclass
class Figures:
    figures: Sequence[Figure] = field(default_factory=list)


Block = Heading | Para | Table | BulletList | Figures


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
.status-failed, .status-diverged, .status-interrupted { background: #fbe0e0; color: #9b1c1c; }
.status-preempted, .status-running, .status-cancelled { background: #fdf1d6; color: #8a5a00; }
.muted { color: #6b7485; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0 16px; }
figure { margin: 0; background: #fff; padding: 8px; border-radius: 4px; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  flex: 1 1 460px; max-width: 620px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: 12.5px; color: #5a6475; margin-top: 4px; }
ul.toc { margin: 6px 0 10px; padding-left: 22px; }
ul.toc li { margin: 3px 0; }
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
    if isinstance(block, BulletList):
        css = f' class="{html.escape(block.css)}"' if block.css else ""
        items = "\n".join(f"<li>{html_inlines(item)}</li>" for item in block.items)
        return f"<ul{css}>\n{items}\n</ul>"
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
        # an explicit anchor, so that the contents' links work where two headings share a text
        anchor = f'<a id="{html.escape(block.anchor)}"></a>\n' if block.anchor else ""
        return f"{anchor}{'#' * block.level} {md_text(block.text)}"
    if isinstance(block, Para):
        return md_inlines(block.inlines)
    if isinstance(block, BulletList):
        return "\n".join(f"- {md_inlines(item)}" for item in block.items)
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
    done = [t for t in trials if t.get("status") == State.COMPLETED and is_number((t.get("metrics") or {}).get(metric))]
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


# Where results come from. runs/dvc/<slug> is what `dvc repro` trained; runs/<slug>/<time>-<hash>-s<seed>
# are `paperzoo run`s; runs/sweeps/<name>/<time>/ are sweeps (their trials live inside, never under
# runs/<slug>). Only completed runs write metrics.json.


def pipeline_run(run_root: Path, slug: str) -> Path | None:
    """DVC's stage output for this component, if `dvc repro` trained it."""
    stable = run_root / "dvc" / slug
    return stable if (stable / "metrics.json").is_file() else None


def latest_run(run_root: Path, slug: str) -> Path | None:
    """The newest completed `paperzoo run` of this component (names start with the time), else None."""
    runs = sorted(
        (p for p in (run_root / slug).glob("*") if not p.name.startswith(".") and (p / "metrics.json").is_file()),
        key=lambda p: p.name,
    )
    return runs[-1] if runs else None


def latest_sweep(sweep_root: Path, name: str) -> Path | None:
    finished = sorted(p.parent for p in (sweep_root / name).glob("*/summary.csv"))
    return finished[-1] if finished else None


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def run_dataset(slug: str, config: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> str:
    """What a run read: the datasets its run.json records (the component's own `datasets_for` at run time, so a
    quadratic task does not claim the unused `dataset` default); for a run.json without them, `datasets_for`
    on the validated config now (importing the component), else the config's `dataset` key. A run that reads
    no prepared dataset says its task, if it has one ('generated (quadratic task)')."""
    names: Sequence[str] | None
    if isinstance((info or {}).get("datasets"), Mapping):
        names = list(info["datasets"])  # type: ignore[index]
    else:
        from components.core.config import validate
        from components.registry import get_component

        try:
            component = get_component(slug)
            validated = validate(component.Config, config, scope=f"{slug} config.yaml")
            names, config = list(component.datasets_for(validated)), validated.model_dump()
        except (PaperzooError, ImportError, AttributeError, TypeError, ValueError):
            names = None  # not a loadable component or an old config: trust what the config says
    if names:
        return ", ".join(names)
    if names is None and isinstance(config.get("dataset"), str):
        return config["dataset"]
    task = config.get("task")
    return f"generated ({task} task)" if isinstance(task, str) else "no prepared dataset"


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
    dataset: str = MISSING

    @property
    def preset(self) -> str:
        return str(self.info.get("preset", "?"))

    @property
    def setup(self) -> str:
        """Ours, said with what it was measured on: 'smoke preset · images/digits · seed 0'."""
        return f"{self.preset} preset · {self.dataset} · seed {self.info.get('seed', '?')}"


def load_result(slug: str, run: Path | None) -> ComponentResult:
    if run is None:
        return ComponentResult(slug, None, {}, {}, paper_yaml(slug))
    info = read_json(run / "run.json")
    return ComponentResult(
        slug,
        run,
        info,
        read_json(run / "metrics.json"),
        paper_yaml(slug),
        run_dataset(slug, read_yaml(run / "config.yaml"), info),
    )


@dataclass(frozen=True)
class Section:
    """One kind of result: where its component rows come from, its anchors and plot names."""

    key: str  # anchor prefix and plot-name prefix ("" keeps the pipeline's plots at plots/<slug>-loss.png)
    table_anchor: str
    plot_prefix: tuple[str, ...]
    no_run: Sequence[Inline]  # what to do when there is no run


PIPELINE = Section("pipeline", "pipeline-table", (), [Tag("run ", "muted"), Code("dvc repro")])
ONE_OFF = Section("run", "one-off-table", ("run",), [Tag("run ", "muted"), Code("paperzoo run")])


def key_metrics(result: ComponentResult) -> list[str]:
    """The paper's metrics that this run reports, in paper.yaml's order; else the run's own, alphabetically."""
    named = list(dict.fromkeys(n.get("metric") for n in result.paper.get("results") or []))
    chosen = [m for m in named if m in result.metrics]
    return chosen or sorted(result.metrics)[:4]


def paper_context(number: Mapping[str, Any]) -> str:
    """'(CIFAR-10; ResNet-18, 200 epochs)': where a paper's number comes from."""
    said = "; ".join(str(number[k]) for k in ("dataset", "setting") if number.get(k) not in (None, ""))
    return f" ({said})" if said else " (dataset and setting not given)"


def results_table(results: Sequence[ComponentResult], out_dir: Path, section: Section) -> Table:
    rows = []
    for r in results:
        numbers = [n for n in r.paper.get("results") or [] if n.get("value") is not None]
        paper: list[Inline] = []
        for n in numbers:
            paper += ([BR] if paper else []) + [
                Code(str(n.get("metric"))),
                f" {format_value(n.get('value'))}",
                Tag(paper_context(n), "muted"),
            ]
        if r.run is None:
            rows.append(
                [
                    [Code(r.slug)],
                    [status_tag("no run yet")],
                    list(section.no_run),
                    paper or [MISSING],
                    [MISSING],
                    [MISSING],
                ]
            )
            continue
        ours: list[Inline] = [Tag(r.setup, "muted")]
        for name in key_metrics(r):
            ours += [BR, Code(name), f" {format_value(r.metrics[name])}"]
        rows.append(
            [
                [Code(r.slug)],
                [status_tag(run_state(r.info, r.run) if "status" in r.info else State.COMPLETED)],
                ours,
                paper or [MISSING],
                [format_duration(r.info.get("wall_seconds"))],
                [Link(str(r.run), run_href(r.run, out_dir), code=True)],
            ]
        )
    return Table(
        ["component", "status", "ours (preset, dataset)", "paper (dataset, setting)", "run time", "run"],
        rows,
        numeric=frozenset({4}),
        anchor=section.table_anchor,
    )


def component_section(r: ComponentResult, out_dir: Path, plots: Path, section: Section) -> list[Block]:
    blocks: list[Block] = [Heading(3, r.slug, anchor=f"{section.key}-{file_name(r.slug)[:-4]}")]
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
        blocks.append(Para([Tag("No completed run yet: ", "muted"), *section.no_run[1:], Tag(".", "muted")]))
    else:
        code = r.info.get("code") or {}
        sha = str(code.get("git_sha") or "?")[:10] + (" (dirty)" if code.get("dirty") else "")
        blocks.append(
            Para(
                [
                    "Run ",
                    Link(str(r.run), run_href(r.run, out_dir), code=True),
                    f" · preset {r.preset} · dataset {r.dataset} · seed {r.info.get('seed', '?')} · code ",
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
        ours = f"ours: {r.preset} preset, {r.dataset}" if r.run is not None else "ours"
        blocks.append(
            Table(
                ["metric", ours, "paper", "paper's dataset", "paper's setting", "source"],
                rows,
                numeric=frozenset({1, 2}),
            )
        )
    if r.run is not None:
        name = file_name(*section.plot_prefix, r.slug, "loss")
        title = f"{r.slug}: training loss ({r.preset} preset, {r.dataset}, seed {r.info.get('seed', '?')})"
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

    failed = sum(1 for t in trials if t.get("status") not in OK_STATES)  # ASHA's stops are not failures
    runs = [trial_dir(directory, t) for t in trials]
    infos = [read_json(run / "run.json") for run in runs]
    walls = [i.get("wall_seconds") for i in infos]
    total = sum(w for w in walls if is_number(w)) if any(is_number(w) for w in walls) else None
    component = str(info.get("component", "?"))
    presets = list(dict.fromkeys(str(i["preset"]) for i in infos if i.get("preset")))
    datasets = list(
        dict.fromkeys(
            run_dataset(component, read_yaml(run / "config.yaml"), run_info)
            for run, run_info in zip(runs, infos)
            if run.is_dir()
        )
    )
    blocks: list[Block] = [
        Heading(3, name, anchor=f"sweep-{file_name(name)[:-4]}"),
        Para(
            [
                f"Component {component} · preset {' / '.join(presets) or '?'} · dataset "
                f"{' / '.join(datasets) or '?'} · {len(trials) or '?'} trials ({failed} failed) on "
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
    base = read_yaml(runs[0] / "config.yaml") if runs else {}
    plot = file_name("sweep", name, "schedules")
    if schedule_curves(trials, axes, base, f"{name}: learning-rate schedules", plots / plot):
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


def contents(body: Sequence[Block]) -> BulletList:
    """One line per section present (its level-2 heading), with links to what it holds (its level-3 ones)."""
    items: list[list[Inline]] = []
    for block in body:
        if not isinstance(block, Heading) or not block.anchor:
            continue
        if block.level == 2:
            items.append([Link(block.text, f"#{block.anchor}")])
        elif block.level == 3 and items:
            items[-1] += [": " if len(items[-1]) == 1 else " · ", Link(block.text, f"#{block.anchor}")]
    return BulletList(items, css="toc")


def build_report(params: Mapping[str, Any], run_root: Path = Path("runs"), out_dir: Path = Path("reports")) -> Path:
    """The report of everything under run_root, for `paperzoo report` and DVC's report stage alike."""
    run_root, out_dir = Path(run_root), Path(out_dir)
    slugs = list(params.get("components") or REGISTRY)
    for slug in slugs:
        if slug not in REGISTRY:
            raise ConfigError(f"report: unknown component '{slug}'")
    pipeline = [load_result(slug, pipeline_run(run_root, slug)) for slug in slugs]
    one_off = [
        load_result(slug, run)
        for slug in dict.fromkeys([*slugs, *REGISTRY])
        if (run := latest_run(run_root, slug)) is not None
    ]
    sweeps = [
        (name, directory)
        for name in params.get("sweeps") or {}
        if (directory := latest_sweep(run_root / "sweeps", name)) is not None
    ]

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir / "plots") as plots:
        body: list[Block] = [
            Heading(2, "Pipeline", anchor="pipeline"),
            Para(
                [
                    "What ",
                    Code("dvc repro"),
                    " trained: ",
                    Code(f"{(run_root / 'dvc').as_posix()}/<component>"),
                    " for each component in params.yaml's ",
                    Code("components"),
                    ". Ours says its preset and dataset, each paper number its dataset and setting.",
                ],
                css="meta",
            ),
            results_table(pipeline, out_dir, PIPELINE),
        ]
        for result in pipeline:
            body += component_section(result, out_dir, plots, PIPELINE)
        if sweeps:
            body += [
                Heading(2, "Sweeps", anchor="sweeps"),
                Para(
                    [
                        "Each sweep's latest finished run under ",
                        Code(f"{(run_root / 'sweeps').as_posix()}/<sweep>/"),
                        " (",
                        Code("paperzoo sweep <sweep>"),
                        "); sweeps with no finished run are left out.",
                    ],
                    css="meta",
                ),
            ]
            for name, directory in sweeps:
                body += sweep_section(name, directory, out_dir, plots)
        if one_off:
            body += [
                Heading(2, "One-off runs", anchor="one-off-runs"),
                Para(
                    [
                        "The newest completed ",
                        Code("paperzoo run"),
                        " of each component, from ",
                        Code(f"{run_root.as_posix()}/<component>/"),
                        ": apart from the pipeline's runs and from sweep trials.",
                    ],
                    css="meta",
                ),
                results_table(one_off, out_dir, ONE_OFF),
            ]
            for result in one_off:
                body += component_section(result, out_dir, plots, ONE_OFF)

    intro: list[Inline] = [
        "Generated by ",
        Code("paperzoo report"),
        " (DVC's report stage runs the same command) from ",
        Code(run_root.as_posix()),
        f": {sum(r.run is not None for r in pipeline)} of {len(pipeline)} pipeline components trained, "
        f"{len(sweeps)} sweep{'' if len(sweeps) == 1 else 's'}, "
        f"{len(one_off)} component{'' if len(one_off) == 1 else 's'} with one-off runs.",
    ]
    blocks: list[Block] = [
        Para(intro, css="meta"),
        Heading(2, "Contents", anchor="contents"),
        contents(body),
        *body,
    ]

    atomic_write_text(out_dir / "index.md", render_markdown(blocks))
    atomic_write_text(out_dir / "index.html", render_html(blocks))
    atomic_write_json(
        out_dir / "metrics.json",
        {
            r.slug: {"run_dir": str(r.run), "preset": r.info.get("preset"), "dataset": r.dataset, "metrics": r.metrics}
            for r in pipeline
            if r.run is not None
        },
    )
    return out_dir / "index.html"
