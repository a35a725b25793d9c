"""The report on synthetic run and sweep folders (no training): the pipeline table beside the paper's numbers
(each side saying its dataset), sweep tables and plots, one-off runs apart, the contents, escaping,
byte-identical rebuilds through the CLI as DVC runs it, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from components.registry import REGISTRY
from pipelines import report
from pipelines.cli import main
from pipelines.report import build_report
from pipelines.sweep import Trial, TrialResult, summarise, summary_columns, to_csv, to_markdown, trials_jsonl

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCHEDULE = {"name": "uba", "warmup": 0, "init_ratio": 0.0, "min_ratio": 0.0, "phi": 1.0}


def write_run(
    run_dir: Path,
    metrics: dict,
    *,
    seed: int = 0,
    wall: float = 12.5,
    steps: int = 40,
    config: dict | None = None,
    preset: str = "smoke",
) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "train/loss": 2.3 * 0.98**s + 0.05 + 0.02 * (s % 3), "lr": 0.1}) + "\n"
            for s in range(steps)
        )
        + json.dumps({"step": steps, **metrics})
        + "\n"
    )
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "seed": seed,
                "preset": preset,
                "wall_seconds": wall,
                "started": "2026-01-02T03:04:05+0000",
                "code": {"git_sha": "0123456789abcdef", "dirty": False},
            }
        )
    )
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config or {"budget": steps, "schedule": SCHEDULE}))
    return run_dir


def write_sweep(run_root: Path, name: str = "phi", stamp: str = "20260102-030405") -> Path:
    """A finished 2 x 2 grid over two seeds, one trial failed, summarised by the sweep module's own code."""
    directory = run_root / "sweeps" / name / stamp
    grid = {"schedule.phi": [0.5, 2], "optimizer": ["sgd", "lion"]}
    results = []
    for index, (phi, optimizer, seed) in enumerate(
        (p, o, s) for p in grid["schedule.phi"] for o in grid["optimizer"] for s in (0, 1)
    ):
        trial = Trial({"schedule.phi": phi, "optimizer": optimizer}, seed)
        run_dir = directory / "trials" / f"{index:03d}-{trial.name}"
        loss = (0.1 if optimizer == "sgd" else 0.6) * (1 + phi / 10) + 0.01 * seed
        metrics = {"val/loss": loss, "val/acc": 1 - loss / 2}
        failed = (phi, optimizer, seed) == (2, "lion", 1)
        write_run(
            run_dir,
            {} if failed else metrics,
            seed=seed,
            wall=2.0,
            config={"budget": 50, "schedule": {**SCHEDULE, "phi": phi}, "optimizer": optimizer},
        )
        results.append(
            TrialResult(
                trial,
                "failed" if failed else "completed",
                {} if failed else metrics,
                str(run_dir),
                "diverged at step 3" if failed else "",
            )
        )
    sweep = {"component": "uba", "grid": grid}
    rows = summarise(results, "val/loss", "min")
    columns = summary_columns(sweep, rows, "val/loss")
    (directory / "summary.md").write_text(to_markdown(rows, columns))
    (directory / "summary.csv").write_text(to_csv(rows, columns))
    (directory / "sweep.json").write_text(
        json.dumps({"name": name, "backend": "local", "metric": "val/loss", "mode": "min", "component": "uba"})
    )
    (directory / "trials.jsonl").write_text(trials_jsonl(results))
    return directory


class Page(HTMLParser):
    """Tags and attributes seen; the rows of every table with an id, cell by cell (a <br> as a newline);
    the h2/h3 headings as (tag, id, text); and the text of each line of the contents."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.headings: list[tuple[str, str, str]] = []
        self.toc: list[str] = []
        self._table: str | None = None
        self._heading: list[str] | None = None
        self._in_body = self._in_cell = self._in_toc = self._in_li = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id")
            if self._table:
                self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self.tables[self._table].append([])
        elif tag == "td" and self._table and self._in_body:
            self.tables[self._table][-1].append("")
            self._in_cell = True
        elif tag == "br" and self._in_cell:
            self.tables[self._table][-1][-1] += "\n"
        elif tag in ("h2", "h3"):
            self._heading = [tag, attrs.get("id", ""), ""]
        elif tag == "ul" and attrs.get("class") == "toc":
            self._in_toc = True
        elif tag == "li" and self._in_toc:
            self.toc.append("")
            self._in_li = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table, self._in_body = None, False
        elif tag == "td":
            self._in_cell = False
        elif tag in ("h2", "h3") and self._heading:
            self.headings.append(tuple(self._heading))
            self._heading = None
        elif tag == "ul":
            self._in_toc = False
        elif tag == "li":
            self._in_li = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.tables[self._table][-1][-1] += data
        if self._heading:
            self._heading[2] += data
        if self._in_li:
            self.toc[-1] += data

    def sections(self) -> list[str]:
        return [text for tag, _, text in self.headings if tag == "h2"]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """tmp_path as a project: paper.yaml for uba (one number given, one null) and for a second component, toy
    (registered, but nothing to import: the report falls back to what a toy run's config.yaml says)."""
    papers = tmp_path / "components"
    monkeypatch.setattr(report, "COMPONENTS_DIR", papers)
    monkeypatch.setitem(REGISTRY, "toy", "tests.pipelines.no_such_module:component")
    for slug, results in {
        "uba": [
            {"metric": "test/acc", "value": None, "dataset": "CIFAR-10", "setting": "ResNet", "source": "abstract"},
            {
                "metric": "quad/worst_residual",
                "value": 3.85e-9,
                "dataset": "quadratic",
                "setting": "GD",
                "source": "derived",
            },
        ],
        "toy": [{"metric": "val/loss", "value": 0.25, "dataset": "digits", "setting": "MLP", "source": "Table 2"}],
    }.items():
        write_paper(tmp_path, slug, results)
    return tmp_path


def write_paper(project: Path, slug: str, results: list[dict]) -> None:
    (project / "components" / slug).mkdir(parents=True, exist_ok=True)
    (project / "components" / slug / "paper.yaml").write_text(
        yaml.safe_dump({"paper": {"title": f"The {slug} paper"}, "results": results})
    )


def params(*sweeps: str) -> dict:
    return {"components": ["uba", "toy"], "sweeps": {name: {"component": "uba"} for name in sweeps}}


def test_one_row_per_pipeline_component_beside_the_paper(project):
    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.9512, "val/loss": 0.0731})
    page_path = build_report(params(), project / "runs", project / "reports")
    assert page_path == project / "reports" / "index.html"
    page = Page(page_path.read_text())
    uba, toy = page.tables["pipeline-table"]
    assert uba[:2] == ["uba", "completed"]
    # the paper's metrics this run reports, not every metric; said with the preset and the dataset it ran on
    assert uba[2] == "smoke preset · images/cifar10 · seed 0\ntest/acc 0.9512"
    assert uba[3] == "quad/worst_residual 3.85e-09 (quadratic; GD)"  # the null number is not shown
    assert uba[4] == "12.5 s"
    assert uba[5].endswith("dvc/uba")
    assert ("a", {"href": "../runs/dvc/uba/"}) in page.tags
    assert toy == ["toy", "no run yet", "run dvc repro", "val/loss 0.25 (digits; MLP)", "—", "—"]
    assert ("img", {"src": "plots/uba-loss.png", "alt": "uba: train/loss over optimizer steps"}) in page.tags
    assert (project / "reports" / "plots" / "uba-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.sections() == ["Contents", "Pipeline"]  # no sweep and no one-off run: those sections are left out

    markdown = (project / "reports" / "index.md").read_text()
    assert (
        "| `uba` | completed | smoke preset · images/cifar10 · seed 0<br>`test/acc` 0.9512 | "
        "`quad/worst_residual` 3.85e-09 (quadratic; GD) | 12.5 s |" in markdown
    )
    assert "| `toy` | no run yet |" in markdown and "### uba" in markdown
    assert "![uba: train/loss over optimizer steps](<plots/uba-loss.png>)" in markdown
    assert "| metric | ours: smoke preset, images/cifar10 | paper | paper's dataset | paper's setting | source |" in (
        markdown
    )
    assert "| `test/acc` | 0.9512 | — | CIFAR-10 | ResNet | abstract |" in markdown
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"uba"} and metrics["uba"]["metrics"]["val/loss"] == 0.0731
    assert metrics["uba"]["preset"] == "smoke" and metrics["uba"]["dataset"] == "images/cifar10"


def test_one_off_runs_have_their_own_section(project):
    runs = project / "runs"
    write_run(runs / "dvc" / "uba", {"test/acc": 0.9})
    for stamp, acc in (("20260101-000000-aaaa-s0", 0.5), ("20260102-000000-bbbb-s0", 0.75)):
        write_run(runs / "uba" / stamp, {"test/acc": acc}, preset="test")
    running = runs / "uba" / "20260103-000000-cccc-s0"  # newest, but not finished: no metrics.json yet
    running.mkdir()
    (running / "run.json").write_text(json.dumps({"status": "running", "preset": "smoke"}))
    write_run(runs / "toy" / "20260101-000000-dddd-s1", {"val/loss": 0.3}, seed=1, config={"dataset": "images/digits"})
    write_sweep(runs, "phi")  # its trials are neither the pipeline's runs nor one-off runs

    page = Page(build_report(params("phi"), runs, project / "reports").read_text())
    assert page.sections() == ["Contents", "Pipeline", "Sweeps", "One-off runs"]
    pipeline = page.tables["pipeline-table"]
    assert [row[:2] for row in pipeline] == [["uba", "completed"], ["toy", "no run yet"]]
    assert pipeline[0][2] == "smoke preset · images/cifar10 · seed 0\ntest/acc 0.9" and pipeline[0][5].endswith(
        "dvc/uba"
    )
    one_off = page.tables["one-off-table"]
    assert [row[0] for row in one_off] == ["uba", "toy"]
    assert one_off[0][2] == "test preset · images/cifar10 · seed 0\ntest/acc 0.75"
    assert one_off[0][5].endswith("uba/20260102-000000-bbbb-s0")
    assert one_off[1][2] == "smoke preset · images/digits · seed 1\nval/loss 0.3"  # toy: config.yaml's dataset
    assert not any("trials" in cell for row in pipeline + one_off for cell in row)
    assert [h[1] for h in page.headings if h[2] == "uba"] == ["pipeline-uba", "run-uba"]
    plots = sorted(p.name for p in (project / "reports" / "plots").iterdir())
    assert plots == [
        "run-toy-loss.png",
        "run-uba-loss.png",
        "sweep-phi-schedules.png",
        "sweep-phi-val_loss.png",
        "uba-loss.png",
    ]
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics == {
        "uba": {
            "run_dir": str(runs / "dvc" / "uba"),
            "preset": "smoke",
            "dataset": "images/cifar10",
            "metrics": {"test/acc": 0.9},
        }
    }  # `dvc metrics` sees what `dvc repro` trained, not one-off runs


def test_sweep_table_and_plots(project):
    write_sweep(project / "runs", "phi")
    page = build_report(params("phi"), project / "runs", project / "reports").read_text()
    markdown = (project / "reports" / "index.md").read_text()
    table = (
        markdown[markdown.index("| schedule.phi | optimizer | val/loss | val/acc | seeds | failed |") :]
        .split("\n\n")[0]
        .splitlines()
    )
    assert len(table) == 2 + 4
    assert table[2] == "| 0.5 | sgd | 0.11 ± 0.0071 | 0.945 ± 0.0035 | 2 | 0 |"  # best first
    assert table[-1] == "| 2 | lion | 0.72 | 0.64 | 2 | 1 |"  # one seed left: no spread to show
    assert '<tr class="best"><td>0.5</td><td>sgd</td>' in page
    assert "Component uba · preset smoke · dataset images/cifar10 · 8 trials (1 failed) on local" in page
    plots = project / "reports" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["sweep-phi-schedules.png", "sweep-phi-val_loss.png"]
    assert 'src="plots/sweep-phi-val_loss.png"' in page and 'src="plots/sweep-phi-schedules.png"' in page

    shutil.rmtree(project / "runs" / "sweeps")
    assert "Sweeps" not in build_report(params("phi"), project / "runs", project / "reports").read_text()
    assert not any(plots.iterdir())  # the folder is rebuilt, so no stale plot outlives its source


def test_a_sweep_with_no_runs_is_left_out(project):
    write_sweep(project / "runs", "phi")
    started = project / "runs" / "sweeps" / "started" / "20260105-000000"  # a driver that died: no summary
    started.mkdir(parents=True)
    (started / "sweep.json").write_text(json.dumps({"name": "started", "component": "uba"}))
    page_text = build_report(params("phi", "never_ran", "started"), project / "runs", project / "reports").read_text()
    page = Page(page_text)
    assert [h[2] for h in page.headings if h[1].startswith("sweep-")] == ["phi"]
    assert page.toc[1] == "Sweeps: phi"
    markdown = (project / "reports" / "index.md").read_text()
    for text in (page_text, markdown):
        assert "never_ran" not in text and "started" not in text and "No finished run" not in text

    page = Page(build_report(params("never_ran"), project / "runs", project / "reports").read_text())
    assert page.sections() == ["Contents", "Pipeline"] and page.toc == ["Pipeline: uba · toy"]


def test_contents_lists_the_sections_present(project):
    runs = project / "runs"
    page = Page(build_report(params("phi"), runs, project / "reports").read_text())
    assert page.toc == ["Pipeline: uba · toy"]

    write_run(runs / "dvc" / "uba", {"test/acc": 0.9})
    write_sweep(runs, "phi")
    write_run(runs / "toy" / "20260101-000000-dddd-s0", {"val/loss": 0.3})
    page = Page(build_report(params("phi"), runs, project / "reports").read_text())
    assert page.toc == ["Pipeline: uba · toy", "Sweeps: phi", "One-off runs: toy"]
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a" and attrs.get("href", "").startswith("#")]
    ids = {attrs["id"] for _, attrs in page.tags if "id" in attrs}
    assert links == [
        "#pipeline",
        "#pipeline-uba",
        "#pipeline-toy",
        "#sweeps",
        "#sweep-phi",
        "#one-off-runs",
        "#run-toy",
    ]
    assert set(link[1:] for link in links) <= ids  # every entry leads somewhere

    markdown = (project / "reports" / "index.md").read_text()
    assert "- [Pipeline](<#pipeline>): [uba](<#pipeline-uba>) · [toy](<#pipeline-toy>)" in markdown
    assert "- [One-off runs](<#one-off-runs>): [toy](<#run-toy>)" in markdown
    assert '<a id="run-toy"></a>\n### toy' in markdown  # the anchor the link needs, in Markdown too


def test_numbers_say_their_dataset_and_setting(project):
    """A smoke number on digits never sits beside an ImageNet number without both saying so."""
    write_paper(
        project,
        "uba",
        [
            {"metric": "test/acc", "value": 0.78, "dataset": "ImageNet-1k", "setting": "ResNet-50, 90 epochs"},
            {"metric": "quad/worst_residual", "value": 3.85e-9},
        ],
    )
    digits = {"task": "digits_mlp", "dataset": "images/digits", "budget": 40, "schedule": SCHEDULE}
    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.97}, config=digits)
    write_run(
        project / "runs" / "uba" / "20260101-000000-aaaa-s0",
        {"quad/worst_residual": 4e-9},
        preset="test",
        config={"task": "quadratic", "budget": 40, "schedule": SCHEDULE},  # `dataset` keeps its unused default
    )
    page = Page(build_report(params(), project / "runs", project / "reports").read_text())
    (uba, _), (one_off,) = page.tables["pipeline-table"], page.tables["one-off-table"]
    assert uba[2] == "smoke preset · images/digits · seed 0\ntest/acc 0.97"
    assert uba[3] == (
        "test/acc 0.78 (ImageNet-1k; ResNet-50, 90 epochs)\nquad/worst_residual 3.85e-09 (dataset and setting not given)"
    )
    assert one_off[2] == "test preset · generated (quadratic task) · seed 0\nquad/worst_residual 4e-09"

    markdown = (project / "reports" / "index.md").read_text()
    assert "| component | status | ours (preset, dataset) | paper (dataset, setting) | run time | run |" in markdown
    assert "| metric | ours: smoke preset, images/digits | paper | paper's dataset | paper's setting | source |" in (
        markdown
    )
    assert "| `test/acc` | 0.97 | 0.78 | ImageNet-1k | ResNet-50, 90 epochs | — |" in markdown
    assert "| metric | ours: test preset, generated (quadratic task) | paper |" in markdown


def test_dvc_stage_rebuild_keeps_the_sweep(project, monkeypatch, capsys):
    """`paperzoo report` after a sweep, then DVC's report stage (the same command, from the project root):
    the second build is byte for byte the first, sweep table included."""
    (project / "params.yaml").write_text(yaml.safe_dump({"preset": "smoke", **params("phi")}))
    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.9512, "val/loss": 0.0731})
    write_run(project / "runs" / "uba" / "20260101-000000-aaaa-s0", {"test/acc": 0.5})
    write_sweep(project / "runs", "phi")
    monkeypatch.chdir(project)
    out = project / "reports"

    def snapshot() -> dict[str, bytes]:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert main(["report"]) == 0  # by hand
    assert "report: reports/index.html" in capsys.readouterr().out
    first = snapshot()
    assert "| 0.5 | sgd | 0.11 ± 0.0071 | 0.945 ± 0.0035 | 2 | 0 |" in first["index.md"].decode()
    assert main(["report"]) == 0  # dvc.yaml's report stage: cmd `paperzoo report`
    assert snapshot() == first
    assert build_report(params("phi"), Path("runs"), Path("reports")) == Path("reports/index.html")
    assert snapshot() == first  # the function both call, with the same inputs
    with pytest.raises(SystemExit):
        main(["report", "--dvc-only"])  # no second kind of report any more


def test_hostile_text_is_escaped(project, monkeypatch):
    monkeypatch.setitem(REGISTRY, HOSTILE, "nowhere:nothing")
    monkeypatch.setattr(
        report,
        "paper_yaml",
        lambda slug: {
            "paper": {"title": HOSTILE},
            "results": [{"metric": HOSTILE, "value": 1.0, "dataset": HOSTILE, "setting": HOSTILE, "source": HOSTILE}],
        },
    )
    write_run(project / "runs" / "dvc" / "uba", {HOSTILE: 0.5, "val/loss": 0.1}, config={"dataset": HOSTILE})
    write_sweep(project / "runs", HOSTILE.replace("/", "_"))
    page_text = build_report(
        {"components": ["uba", HOSTILE], "sweeps": {HOSTILE.replace("/", "_"): {}}},
        project / "runs",
        project / "reports",
    ).read_text()
    page = Page(page_text)
    allowed = {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "main",
        "h1",
        "h2",
        "h3",
        "p",
        "a",
        "code",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "span",
        "br",
        "ul",
        "li",
        "figure",
        "img",
        "figcaption",
    }
    assert {tag for tag, _ in page.tags} <= allowed
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    assert [src for tag, attrs in page.tags if tag == "img" for src in [attrs["src"]]] == [
        "plots/uba-loss.png",
        "plots/sweep-script_alert_x__script_img_src_x_onerror_alert_1-val_loss.png",
        "plots/sweep-script_alert_x__script_img_src_x_onerror_alert_1-schedules.png",
    ]
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in page_text
    assert page.tables["pipeline-table"][1][0] == HOSTILE and page.tables["pipeline-table"][1][1] == "no run yet"
    outside_code = re.sub(r"`[^`]*`", "", (project / "reports" / "index.md").read_text())
    assert HOSTILE not in outside_code and not re.search(r"(?<!\\)<(script|img)", outside_code)


def test_rebuild_is_byte_identical(project):
    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.9512, "val/loss": 0.0731})
    write_run(project / "runs" / "uba" / "20260101-000000-aaaa-s0", {"test/acc": 0.5})
    write_sweep(project / "runs", "phi")
    out = project / "reports"

    def snapshot() -> dict[str, bytes]:
        build_report(params("phi"), project / "runs", out)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    first = snapshot()
    (out / "plots" / "stale.png").write_bytes(b"old")
    assert snapshot() == first
    assert sorted(first) == [
        "index.html",
        "index.md",
        "metrics.json",
        "plots/run-uba-loss.png",
        "plots/sweep-phi-schedules.png",
        "plots/sweep-phi-val_loss.png",
        "plots/uba-loss.png",
    ]
    assert b"tEXt" not in first["plots/uba-loss.png"]  # no Software/date chunk to differ between versions


@pytest.fixture(scope="session")
def chromium() -> None:
    """Debian's chromium and its matching chromedriver; a browser a tool downloads itself cannot be fetched here."""
    if CHROMIUM.is_file() and CHROMEDRIVER.is_file():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file()


@pytest.mark.integration
def test_report_renders_in_headless_chromium(chromium, project):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.9512, "val/loss": 0.0731}, steps=300)
    write_sweep(project / "runs", "phi")
    page = build_report(params("phi"), project / "runs", project / "reports")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={project / 'chromium-profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(project / "chromedriver.log"))
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.get(page.as_uri())
        assert driver.title == "paperzoo results"
        rows = driver.find_elements(By.CSS_SELECTOR, "table#pipeline-table tbody tr")
        cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        assert [(c[0], c[1]) for c in cells] == [("uba", "completed"), ("toy", "no run yet")]
        toc = driver.find_elements(By.CSS_SELECTOR, "ul.toc li")
        assert [li.text for li in toc] == ["Pipeline: uba · toy", "Sweeps: phi"]
        images = driver.execute_script(
            "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
        )
        assert [src for src, _, _ in images] == [
            "plots/uba-loss.png",
            "plots/sweep-phi-val_loss.png",
            "plots/sweep-phi-schedules.png",
        ]
        assert all(complete and width > 0 for _, complete, width in images), images
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(1280, height + 120)  # the window's frame; the screenshot is the whole page
        driver.save_screenshot(str(project / "report.png"))
        assert (project / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if driver is not None:
            driver.quit()
        service.stop()
