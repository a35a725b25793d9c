"""Preparing time series: statsmodels' co2, an ETT-style CSV, the two-sine generator; manifests, borders,
byte-identical output, verify, and one-line errors for bad CSVs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from components.core.errors import ConfigError, DataError
from components.core.series import SeriesTable
from pipelines.datasets import prepare, verify


def write_csv(path: Path, rows: int, columns=("HUFL", "OT"), start="2016-07-01T00:00:00", step_hours=1) -> Path:
    dates = np.datetime64(start) + np.arange(rows) * np.timedelta64(step_hours, "h")
    t = np.arange(rows)
    lines = ["date," + ",".join(columns)]
    for i in range(rows):
        values = ",".join(f"{np.sin(t[i] / (5 + j)) + j:.4f}" for j in range(len(columns)))
        lines.append(f"{str(dates[i]).replace('T', ' ')},{values}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_co2_manifest_borders_and_filled_weeks(tmp_path):
    manifest = prepare("series/co2", {"source": "statsmodels-co2"}, tmp_path)
    manifest = SeriesTable(tmp_path, "series/co2").manifest
    assert manifest["rows"] == 2284 and manifest["filled_missing"] == 59 and manifest["columns"] == ["co2"]
    assert manifest["first_date"] == "1958-03-29T00:00:00"
    table = SeriesTable(tmp_path, "series/co2")
    assert table.borders == {"train": (0, 1598), "val": (1598, 1828), "test": (1828, 2284)}
    assert not np.isnan(table.values).any()
    # the spec's window counts at L = 96, P = 48: val/test inputs look back into the previous split
    assert len(table.windows(table.values, "train", 96, 48)[0]) == 1455
    assert len(table.windows(table.values, "test", 96, 48)[0]) == 409
    x, y = table.windows(table.values, "test", 96, 48)
    np.testing.assert_array_equal(y[0, 0], table.values[1828])  # the first test label is the first test row
    np.testing.assert_array_equal(x[0, -1], table.values[1827])


def test_preparing_twice_is_byte_identical_and_verify_catches_corruption(tmp_path):
    prepare("series/co2", {"source": "statsmodels-co2"}, tmp_path / "a")
    prepare("series/co2", {"source": "statsmodels-co2"}, tmp_path / "b")
    for name in ("series.parquet", "manifest.json"):
        assert (tmp_path / "a/series/co2" / name).read_bytes() == (tmp_path / "b/series/co2" / name).read_bytes()
    assert verify(tmp_path / "a") == ["series/co2"]
    table = tmp_path / "a/series/co2/series.parquet"
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    with pytest.raises(DataError, match="series.parquet does not match its sha256"):
        verify(tmp_path / "a")


def test_ett_csv_month_borders_and_ratio_split(tmp_path):
    csv = write_csv(tmp_path / "ETTh1.csv", 20 * 30 * 24 + 50)
    prepare("series/etth1", {"source": "csv", "path": str(csv), "split": "ett"}, tmp_path / "data")
    table = SeriesTable(tmp_path / "data", "series/etth1")
    assert table.columns == ["HUFL", "OT"]
    assert table.borders == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
    prepare("series/etth1", {"source": "csv", "path": str(csv), "split": "ratio"}, tmp_path / "ratio")
    rows = 14450
    table = SeriesTable(tmp_path / "ratio", "series/etth1")
    assert table.borders == {
        "train": (0, int(rows * 0.7)),
        "val": (int(rows * 0.7), rows - int(rows * 0.2)),
        "test": (rows - int(rows * 0.2), rows),
    }
    np.testing.assert_allclose(table.values[3], [np.sin(3 / 5), np.sin(3 / 6) + 1], atol=1e-4)


def test_ett_borders_need_twenty_months(tmp_path):
    csv = write_csv(tmp_path / "short.csv", 24 * 30)
    with pytest.raises(DataError, match="ETT borders need 14400 rows .20 months of 24 rows a day.; the table has 720"):
        prepare("series/short", {"source": "csv", "path": str(csv), "split": "ett"}, tmp_path / "data")
    assert not (tmp_path / "data" / "series" / "short").exists()


@pytest.mark.parametrize(
    "line,bad,message",
    [
        (5, "2016-07-01 0x:00:00,1.0,2.0", r"bad.csv, line 5: '2016-07-01 0x:00:00' in column 'date' is not a date"),
        (7, "2016-07-01 05:00:00,1.0,abc", r"bad.csv, line 7: 'abc' in column 'OT' is not a number"),
        (4, "2016-07-01 00:00:00,1.0,2.0", r"bad.csv, line 4: dates must increase"),
    ],
)
def test_a_bad_csv_row_is_named(tmp_path, line, bad, message):
    csv = write_csv(tmp_path / "bad.csv", 200)
    lines = csv.read_text().splitlines()
    lines[line - 1] = bad
    csv.write_text("\n".join(lines) + "\n")
    prepare("series/ok", {"source": "statsmodels-co2"}, tmp_path / "data")  # something already prepared ...
    with pytest.raises(DataError, match=message):
        prepare("series/bad", {"source": "csv", "path": str(csv)}, tmp_path / "data")
    assert verify(tmp_path / "data") == ["series/ok"]  # ... is untouched, and nothing half-written appeared


def test_too_few_rows_for_the_window_is_named(tmp_path):
    csv = write_csv(tmp_path / "small.csv", 300)
    prepare("series/small", {"source": "csv", "path": str(csv)}, tmp_path)
    table = SeriesTable(tmp_path, "series/small")
    with pytest.raises(DataError, match="the val split has 30 rows, too few for seq_len 96 \\+ pred_len 48"):
        table.windows(table.values, "val", 96, 48)  # val inputs look back 96 rows: 126 rows < 144 needed


def test_two_sine_generator(tmp_path):
    prepare("series/two_sine", {"source": "two-sine"}, tmp_path)
    table = SeriesTable(tmp_path, "series/two_sine")
    t = np.arange(6000)
    clean = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 7 + 1)
    residual = table.values[:, 0] - clean
    assert abs(residual.std() - 0.05) < 0.005 and table.borders["train"] == (0, 4200)
    with pytest.raises(
        ConfigError, match="option split of source two-sine must be one of 'ratio', 'ett', got 'months'"
    ):
        prepare("series/x", {"source": "two-sine", "split": "months"}, tmp_path)


@pytest.mark.parametrize(
    "header, message",
    [
        ("date,OT,OT", r"hdr.csv, line 1: column name 'OT' appears twice in the header \(columns 2 and 3\)"),
        ("date,date,OT", r"hdr.csv, line 1: column name 'date' appears twice in the header \(columns 1 and 2\)"),
        ("date,,OT", r"hdr.csv, line 1: column 2 of the header has no name"),
        ("date,HUFL, ", r"hdr.csv, line 1: column 3 of the header has no name"),
    ],
)
def test_a_duplicate_or_empty_column_name_is_named(tmp_path, header, message):
    csv = write_csv(tmp_path / "hdr.csv", 50, columns=("HUFL", "OT"))
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([header] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=message):
        prepare("series/hdr", {"source": "csv", "path": str(csv)}, tmp_path / "data")
    assert not (tmp_path / "data" / "series").exists() or not any((tmp_path / "data" / "series").iterdir())


def test_a_value_column_named_date_is_named(tmp_path):
    csv = write_csv(tmp_path / "time.csv", 50, columns=("date", "OT"))
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(["time,date,OT"] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"time.csv: a value column is named 'date'"):
        prepare("series/t", {"source": "csv", "path": str(csv), "date_column": "time"}, tmp_path / "data")


def test_a_byte_order_mark_is_read_as_such(tmp_path):
    csv = write_csv(tmp_path / "bom.csv", 50)
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    prepare("series/bom", {"source": "csv", "path": str(csv)}, tmp_path / "data")
    table = SeriesTable(tmp_path / "data", "series/bom")
    assert table.columns == ["HUFL", "OT"] and len(table.values) == 50
    csv.write_bytes(b"date,OT\n2016-07-01 00:00:00,\xff\n")
    with pytest.raises(DataError, match=r"bom.csv: not UTF-8 text"):
        prepare("series/bom", {"source": "csv", "path": str(csv)}, tmp_path / "data")


def rewrite_table(dataset: Path, table) -> None:
    """Replace the Parquet table and make the manifest vouch for its bytes, so only the column checks can tell."""
    import json

    import pyarrow.parquet as pq

    from components.core.shards import sha256_file

    pq.write_table(table, dataset / "series.parquet")
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["files"][0].update(
        bytes=(dataset / "series.parquet").stat().st_size, sha256=sha256_file(dataset / "series.parquet")
    )
    (dataset / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.rename_columns(["date", "ppm"]), r"has column\(s\) 'ppm' that the manifest does not list"),
        (lambda t: t.append_column("x", t.column("co2")), r"has column\(s\) 'x' that the manifest does not list"),
        (lambda t: t.drop_columns(["date"]), r"has no 'date' column"),
        (lambda t: t.set_column(1, "co2", t.column("co2").cast("string")), r"column 'co2' holds string values"),
        (lambda t: t.set_column(0, "date", t.column("date").cast("int64")), r"column 'date' is int64, not a timestamp"),
        (lambda t: t.slice(0, 100), r"has 100 rows, its manifest says 2284"),
    ],
    ids=["renamed", "extra", "no-date", "string", "int-date", "rows"],
)
def test_the_reader_checks_the_table_against_its_manifest(tmp_path, change, message):
    import pyarrow.parquet as pq

    prepare("series/co2", {"source": "statsmodels-co2"}, tmp_path)
    dataset = tmp_path / "series/co2"
    rewrite_table(dataset, change(pq.read_table(dataset / "series.parquet")))
    with pytest.raises(DataError, match=r"series\.parquet.*" + message + r".*paperzoo prepare series co2"):
        SeriesTable(tmp_path, "series/co2")


def test_the_reader_checks_the_sha256_once_per_file_version(tmp_path, monkeypatch):
    import components.core.shards as shards

    prepare("series/co2", {"source": "statsmodels-co2"}, tmp_path)
    hashed = []
    original = shards.sha256_file
    monkeypatch.setattr(shards, "sha256_file", lambda path: hashed.append(path) or original(path))
    SeriesTable(tmp_path, "series/co2")
    SeriesTable(tmp_path, "series/co2")
    assert len(hashed) == 1  # the second reader trusts the version the first one checked
    table = tmp_path / "series/co2/series.parquet"
    data = bytearray(table.read_bytes())
    data[len(data) // 3] ^= 0xFF
    table.write_bytes(bytes(data))
    stat = table.stat()  # file times tick in milliseconds: move it on as a moment later would
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"series\.parquet does not match its sha256.*paperzoo verify series/co2"):
        SeriesTable(tmp_path, "series/co2")
    SeriesTable(tmp_path, "series/co2", verify=False)  # the caller's choice: the structure is still intact
