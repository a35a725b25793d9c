"""Knowledge-graph sources: the small benchmarks shipped inside PyPI's pykeen wheel (UMLS, Nations, Kinships) and
a folder of FB15k-237 / WN18RR-layout TSV files. Both write Parquet triples, entity and relation maps and a
manifest through `components.core.graphs.write_graph_dataset`, atomically and byte-for-byte reproducibly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from components.core.errors import ConfigError, DataError
from components.core.graphs import write_graph_dataset

GENERATOR_VERSION = 1  # bump when a source's output bytes change for the same options
SOURCE_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}  # the split files' names in both
PykeenDataset = Literal["umls", "nations", "kinships"]


def read_triples(path: Path) -> list[tuple[str, str, str]]:
    """Tab-separated `head<TAB>relation<TAB>tail` lines (FB15k-237, WN18RR and pykeen's files all use this
    order). A blank line at the end is allowed; any other bad row is a DataError naming its line."""
    if not path.is_file():
        raise DataError(f"no triples file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); save it as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last row
    triples = []
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3:
            raise DataError(
                f"{path}, line {number}: {len(fields)} tab-separated fields, expected 3 (head, relation, tail)"
            )
        if any(not field.strip() or field != field.strip() for field in fields):
            raise DataError(f"{path}, line {number}: an empty field or one with surrounding spaces in {line!r}")
        triples.append((fields[0], fields[1], fields[2]))
    if not triples:
        raise DataError(f"{path}: no triples")
    return triples


def pykeen_folder(dataset: str) -> Path:
    """pykeen's bundled dataset folder, found without importing pykeen (its imports pull optuna, pystow, ...)."""
    spec = importlib.util.find_spec("pykeen")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the pykeen source needs the pykeen wheel installed (without its dependencies): "
            "pip install --no-deps pykeen==1.11.1"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / dataset
    if not folder.is_dir():
        raise DataError(f"pykeen's wheel at {folder.parent} has no '{dataset}' folder")
    return folder


def prepare_pykeen(out_dir: Path, *, dataset: PykeenDataset) -> dict:
    """UMLS (135 entities, 46 relations), Nations (14, 55) or Kinships (104, 25): the label triples in pykeen's
    wheel, split train/valid/test as shipped."""
    if dataset not in ("umls", "nations", "kinships"):
        raise ConfigError(f"pykeen: option dataset must be umls, nations or kinships, got {dataset!r}")
    folder = pykeen_folder(dataset)
    splits = {split: read_triples(folder / file) for split, file in SOURCE_FILES.items()}
    return write_graph_dataset(
        out_dir,
        source="pykeen",
        generator_version=GENERATOR_VERSION,
        options={"dataset": dataset},
        splits=splits,
    )


def prepare_kg_tsv(out_dir: Path, *, path: str) -> dict:
    """A folder in the FB15k-237 / WN18RR layout: train.txt, valid.txt, test.txt of tab-separated label triples
    (e.g. the FB15k-237 release's Release/ folder, or WN18RR/text/)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"kg-tsv: no folder at {folder} (it should hold {', '.join(SOURCE_FILES.values())})")
    splits = {split: read_triples(folder / file) for split, file in SOURCE_FILES.items()}
    return write_graph_dataset(
        out_dir,
        source="kg-tsv",
        generator_version=GENERATOR_VERSION,
        options={"path": str(path)},
        splits=splits,
    )
