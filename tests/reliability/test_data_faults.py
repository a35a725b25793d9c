"""A catalogue of faults in data stages, each through the CLI in-process (`pipelines.cli.main`).

Every row sets up one fault (bad input, a corrupted or tampered dataset, a killed prepare, a full or read-only
disk), runs one `paperzoo` command and checks three things: the exit code (2 for a user error, 0 where the
input is fine), that stderr is exactly one line naming the key, file or value at fault, and that nothing on
disk was lost or left half-written (the previous dataset still verifies, no hidden staging folder remains, a
run on bad data stopped before it wrote a run directory).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core.files import _HOST
from components.core.shards import sha256_file
from pipelines.cli import main
from pipelines.datasets import prepare, verify
from tests.reliability.mounts import remount_readonly, tmpfs

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
DIGITS = "images/digits"
CO2 = "series/co2"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """digits and co2 prepared once; each case works on its own copy."""
    root = tmp_path_factory.mktemp("prepared")
    prepare(DIGITS, {"source": "sklearn-digits", "repeat": 1}, root)
    prepare(CO2, {"source": "statsmodels-co2"}, root)
    return root


@dataclass
class Scene:
    """What a case works in: a data root, a run root, and what the checks afterwards need."""

    tmp: Path
    prepared: Path
    data: Path
    runs: Path
    stack: ExitStack  # what to undo after the case (a mount)
    keep: list[str] = field(default_factory=list)  # datasets that must still verify afterwards

    def enter(self, context):
        return self.stack.enter_context(context)

    def copy(self, name: str) -> Path:
        shutil.copytree(self.prepared / name, self.data / name)
        self.keep.append(name)
        return self.data / name

    def cli(self, *argv: str) -> list[str]:
        return [*argv, "--params", str(PARAMS), "--data-dir", str(self.data), "--run-root", str(self.runs)]


def set_manifest_file(dataset: Path, file_name: str) -> None:
    """Make the manifest vouch for a file as it is now (a tampered file the hash alone would not name)."""
    manifest_path = dataset / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    path = dataset / file_name
    for entry in [s for split in manifest["splits"].values() for s in split["shards"]] + manifest.get("files", []):
        if entry["file"] == file_name:
            entry.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def rewrite_parquet(dataset: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    path = dataset / "series.parquet"
    pq.write_table(change(pq.read_table(path)), path)
    set_manifest_file(dataset, "series.parquet")


def write_csv(path: Path, header: str, rows: int = 60, bom: bool = False) -> Path:
    width = len(header.split(",")) - 1
    dates = np.datetime64("2016-07-01T00:00:00") + np.arange(rows) * np.timedelta64(1, "h")
    lines = [header] + [
        f"{str(d).replace('T', ' ')}," + ",".join([f"{i * 0.5:.1f}"] * width) for i, d in enumerate(dates)
    ]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode())
    return path


def prepare_csv_argv(scene: Scene, csv: Path) -> list[str]:
    return scene.cli("prepare", "series", "ett", "--set", "source=csv", "--set", f"path={csv}")


def run_uba(scene: Scene) -> list[str]:
    return scene.cli("run", "uba", "--preset", "test")


def run_transdf(scene: Scene) -> list[str]:
    return scene.cli("run", "transdf", "--preset", "test")


# ---- the faults: each returns the argv to run (and may add checks of its own to scene.keep) ----------------


def csv_duplicate_column(scene: Scene) -> list[str]:
    scene.copy(CO2)  # an unrelated dataset that must survive
    return prepare_csv_argv(scene, write_csv(scene.tmp / "dup.csv", "date,OT,OT"))


def csv_duplicate_date_column(scene: Scene) -> list[str]:
    scene.copy(CO2)
    return prepare_csv_argv(scene, write_csv(scene.tmp / "dupdate.csv", "date,date,OT"))


def csv_empty_column_name(scene: Scene) -> list[str]:
    scene.copy(CO2)
    return prepare_csv_argv(scene, write_csv(scene.tmp / "empty.csv", "date,,OT"))


def csv_byte_order_mark_accepted(scene: Scene) -> list[str]:
    scene.keep.append("series/ett")
    return prepare_csv_argv(scene, write_csv(scene.tmp / "bom.csv", "date,HUFL,OT", bom=True))


def csv_missing_file(scene: Scene) -> list[str]:
    return prepare_csv_argv(scene, scene.tmp / "nowhere.csv")


def csv_bad_number(scene: Scene) -> list[str]:
    csv = write_csv(scene.tmp / "bad.csv", "date,OT")
    lines = csv.read_text().splitlines()
    lines[6] = lines[6].rsplit(",", 1)[0] + ",n/a"
    csv.write_text("\n".join(lines) + "\n")
    return prepare_csv_argv(scene, csv)


def option_not_an_integer(scene: Scene) -> list[str]:
    scene.copy(DIGITS)
    return scene.cli("prepare", "images", "digits", "--set", "repeat=abc")


def unknown_dataset_name(scene: Scene) -> list[str]:
    return scene.cli("prepare", "images", "digitz")


def unknown_source(scene: Scene) -> list[str]:
    return scene.cli("prepare", "images", "digits", "--set", "source=sklearn-digit")


def killed_prepare_leftovers_cleaned(scene: Scene) -> list[str]:
    """A prepare killed mid-write (SIGKILL: no cleanup runs) leaves its staging folder; the next prepare of the
    same target removes it, and leaves a live writer's staging folder alone."""
    scene.copy(CO2)
    killed = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from components.core.files import atomic_directory
        with atomic_directory({str(scene.data / CO2)!r}) as staging:
            (staging / "series.parquet").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", killed], check=False)
    left = [p.name for p in (scene.data / "series").iterdir() if p.name.startswith(".co2.tmp-")]
    assert len(left) == 1, left  # the fault is real: the killed writer left its staging folder
    (scene.data / "series" / f".co2.tmp-1.{_HOST}-concurr").mkdir()  # pid 1 is alive: a concurrent writer
    return scene.cli("prepare", "series", "co2")


def parquet_renamed_column(scene: Scene) -> list[str]:
    dataset = scene.copy(CO2)
    scene.keep.remove(CO2)
    rewrite_parquet(dataset, lambda table: table.rename_columns(["date", "co2_ppm"]))
    return run_transdf(scene)


def parquet_extra_column(scene: Scene) -> list[str]:
    dataset = scene.copy(CO2)
    scene.keep.remove(CO2)
    rewrite_parquet(dataset, lambda table: table.append_column("extra", table.column("co2")))
    return run_transdf(scene)


def parquet_without_date_column(scene: Scene) -> list[str]:
    dataset = scene.copy(CO2)
    scene.keep.remove(CO2)
    rewrite_parquet(dataset, lambda table: table.drop_columns(["date"]))
    return run_transdf(scene)


def parquet_string_column(scene: Scene) -> list[str]:
    dataset = scene.copy(CO2)
    scene.keep.remove(CO2)
    rewrite_parquet(dataset, lambda table: table.set_column(1, "co2", table.column("co2").cast(pa.string())))
    return run_transdf(scene)


def parquet_bytes_changed(scene: Scene) -> list[str]:
    dataset = scene.copy(CO2)
    scene.keep.remove(CO2)
    table = dataset / "series.parquet"
    data = bytearray(table.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the data pages, manifest untouched: same size, only the sha256 can tell
    table.write_bytes(bytes(data))
    return run_transdf(scene)


def shard_bytes_changed_same_size(scene: Scene) -> list[str]:
    dataset = scene.copy(DIGITS)
    scene.keep.remove(DIGITS)
    shard = dataset / "train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[1024 + 512 + 128 + 10] ^= 0xFF  # a pixel of sample 1, past its .npy header: sizes and headers stay valid
    shard.write_bytes(bytes(data))
    return run_uba(scene)


def manifest_sha256_wrong(scene: Scene) -> list[str]:
    dataset = scene.copy(DIGITS)
    scene.keep.remove(DIGITS)
    manifest_path = dataset / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["val"]["shards"][0]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    return run_uba(scene)


def shard_truncated(scene: Scene) -> list[str]:
    dataset = scene.copy(DIGITS)
    scene.keep.remove(DIGITS)
    shard = dataset / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[: 512 * 11])
    return run_uba(scene)


def shard_missing(scene: Scene) -> list[str]:
    dataset = scene.copy(DIGITS)
    scene.keep.remove(DIGITS)
    (dataset / "test-000000.tar").unlink()
    return run_uba(scene)


def npy_header_corrupt(scene: Scene) -> list[str]:
    dataset = scene.copy(DIGITS)
    scene.keep.remove(DIGITS)
    shard = dataset / "train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[3 * 1024 + 512 + 60] = ord("!")  # inside sample 3's .npy header
    shard.write_bytes(bytes(data))
    return run_uba(scene)


def dataset_not_prepared(scene: Scene) -> list[str]:
    return run_uba(scene)


def read_only_data_root(scene: Scene) -> list[str]:
    mount = scene.enter(tmpfs(scene.tmp / "ro", "256k"))
    prepare(CO2, {"source": "statsmodels-co2"}, mount)
    remount_readonly(mount)
    scene.data = mount
    scene.keep.append(CO2)
    return scene.cli("prepare", "series", "co2")


def full_data_root(scene: Scene) -> list[str]:
    mount = scene.enter(tmpfs(scene.tmp / "full", "64k"))
    prepare(CO2, {"source": "statsmodels-co2"}, mount)
    try:
        with open(mount / "filler", "wb") as filler:
            while True:
                filler.write(bytes(4096))
                filler.flush()
    except OSError:
        pass
    scene.data = mount
    scene.keep.append(CO2)
    return scene.cli("prepare", "series", "co2")


def read_only_dataset_folder(scene: Scene) -> list[str]:
    """The data root is writable but the kind's folder is a read-only mount: the write itself fails."""
    mount = scene.enter(tmpfs(scene.data / "series", "256k"))
    prepare(CO2, {"source": "statsmodels-co2"}, scene.data)
    remount_readonly(mount)
    scene.keep.append(CO2)
    return scene.cli("prepare", "series", "co2", "--set", "train_fraction=0.6")


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Scene], list[str]]
    code: int
    names: tuple[str, ...]  # what the one line of stderr must contain ((): nothing printed at all)
    after: Callable[[Scene], None] | None = None  # a case's own check of what is on disk afterwards


def bom_columns_read(scene: Scene) -> None:
    from components.core.series import SeriesTable

    assert SeriesTable(scene.data, "series/ett").columns == ["HUFL", "OT"]  # not '\ufeffdate' and a lost column


def live_writer_untouched(scene: Scene) -> None:
    left = sorted(p.name for p in (scene.data / "series").iterdir())
    assert left == [f".co2.tmp-1.{_HOST}-concurr", "co2"], left  # the killed writer's folder is gone, not pid 1's


CATALOGUE = [
    Case("csv_duplicate_column", csv_duplicate_column, 2, ("dup.csv", "'OT'", "appears twice", "columns 2 and 3")),
    Case("csv_duplicate_date_column", csv_duplicate_date_column, 2, ("dupdate.csv", "'date'", "appears twice")),
    Case("csv_empty_column_name", csv_empty_column_name, 2, ("empty.csv", "column 2", "no name")),
    Case("csv_byte_order_mark_accepted", csv_byte_order_mark_accepted, 0, (), bom_columns_read),
    Case("csv_missing_file", csv_missing_file, 2, ("no file at", "nowhere.csv")),
    Case("csv_bad_number", csv_bad_number, 2, ("bad.csv, line 7", "'n/a'", "column 'OT'")),
    Case("option_not_an_integer", option_not_an_integer, 2, ("option repeat", "an integer", "'abc'")),
    Case("unknown_dataset_name", unknown_dataset_name, 2, ("images/digitz", "did you mean 'images/digits'")),
    Case("unknown_source", unknown_source, 2, ("'sklearn-digit'", "did you mean 'sklearn-digits'")),
    Case("killed_prepare_leftovers_cleaned", killed_prepare_leftovers_cleaned, 0, (), live_writer_untouched),
    Case("parquet_renamed_column", parquet_renamed_column, 2, ("series.parquet", "'co2_ppm'", "'co2'", "paperzoo prepare series co2")),
    Case("parquet_extra_column", parquet_extra_column, 2, ("series.parquet", "'extra'", "does not list")),
    Case("parquet_without_date_column", parquet_without_date_column, 2, ("series.parquet", "no 'date' column")),
    Case("parquet_string_column", parquet_string_column, 2, ("series.parquet", "column 'co2'", "string")),
    Case("parquet_bytes_changed", parquet_bytes_changed, 2, ("series.parquet", "sha256", "paperzoo verify series/co2")),
    Case("shard_bytes_changed_same_size", shard_bytes_changed_same_size, 2, ("train-000000.tar", "sha256", "paperzoo prepare images digits")),
    Case("manifest_sha256_wrong", manifest_sha256_wrong, 2, ("val-000000.tar", "sha256", "paperzoo verify images/digits")),
    Case("shard_truncated", shard_truncated, 2, ("train-000000.tar", "bytes, manifest says")),
    Case("shard_missing", shard_missing, 2, ("missing shard", "test-000000.tar")),
    Case("npy_header_corrupt", npy_header_corrupt, 2, ("train-000000.tar", "sha256")),
    Case("dataset_not_prepared", dataset_not_prepared, 2, ("images/digits", "paperzoo prepare images digits")),
    Case("read_only_data_root", read_only_data_root, 2, ("/ro", "Read-only file system")),
    Case("read_only_dataset_folder", read_only_dataset_folder, 2, ("'series/co2'", "/data/series/co2", "Read-only file system")),
    Case("full_data_root", full_data_root, 2, ("series/co2", "/full/series/co2", "No space left on device")),
]  # fmt: skip


def hidden_leftovers(root: Path) -> list[str]:
    """Hidden staging or retired folders of a writer that is gone (a live one, pid 1 here, may stay)."""
    return [
        str(path.relative_to(root))
        for path in root.rglob(".*")
        if (".tmp-" in path.name or ".old-" in path.name) and not path.name.startswith(".co2.tmp-1.")
    ]


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_fault(case: Case, prepared: Path, tmp_path: Path, capsys) -> None:
    with ExitStack() as stack:
        scene = Scene(tmp_path, prepared, tmp_path / "data", tmp_path / "runs", stack)
        argv = case.setup(scene)
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()

        assert code == case.code, err
        if case.code == 0:
            assert not lines, err
        else:
            assert len(lines) == 1 and lines[0].startswith("paperzoo: error: "), err
            for part in case.names:
                assert part in lines[0], f"{part!r} not in: {lines[0]}"
        # nothing lost or half-written: what was prepared still verifies, no staging folder is left behind
        for name in scene.keep:
            assert verify(scene.data, name) == [name]
        assert not hidden_leftovers(scene.data)
        if case.after is not None:
            case.after(scene)
        if argv[0] == "run" and case.code:
            # bad data stops a run at its start check, before compute starts: no run directory, no metrics
            assert not list(scene.runs.rglob("run.json")) and not list(scene.runs.rglob("metrics.json"))
