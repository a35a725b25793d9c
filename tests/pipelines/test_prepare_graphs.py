"""Preparing knowledge graphs: pykeen's bundled UMLS / Nations / Kinships (found without importing pykeen), a
folder of FB15k-237 / WN18RR-layout TSV files; manifests, id maps, byte-identical output, verify, and one-line
errors naming the bad line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from components.core.errors import ConfigError, DataError
from components.core.graphs import KGTriples
from pipelines.datasets import prepare, verify

COUNTS = {  # grsnn.md §6: entities, relations, train / valid / test
    "umls": (135, 46, 5216, 652, 661),
    "nations": (14, 55, 1592, 199, 201),
    "kinships": (104, 25, 8544, 1068, 1074),
}


@pytest.mark.parametrize("dataset", sorted(COUNTS))
def test_pykeen_datasets_have_the_published_counts(dataset, tmp_path):
    imported_before = "pykeen" in sys.modules
    prepare(f"graphs/{dataset}", {"source": "pykeen", "dataset": dataset}, tmp_path)
    assert ("pykeen" in sys.modules) == imported_before  # located through find_spec, never imported
    kg = KGTriples(tmp_path, f"graphs/{dataset}")
    counts = (kg.num_entities, kg.num_relations, *(len(kg.triples[s]) for s in ("train", "val", "test")))
    assert counts == COUNTS[dataset]
    assert kg.manifest["kind"] == "graphs" and kg.manifest["source"] == "pykeen"
    assert kg.entities == sorted(kg.entities) and kg.relations == sorted(kg.relations)


def test_umls_ids_map_back_to_the_shipped_label_triples(tmp_path):
    from pipelines.datasets.graphs import pykeen_folder, read_triples

    prepare("graphs/umls", {"source": "pykeen", "dataset": "umls"}, tmp_path)
    kg = KGTriples(tmp_path, "graphs/umls")
    shipped = read_triples(pykeen_folder("umls") / "test.txt")
    labelled = [(kg.entities[h], kg.relations[r], kg.entities[t]) for h, r, t in kg.triples["test"].tolist()]
    assert labelled == shipped  # the source's row order, every label through the maps


def write_layout(folder: Path, rows: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, lines in rows.items():
        (folder / file).write_text("".join(line + "\n" for line in lines))
    return folder


FB_ROWS = {
    "train.txt": [
        "/m/027rn\t/location/country/form_of_government\t/m/06cx9",
        "/m/017dcd\t/tv/tv_program/regular_cast./tv/regular_tv_appearance/actor\t/m/06v8s0",
        "/m/07s9rl0\t/media_common/netflix_genre/titles\t/m/0170z3",
        "/m/06cx9\t/location/country/form_of_government\t/m/027rn",
    ],
    "valid.txt": ["/m/07s9rl0\t/media_common/netflix_genre/titles\t/m/06v8s0"],
    "test.txt": ["/m/0170z3\t/location/country/form_of_government\t/m/017dcd"],
}


def test_tsv_layout_is_prepared_byte_identically_and_verifies(tmp_path):
    folder = write_layout(tmp_path / "FB15k-237", FB_ROWS)
    prepare("graphs/fb", {"source": "kg-tsv", "path": str(folder)}, tmp_path / "a")
    prepare("graphs/fb", {"source": "kg-tsv", "path": str(folder)}, tmp_path / "b")
    for file in sorted((tmp_path / "a/graphs/fb").iterdir()):
        assert file.read_bytes() == (tmp_path / "b/graphs/fb" / file.name).read_bytes(), file.name
    assert verify(tmp_path / "a") == ["graphs/fb"]
    kg = KGTriples(tmp_path / "a", "graphs/fb")
    assert (kg.num_entities, kg.num_relations) == (6, 3)  # ids over every split, as TorchDrug numbers them
    assert [len(kg.triples[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    h, r, t = kg.triples["test"][0]
    assert (kg.entities[h], kg.relations[r], kg.entities[t]) == (
        "/m/0170z3",
        "/location/country/form_of_government",
        "/m/017dcd",
    )
    (tmp_path / "a/graphs/fb/test.parquet").write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(DataError, match="test.parquet"):
        verify(tmp_path / "a")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("/m/a\t/r", "2 tab-separated fields"),
        ("/m/a\t/r\t/m/b\t/m/c", "4 tab-separated fields"),
        ("/m/a /r /m/b", "1 tab-separated fields"),
        ("/m/a\t\t/m/b", "an empty field"),
        ("", "1 tab-separated fields"),
    ],
)
def test_a_bad_row_is_an_error_naming_its_line(tmp_path, line, problem):
    rows = dict(FB_ROWS)
    rows["valid.txt"] = [FB_ROWS["valid.txt"][0], FB_ROWS["valid.txt"][0], line, FB_ROWS["valid.txt"][0]]
    folder = write_layout(tmp_path / "bad", rows)
    with pytest.raises(DataError, match=rf"valid\.txt, line 3: {problem}") as error:
        prepare("graphs/bad", {"source": "kg-tsv", "path": str(folder)}, tmp_path / "data")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "data/graphs/bad").exists()  # nothing half-written


def test_a_row_with_four_fields_is_refused_not_truncated(tmp_path):
    rows = dict(FB_ROWS)
    rows["test.txt"] = [FB_ROWS["test.txt"][0] + "\t/m/extra"]
    folder = write_layout(tmp_path / "four", rows)
    with pytest.raises(DataError, match=r"test\.txt, line 1: 4 tab-separated fields, expected 3"):
        prepare("graphs/four", {"source": "kg-tsv", "path": str(folder)}, tmp_path / "data")


def test_missing_files_and_options_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no folder"):
        prepare("graphs/x", {"source": "kg-tsv", "path": str(tmp_path / "nowhere")}, tmp_path)
    folder = write_layout(tmp_path / "partial", {"train.txt": FB_ROWS["train.txt"]})
    with pytest.raises(DataError, match=r"no triples file at .*valid\.txt"):
        prepare("graphs/x", {"source": "kg-tsv", "path": str(folder)}, tmp_path)
    with pytest.raises(ConfigError, match="dataset"):
        prepare("graphs/x", {"source": "pykeen", "dataset": "fb15k237"}, tmp_path)
    with pytest.raises(ConfigError, match="needs option 'path'"):
        prepare("graphs/x", {"source": "kg-tsv"}, tmp_path)


def test_reader_refuses_other_kinds_of_data(data_root):
    with pytest.raises(DataError, match="not knowledge-graph triples"):
        KGTriples(data_root, "images/digits")
