"""Time series as one Parquet table plus a manifest: a deterministic writer and the reader components use.

A dataset lives in `<data_root>/series/<name>/` as `series.parquet` (a `date` timestamp column, then one
float64 column per channel, in time order) and `manifest.json` (columns, first/last date, row count,
chronological split borders, the file's size and sha256). Splits are row ranges [start, end) of the one
table; a forecaster's val/test windows may look back into the previous split for their inputs (the
Time-Series-Library convention), which the reader's `windows` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.errors import DataError
from components.core.files import atomic_directory
from components.core.shards import (
    MANIFEST,
    SPLITS,
    check_dataset,
    manifest_bytes,
    prepare_command,
    sha256_file,
    verify_file,
)

TABLE = "series.parquet"
DATE = "date"


def write_series_dataset(
    out_dir: Path,
    *,
    source: str,
    options: dict,
    generator_version: int,
    dates: np.ndarray,
    values: np.ndarray,
    columns: list[str],
    borders: dict[str, tuple[int, int]],
    notes: dict[str, Any] | None = None,
) -> dict:
    """Write the table and manifest into a staging folder, then swap it onto `out_dir` (never half-written)."""
    out_dir = Path(out_dir)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(columns) or len(dates) != len(values):
        raise DataError(f"series {out_dir.name}: {len(dates)} dates, values {values.shape}, {len(columns)} columns")
    if set(borders) != set(SPLITS):
        raise DataError(f"series {out_dir.name}: split borders must name {', '.join(SPLITS)}")
    for index, column in enumerate(columns):
        if not str(column).strip():
            raise DataError(f"series {out_dir.name}: value column {index + 1} has an empty name")
        if column == DATE or column in columns[:index]:
            raise DataError(
                f"series {out_dir.name}: column name '{column}' is used twice (the table's date column is '{DATE}')"
            )
    table = pa.table(
        {
            "date": pa.array(dates.astype("datetime64[s]"), type=pa.timestamp("s")),
            **{name: pa.array(values[:, i]) for i, name in enumerate(columns)},
        }
    )
    name = f"{out_dir.parent.name}/{out_dir.name}"
    with atomic_directory(out_dir) as staging:
        # fixed writer settings and no statistics timestamps: the same input gives the same bytes
        pq.write_table(table, staging / TABLE, compression="zstd", use_dictionary=False, write_statistics=False)
        manifest = {
            "name": name,
            "kind": "series",
            "source": source,
            "options": options,
            "generator_version": generator_version,
            "format": "parquet",
            "columns": list(columns),
            "rows": int(len(values)),
            "first_date": str(dates[0].astype("datetime64[s]")),
            "last_date": str(dates[-1].astype("datetime64[s]")),
            "splits": {
                split: {"start": int(start), "end": int(end), "shards": []} for split, (start, end) in borders.items()
            },
            "files": [
                {"file": TABLE, "bytes": (staging / TABLE).stat().st_size, "sha256": sha256_file(staging / TABLE)}
            ],
            **(notes or {}),
        }
        (staging / MANIFEST).write_bytes(manifest_bytes(manifest))
    return manifest


def _fix(name: str) -> str:
    return f"re-prepare it with `{prepare_command(name)}` (or check it with `paperzoo verify {name}`)"


def check_table(dataset_dir: Path, name: str, manifest: dict) -> pa.Schema:
    """The table's schema against its manifest, from the Parquet footer alone (cheap: check_dataset calls it at
    the start of a run): a `date` timestamp column, then exactly the manifest's value columns, in its order, each
    numeric. A mismatch is a DataError naming the file and the column."""
    path = Path(dataset_dir) / TABLE
    if not any(entry.get("file") == TABLE for entry in manifest.get("files", [])):
        raise DataError(f"the manifest of dataset '{name}' does not list {TABLE}: {_fix(name)}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"file {path} is not a readable Parquet table ({error}): {_fix(name)}") from None
    names = list(schema.names)
    expected = list(manifest.get("columns") or [])
    if DATE not in names:
        raise DataError(f"file {path} has no '{DATE}' column (its columns: {', '.join(names)}): {_fix(name)}")
    if not pa.types.is_timestamp(schema.field(DATE).type):
        raise DataError(f"file {path}: column '{DATE}' is {schema.field(DATE).type}, not a timestamp: {_fix(name)}")
    if len(set(names)) != len(names):
        twice = sorted({column for column in names if names.count(column) > 1})
        raise DataError(f"file {path} repeats column name(s) {', '.join(map(repr, twice))}: {_fix(name)}")
    values = [column for column in names if column != DATE]
    if values != expected:
        extra = [column for column in values if column not in expected]
        missing = [column for column in expected if column not in values]
        parts = [f"column(s) {', '.join(map(repr, extra))} that the manifest does not list"] if extra else []
        parts += [f"no column(s) {', '.join(map(repr, missing))} that the manifest lists"] if missing else []
        problem = (
            " and ".join(parts) or f"columns in the order {', '.join(values)}, the manifest's is {', '.join(expected)}"
        )
        raise DataError(f"file {path} has {problem}: {_fix(name)}")
    for column in values:
        kind = schema.field(column).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise DataError(f"file {path}: column '{column}' holds {kind} values, not numbers: {_fix(name)}")
    return schema


class SeriesTable:
    """A prepared series: `values` [rows, channels] float64, `dates`, `columns`, and split borders."""

    def __init__(self, data_root: Path, name: str, *, verify: bool = True):
        """Read the table after checking it against the manifest: its columns (names, order, types, by
        check_dataset) and row count, and with `verify` (the default) its sha256, once per file version per
        process (`verify_file`)."""
        self.name = name
        self.manifest = check_dataset(data_root, name, verify=False)
        if self.manifest.get("kind") != "series":
            raise DataError(f"dataset '{name}' is {self.manifest.get('kind')!r} data, not a time series")
        path = Path(data_root) / name / TABLE
        if verify:
            entry = next(entry for entry in self.manifest["files"] if entry.get("file") == TABLE)
            verify_file(path, entry.get("sha256"), name, what="file")
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"file {path} is not a readable Parquet table ({error}): {_fix(name)}") from None
        if table.num_rows != self.manifest.get("rows"):
            raise DataError(
                f"file {path} has {table.num_rows} rows, its manifest says {self.manifest.get('rows')}: {_fix(name)}"
            )
        self.columns = list(self.manifest["columns"])
        self.dates = table.column(DATE).to_numpy()
        self.values = np.stack([table.column(c).to_numpy() for c in self.columns], axis=1).astype(np.float64)
        if not np.isfinite(self.values).all():
            column = self.columns[int(np.argwhere(~np.isfinite(self.values))[0, 1])]
            raise DataError(f"file {path}: column '{column}' has missing or non-finite values: {_fix(name)}")
        self.borders = {split: (entry["start"], entry["end"]) for split, entry in self.manifest["splits"].items()}

    def split_rows(self, split: str) -> int:
        start, end = self.borders[split]
        return end - start

    def windows(self, values: np.ndarray, split: str, seq_len: int, pred_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Stride-1 (input, label) windows whose label lies in `split`; inputs may reach back seq_len rows.

        Returns X [N, seq_len, D] and Y [N, pred_len, D] from `values` (the table, scaled or not)."""
        start, end = self.borders[split]
        first = max(start - seq_len, 0) if split != "train" else start
        count = end - first - seq_len - pred_len + 1
        if count < 1:
            raise DataError(
                f"{self.name}: the {split} split has {end - start} rows, too few for seq_len {seq_len} "
                f"+ pred_len {pred_len}; shorten the windows or re-prepare with a larger {split} share"
            )
        stack = np.lib.stride_tricks.sliding_window_view(values[first:end], seq_len + pred_len, axis=0)
        stack = np.moveaxis(stack, -1, 1)[:count]  # [N, seq_len + pred_len, D]
        return np.ascontiguousarray(stack[:, :seq_len]), np.ascontiguousarray(stack[:, seq_len:])
