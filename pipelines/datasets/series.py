"""Time-series sources: statsmodels' weekly Mauna Loa CO2 (embedded), an ETT-style CSV, and a procedural
two-sine series. Each writes `series.parquet` + `manifest.json` through
`components.core.series.write_series_dataset`, atomically and byte-for-byte reproducibly."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np

from components.core.errors import ConfigError, DataError
from components.core.series import write_series_dataset

GENERATOR_VERSION = 1  # bump when a source's output bytes change for the same options
ETT_MONTHS = (12, 4, 4)  # ETT's train/val/test borders in 30-day months (Informer / Time-Series-Library)
Split = Literal["ratio", "ett"]


def split_borders(
    dates: np.ndarray, split: str, train_fraction: float, test_fraction: float, where: str
) -> dict[str, tuple[int, int]]:
    """Chronological [start, end) rows per split: ETT month borders, or Time-Series-Library's ratio rule
    (train = int(n * 0.7), test = int(n * 0.2), val = the rest)."""
    rows = len(dates)
    if split == "ratio":
        if not (0 < train_fraction < 1 and 0 < test_fraction < 1 and train_fraction + test_fraction < 1):
            raise ConfigError(f"{where}: train_fraction + test_fraction must be < 1, each in (0, 1)")
        train, test = int(rows * train_fraction), int(rows * test_fraction)
        return {"train": (0, train), "val": (train, rows - test), "test": (rows - test, rows)}
    if split == "ett":
        step_seconds = float(np.median(np.diff(dates).astype("timedelta64[s]").astype(np.int64)))
        rows_per_day = round(86400 / step_seconds)
        month = 30 * rows_per_day
        ends = np.cumsum(ETT_MONTHS) * month
        if rows < ends[-1]:
            raise DataError(
                f"{where}: ETT borders need {ends[-1]} rows ({sum(ETT_MONTHS)} months of "
                f"{rows_per_day} rows a day); the table has {rows}: use split=ratio"
            )
        return {"train": (0, int(ends[0])), "val": (int(ends[0]), int(ends[1])), "test": (int(ends[1]), int(ends[2]))}
    raise ConfigError(f"{where}: option split must be 'ratio' or 'ett', got '{split}'")


def fill_linear(values: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """Linearly interpolate missing values (NaN) per column, between the nearest observed rows."""
    filled = values.copy()
    missing = 0
    for column in range(values.shape[1]):
        gaps = np.isnan(values[:, column])
        if gaps.all():
            raise DataError(f"{where}: column {column} has no values")
        if gaps.any():
            rows = np.arange(len(values))
            filled[gaps, column] = np.interp(rows[gaps], rows[~gaps], values[~gaps, column])
            missing += int(gaps.sum())
    return filled, missing


def prepare_co2(
    out_dir: Path, *, split: Split = "ratio", train_fraction: float = 0.7, test_fraction: float = 0.2
) -> dict:
    """statsmodels' weekly CO2 at Mauna Loa (1958-2001, 2284 weeks; 59 missing weeks filled linearly)."""
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    dates = frame.index.to_numpy().astype("datetime64[s]")
    values, missing = fill_linear(frame[["co2"]].to_numpy(dtype=np.float64), "statsmodels-co2")
    borders = split_borders(dates, split, train_fraction, test_fraction, "statsmodels-co2")
    return write_series_dataset(
        out_dir,
        source="statsmodels-co2",
        generator_version=GENERATOR_VERSION,
        options={"split": split, "train_fraction": train_fraction, "test_fraction": test_fraction},
        dates=dates,
        values=values,
        columns=["co2"],
        borders=borders,
        notes={"filled_missing": missing},
    )


def prepare_two_sine(
    out_dir: Path,
    *,
    rows: int = 6000,
    noise: float = 0.05,
    seed: int = 0,
    split: Split = "ratio",
    train_fraction: float = 0.7,
    test_fraction: float = 0.2,
) -> dict:
    """x_t = sin(2 pi t / 24) + 0.5 sin(2 pi t / 7 + 1) + noise * eps_t, hourly from 2020-01-01 (transdf.md §6)."""
    if rows < 2:
        raise ConfigError(f"two-sine: option rows must be >= 2, got {rows}")
    t = np.arange(rows, dtype=np.float64)
    eps = np.random.default_rng(seed).standard_normal(rows)
    x = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 7 + 1) + noise * eps
    dates = np.datetime64("2020-01-01T00:00:00") + np.arange(rows).astype("timedelta64[h]")
    borders = split_borders(dates, split, train_fraction, test_fraction, "two-sine")
    return write_series_dataset(
        out_dir,
        source="two-sine",
        generator_version=GENERATOR_VERSION,
        options={
            "rows": rows,
            "noise": noise,
            "seed": seed,
            "split": split,
            "train_fraction": train_fraction,
            "test_fraction": test_fraction,
        },
        dates=dates,
        values=x[:, None],
        columns=["x"],
        borders=borders,
    )


def check_header(path: Path, header: list[str]) -> None:
    """Every column needs a name of its own: an empty or repeated one would be silently dropped or merged."""
    for index, name in enumerate(header, start=1):
        if not name.strip():
            raise DataError(f"{path}, line 1: column {index} of the header has no name; name it")
    seen: dict[str, int] = {}
    for index, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                f"{path}, line 1: column name '{name}' appears twice in the header "
                f"(columns {seen[name]} and {index}); rename one"
            )
        seen[name] = index


def read_csv_table(path: Path, date_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A date column plus numeric columns; the first bad cell is an error naming its row and column."""
    if not path.is_file():
        raise DataError(f"csv: no file at {path}")
    try:
        return _read_csv_rows(path, date_column)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); save it as UTF-8") from None
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from None


def _read_csv_rows(path: Path, date_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    # utf-8-sig: a byte-order mark (Excel writes one) is read as such, not as part of the first column's name
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file, expected a header row")
        check_header(path, header)
        if date_column not in header:
            raise DataError(f"{path}: no '{date_column}' column in the header ({', '.join(header)})")
        date_index = header.index(date_column)
        columns = [c for i, c in enumerate(header) if i != date_index]
        if not columns:
            raise DataError(f"{path}: no numeric columns besides '{date_column}'")
        dates, values = [], []
        for line, row in enumerate(reader, start=2):  # line numbers as an editor shows them
            if len(row) != len(header):
                raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
            try:
                dates.append(np.datetime64(row[date_index].strip(), "s"))
            except ValueError:
                raise DataError(
                    f"{path}, line {line}: '{row[date_index]}' in column '{date_column}' "
                    f"is not a date (use ISO 8601, e.g. 2016-07-01 00:00:00)"
                ) from None
            numbers = []
            for i, cell in enumerate(row):
                if i == date_index:
                    continue
                try:
                    numbers.append(float(cell))
                except ValueError:
                    raise DataError(f"{path}, line {line}: '{cell}' in column '{header[i]}' is not a number") from None
            values.append(numbers)
    dates_array = np.array(dates, dtype="datetime64[s]")
    steps = np.diff(dates_array).astype(np.int64)
    if len(steps) and (steps <= 0).any():
        line = int(np.argmax(steps <= 0)) + 3
        raise DataError(
            f"{path}, line {line}: dates must increase; '{dates_array[line - 2]}' does not follow "
            f"'{dates_array[line - 3]}'"
        )
    return dates_array, np.array(values, dtype=np.float64), columns


def prepare_csv(
    out_dir: Path,
    *,
    path: str,
    split: Split = "ratio",
    date_column: str = "date",
    min_rows: int = 2,
    train_fraction: float = 0.7,
    test_fraction: float = 0.2,
) -> dict:
    """An ETT-style CSV (a date column, then numeric columns), e.g. ETTh1.csv: split=ett for ETT's
    12/4/4-month borders, split=ratio for the 70/10/20 rule (Electricity, Weather, Traffic)."""
    source = Path(path).expanduser()
    dates, values, columns = read_csv_table(source, date_column)
    if "date" in columns:  # the prepared table names its date column 'date'
        raise DataError(
            f"{source}: a value column is named 'date', which the prepared table's date column takes; rename it"
        )
    if len(values) < max(min_rows, 2):
        raise DataError(f"{source}: {len(values)} data rows, fewer than min_rows={max(min_rows, 2)}")
    if np.isnan(values).any():
        row, column = np.argwhere(np.isnan(values))[0]
        raise DataError(f"{source}, line {row + 2}: column '{columns[column]}' is NaN; fill it before preparing")
    borders = split_borders(dates, split, train_fraction, test_fraction, str(source))
    return write_series_dataset(
        out_dir,
        source="csv",
        generator_version=GENERATOR_VERSION,
        options={
            "path": str(path),
            "split": split,
            "date_column": date_column,
            "min_rows": min_rows,
            "train_fraction": train_fraction,
            "test_fraction": test_fraction,
        },
        dates=dates,
        values=values,
        columns=columns,
        borders=borders,
    )
