"""Knowledge-graph triples as Parquet plus a manifest: a deterministic writer and the reader components use.

A dataset lives in `<data_root>/graphs/<name>/` as one Parquet table per split (`train.parquet`, `val.parquet`,
`test.parquet`: int32 columns `head`, `relation`, `tail`, in the source's row order), the id maps
`entities.parquet` and `relations.parquet` (int32 `id`, string `label`, ids 0..n-1 in label order) and
`manifest.json` (counts per split, entity and relation counts, every file's size and sha256). Ids cover the
union of all splits, as TorchDrug's (and so NBFNet's and GRSNN's) loaders number them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.errors import DataError
from components.core.files import atomic_directory
from components.core.shards import SPLITS, check_dataset, manifest_bytes, prepare_command, sha256_file, verify_file

FORMAT = "parquet-triples"  # not "parquet": check_dataset reads that as a time series' table
COLUMNS = ("head", "relation", "tail")
MAPS = ("entities", "relations")


def _write_table(path: Path, table: pa.Table) -> dict:
    # fixed writer settings and no statistics: the same triples give the same bytes
    pq.write_table(table, path, compression="zstd", use_dictionary=False, write_statistics=False)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_graph_dataset(
    out_dir: Path,
    *,
    source: str,
    options: dict,
    generator_version: int,
    splits: dict[str, list[tuple[str, str, str]]],
    notes: dict[str, Any] | None = None,
) -> dict:
    """Number the labels of every split's (head, relation, tail) triples, write the tables and the manifest
    into a staging folder, then swap it onto `out_dir` (never half-written)."""
    out_dir = Path(out_dir)
    if set(splits) != set(SPLITS):
        raise DataError(f"graphs {out_dir.name}: the splits must be {', '.join(SPLITS)}, got {', '.join(splits)}")
    if not splits["train"]:
        raise DataError(f"graphs {out_dir.name}: the train split has no triples")
    entities = sorted({label for rows in splits.values() for h, _, t in rows for label in (h, t)})
    relations = sorted({r for rows in splits.values() for _, r, _ in rows})
    entity_id = {label: i for i, label in enumerate(entities)}
    relation_id = {label: i for i, label in enumerate(relations)}
    name = f"{out_dir.parent.name}/{out_dir.name}"
    manifest: dict[str, Any] = {
        "name": name,
        "kind": "graphs",
        "source": source,
        "options": options,
        "generator_version": generator_version,
        "format": FORMAT,
        "columns": list(COLUMNS),
        "entities": len(entities),
        "relations": len(relations),
        "splits": {},
        "files": [],
        **(notes or {}),
    }
    with atomic_directory(out_dir) as staging:
        for split in SPLITS:
            rows = splits[split]
            ids = np.array([(entity_id[h], relation_id[r], entity_id[t]) for h, r, t in rows], dtype=np.int32).reshape(
                -1, 3
            )
            table = pa.table({column: pa.array(ids[:, i]) for i, column in enumerate(COLUMNS)})
            manifest["files"].append(_write_table(staging / f"{split}.parquet", table))
            manifest["splits"][split] = {"count": len(rows), "file": f"{split}.parquet", "shards": []}
        for kind, labels in zip(MAPS, (entities, relations), strict=True):
            table = pa.table({"id": pa.array(np.arange(len(labels), dtype=np.int32)), "label": pa.array(labels)})
            manifest["files"].append(_write_table(staging / f"{kind}.parquet", table))
        (staging / "manifest.json").write_bytes(manifest_bytes(manifest))
    return manifest


def _fix(name: str) -> str:
    return f"re-prepare it with `{prepare_command(name)}` (or check it with `paperzoo verify {name}`)"


class KGTriples:
    """A prepared knowledge graph: `triples[split]` int64 [n, 3] (head, relation, tail ids), `entities` and
    `relations` (labels by id), `num_entities`, `num_relations`."""

    def __init__(self, data_root: Path, name: str, *, verify: bool = True):
        """Read every table after checking it against the manifest: present at its size (check_dataset), its
        sha256 with `verify` (the default; once per file version per process), the columns, the row counts and
        every id inside the maps."""
        self.name = name
        self.manifest = check_dataset(data_root, name, verify=False)
        if self.manifest.get("kind") != "graphs" or self.manifest.get("format") != FORMAT:
            raise DataError(f"dataset '{name}' is {self.manifest.get('kind')!r} data, not knowledge-graph triples")
        folder = Path(data_root) / name
        listed = {entry["file"]: entry for entry in self.manifest["files"]}
        tables = {}
        for stem in (*SPLITS, *MAPS):
            file = f"{stem}.parquet"
            if file not in listed:
                raise DataError(f"the manifest of dataset '{name}' does not list {file}: {_fix(name)}")
            if verify:
                verify_file(folder / file, listed[file].get("sha256"), name, what="file")
            try:
                tables[stem] = pq.read_table(folder / file)
            except (pa.ArrowException, OSError) as error:
                raise DataError(
                    f"file {folder / file} is not a readable Parquet table ({error}): {_fix(name)}"
                ) from None
        self.entities = [str(x) for x in tables["entities"].column("label").to_pylist()]
        self.relations = [str(x) for x in tables["relations"].column("label").to_pylist()]
        self.num_entities, self.num_relations = len(self.entities), len(self.relations)
        if (self.num_entities, self.num_relations) != (self.manifest["entities"], self.manifest["relations"]):
            raise DataError(f"dataset '{name}': the id maps disagree with the manifest's counts: {_fix(name)}")
        self.triples: dict[str, np.ndarray] = {}
        for split in SPLITS:
            table = tables[split]
            path = folder / f"{split}.parquet"
            if list(table.column_names) != list(COLUMNS):
                raise DataError(f"file {path} has columns {table.column_names}, expected {list(COLUMNS)}: {_fix(name)}")
            ids = np.stack([table.column(c).to_numpy() for c in COLUMNS], axis=1).astype(np.int64).reshape(-1, 3)
            if len(ids) != self.manifest["splits"][split]["count"]:
                raise DataError(f"file {path} has {len(ids)} triples, its manifest says otherwise: {_fix(name)}")
            bounds = np.array([self.num_entities, self.num_relations, self.num_entities])
            if len(ids) and ((ids < 0) | (ids >= bounds)).any():
                row = int(np.argwhere(((ids < 0) | (ids >= bounds)).any(axis=1))[0, 0])
                raise DataError(f"file {path}, row {row}: an id outside the entity or relation map: {_fix(name)}")
            self.triples[split] = ids
