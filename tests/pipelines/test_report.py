"""The report on synthetic run and sweep folders (no training): the components table beside the paper's
numbers, sweep tables and plots, escaping, byte-identical rebuilds, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from components.core.registry import REGISTRY
from pipelines import report
from pipelines.report import build_report
from pipelines.sweep import Trial, TrialResult, summarise, summary_columns, to_csv, to_markdown

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCHEDULE = {"name": "uba", "warmup": 0, "init_ratio": 0.0, "min_ratio": 0.0, "phi": 1.0}


def write_run(
    run_dir: Path, metrics: dict, *, seed: int = 0, wall: float = 12.5, steps: int = 40, config: dict | None = None
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
                "preset": "smoke",
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
    (directory / "trials.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "overrides": dict(r.trial.overrides),
                    "seed": r.trial.seed,
                    "status": r.status,
                    "metrics": r.metrics,
                    "run_dir": r.run_dir,
                    "error": r.error,
                }
            )
            + "\n"
            for r in results
        )
    )
    return directory


class Page(HTMLParser):
    """Tags and attributes seen, and the text of each <table id="components"> row, cell by cell."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self._in_components = self._in_body = self._in_cell = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._in_components = dict(attrs).get("id") == "components"
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_components and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_components and self._in_body:
            self.rows[-1].append("")
            self._in_cell = True
        elif tag == "br" and self._in_components and self._in_body and self.rows:
            self.rows[-1][-1] += "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_components = self._in_body = False
        self._in_cell = self._in_cell and tag != "td"

    def handle_data(self, data: str) -> None:
        if self._in_components and self._in_body and self._in_cell:
            self.rows[-1][-1] += data


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """tmp_path as a project: paper.yaml for uba (one number given, one null) and for a second component, toy."""
    papers = tmp_path / "components"
    monkeypatch.setattr(report, "COMPONENTS_DIR", papers)
    monkeypatch.setitem(REGISTRY, "toy", "tests.pipelines.test_report:unused")
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
        (papers / slug).mkdir(parents=True)
        (papers / slug / "paper.yaml").write_text(
            yaml.safe_dump({"paper": {"title": f"The {slug} paper"}, "results": results})
        )
    return tmp_path


def params(*sweeps: str) -> dict:
    return {"components": ["uba", "toy"], "sweeps": {name: {"component": "uba"} for name in sweeps}}


def test_one_row_per_component_beside_the_paper(project):
    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.9512, "val/loss": 0.0731})
    page_path = build_report(params(), project / "runs", project / "reports")
    assert page_path == project / "reports" / "index.html"
    page = Page(page_path.read_text())
    uba, toy = page.rows
    assert uba[0] == "uba" and uba[1] == "completed" and uba[2] == "smoke, seed 0"
    assert uba[3] == "test/acc 0.9512"  # the paper's metrics this run reports, not every metric
    assert uba[4] == "quad/worst_residual 3.85e-09"  # a number the paper gives; the null one is not shown
    assert uba[5] == "12.5 s"
    assert uba[6].endswith("dvc/uba")
    assert ("a", {"href": "../runs/dvc/uba/"}) in page.tags
    assert toy[:2] == ["toy", "no run yet"] and "paperzoo run toy" in toy[3] and toy[4] == "val/loss 0.25"
    assert ("img", {"src": "plots/uba-loss.png", "alt": "uba: train/loss over optimizer steps"}) in page.tags
    assert (project / "reports" / "plots" / "uba-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    markdown = (project / "reports" / "index.md").read_text()
    assert (
        "| `uba` | completed | smoke, seed 0 | `test/acc` 0.9512 | `quad/worst_residual` 3.85e-09 | 12.5 s |"
        in markdown
    )
    assert (
        "| `toy` | no run yet |" in markdown
        and "![uba: train/loss over optimizer steps](<plots/uba-loss.png>)" in markdown
    )
    assert "| `test/acc` | 0.9512 | — | CIFAR-10 | ResNet | abstract |" in markdown
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"uba"} and metrics["uba"]["metrics"]["val/loss"] == 0.0731


def test_latest_plain_run_unless_dvc_only(project):
    for stamp, acc in (("20260101-000000-aaaa-s0", 0.5), ("20260102-000000-bbbb-s0", 0.75)):
        write_run(project / "runs" / "uba" / stamp, {"test/acc": acc})
    rows = Page(build_report(params(), project / "runs", project / "reports").read_text()).rows
    assert rows[0][3] == "test/acc 0.75" and rows[0][6].endswith("20260102-000000-bbbb-s0")
    rows = Page(build_report(params(), project / "runs", project / "reports", dvc_only=True).read_text()).rows
    assert [row[1] for row in rows] == ["no run yet", "no run yet"]
    assert json.loads((project / "reports" / "metrics.json").read_text()) == {}


def test_sweep_table_and_plots(project):
    write_sweep(project / "runs", "phi")
    page = build_report(params("phi", "never_ran"), project / "runs", project / "reports").read_text()
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
    assert "8 trials (1 failed)" in page and "No finished run yet" in page and "paperzoo sweep never_ran" in page
    plots = project / "reports" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["sweep-phi-schedules.png", "sweep-phi-val_loss.png"]
    assert 'src="plots/sweep-phi-val_loss.png"' in page and 'src="plots/sweep-phi-schedules.png"' in page

    build_report(params("phi"), project / "runs", project / "reports", dvc_only=True)
    assert "Sweeps" not in (project / "reports" / "index.html").read_text()
    assert not any(plots.iterdir())  # the folder is rebuilt, so no stale plot outlives its source


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
    write_run(project / "runs" / "dvc" / "uba", {HOSTILE: 0.5, "val/loss": 0.1})
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
    assert page.rows[1][0] == HOSTILE and page.rows[1][1] == "no run yet"
    outside_code = re.sub(r"`[^`]*`", "", (project / "reports" / "index.md").read_text())
    assert HOSTILE not in outside_code and not re.search(r"(?<!\\)<(script|img)", outside_code)


def test_rebuild_is_byte_identical(project):
    write_run(project / "runs" / "dvc" / "uba", {"test/acc": 0.9512, "val/loss": 0.0731})
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
        rows = driver.find_elements(By.CSS_SELECTOR, "table#components tbody tr")
        cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        assert [(c[0], c[1]) for c in cells] == [("uba", "completed"), ("toy", "no run yet")]
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
