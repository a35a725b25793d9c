"""Preparing time series: statsmodels' co2, an ETT-style CSV, the two-sine generator; manifests, borders,
byte-identical output, verify, and one-line errors for bad CSVs."""

from __future__ import annotations

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
    with pytest.raises(ConfigError, match="option split must be 'ratio' or 'ett'"):
        prepare("series/x", {"source": "two-sine", "split": "months"}, tmp_path)
