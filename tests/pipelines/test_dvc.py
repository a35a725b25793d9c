"""DVC for real: `dvc repro` runs prepare -> lineage -> train -> report; a second repro does nothing; a
change re-trains exactly the components whose inputs it touches; the report keeps the sweeps; push/pull
round-trip the data; the Prefect `reproduce` flow drives the same DVC."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.pipelines.dvc_project import copy_of, edit_params, ran_stages, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(reproduced, tmp_path_factory) -> Path:
    return copy_of(reproduced[0], tmp_path_factory.mktemp("dvc") / "repo")


def test_first_repro_runs_every_stage_and_the_second_nothing(reproduced, repo):
    root, first = reproduced
    listed = yaml.safe_load((root / "params.yaml").read_text())
    assert ran_stages(first) == (
        {f"prepare@{name}" for name in listed["datasets"]}
        | {f"prepare_derived@{name}" for name in listed.get("derived_datasets") or {}}
        | {"lineage"}
        | {f"train@{slug}" for slug in listed["components"]}
        | {"report"}
    )
    for name in [*listed["datasets"], *(listed.get("derived_datasets") or {})]:
        assert (root / "data" / name / "manifest.json").is_file()
    report = (root / "reports/index.md").read_text()
    for slug in listed["components"]:
        assert (root / "runs/dvc" / slug / "metrics.json").is_file()
        assert slug in report
    assert (root / "reports/index.html").is_file() and (root / "reports/plots/uba-loss.png").is_file()
    assert ran_stages(sh("dvc", "repro", cwd=repo)) == set()


def test_a_derived_dataset_is_prepared_after_its_parent_and_again_when_it_changes(repo):
    listed = yaml.safe_load((repo / "params.yaml").read_text())
    derived = listed.get("derived_datasets") or {}
    assert derived, "params.yaml has no derived dataset to check"
    dag = sh("dvc", "dag", "--dot", cwd=repo)
    for name, spec in derived.items():  # an edge parent -> derived in DVC's graph
        assert f'"prepare@{spec["parent"]}" -> "prepare_derived@{name}"' in dag, dag
    name, spec = next(iter(derived.items()))
    status = sh("dvc", "status", f"prepare_derived@{name}", cwd=repo)
    assert "changed" not in status
    parent_manifest = repo / "data" / spec["parent"] / "manifest.json"
    original = parent_manifest.read_bytes()
    try:
        parent_manifest.write_bytes(original + b"\n")  # the parent's data changes
        assert "modified" in sh("dvc", "status", f"prepare_derived@{name}", cwd=repo)
    finally:
        parent_manifest.write_bytes(original)  # the module's later tests expect an up-to-date project


def test_each_train_stage_depends_on_what_its_component_reads(repo):
    lineage = json.loads((repo / "runs/lineage/sei_bwsnn.json").read_text())
    assert "components/snn/neuron.py" in lineage["code"]  # its family package
    assert "cluster/runner.py" in lineage["code"] and "components/core/shards.py" in lineage["code"]
    assert "components/registry.py" not in lineage["code"]  # a new line there must not re-train it
    assert not any(path.startswith("components/uba/") for path in lineage["code"])
    assert lineage["entry"] == "components.sei_bwsnn.component:component"
    assert set(lineage["datasets"]) == {"images/digits"} and "requirements.lock" in lineage["packages"]
    assert json.loads((repo / "runs/lineage/ict.json").read_text())["datasets"] == {}


def test_a_parameter_re_runs_only_its_component(repo):
    edit_params(repo, lambda params: params["uba"]["schedule"].update(phi=0.7))
    changed = sh("dvc", "repro", cwd=repo)
    assert ran_stages(changed) == {"lineage", "train@uba", "report"}  # lineage: a few seconds of digests
    assert yaml.safe_load((repo / "runs/dvc/uba/config.yaml").read_text())["schedule"]["phi"] == 0.7


def test_a_failing_stage_keeps_the_previous_result(repo):
    """DVC deletes a stage's outputs before running it; runs/dvc/<slug> is persisted and replaced by paperzoo only
    when the new run succeeds, so a failing repro (here a run that diverges) loses nothing."""
    before = (repo / "runs/dvc/uba/metrics.json").read_bytes()
    edit_params(repo, lambda params: params["uba"].update(lr=1.0e6))
    failed = sh("dvc", "repro", cwd=repo, check=False)
    assert "Running stage 'train@uba'" in failed and "loss diverged at step" in failed
    assert (repo / "runs/dvc/uba/metrics.json").read_bytes() == before
    edit_params(repo, lambda params: params["uba"].pop("lr"))
    assert "train@uba" not in ran_stages(sh("dvc", "repro", cwd=repo))  # the kept result is the current one


def test_re_preparing_a_dataset_re_trains_only_what_reads_it(repo):
    readers = {
        slug
        for slug in yaml.safe_load((repo / "params.yaml").read_text())["components"]
        if "series/co2" in json.loads((repo / f"runs/lineage/{slug}.json").read_text())["datasets"]
    }
    assert readers == {"transdf"}
    sh("dvc", "repro", "--force", "--single-item", "prepare@series/co2", cwd=repo)  # byte-identical again
    assert ran_stages(sh("dvc", "repro", cwd=repo)) == set()

    edit_params(repo, lambda params: params["datasets"]["series/co2"].update(train_fraction=0.6))
    changed = sh("dvc", "repro", cwd=repo)
    assert ran_stages(changed) == {"prepare@series/co2", "lineage", "train@transdf", "report"}
    assert "transdf: inputs changed: datasets (series/co2)" in changed


def test_a_package_upgrade_re_trains_everything(repo):
    """Only the lineage stage runs here (training all ten is the point, not the test): every lineage file
    changes, so DVC then holds every train stage out of date; restoring the lock restores them."""
    lock = repo / "requirements.lock"
    pinned = lock.read_text()
    listed = yaml.safe_load((repo / "params.yaml").read_text())["components"]
    lock.write_text(pinned.replace("torch==2.13.0", "torch==2.13.1"))
    traced = sh("dvc", "repro", "--single-item", "lineage", cwd=repo)
    assert all(f"{slug}: inputs changed: packages (requirements.lock)" in traced for slug in listed)
    stale = {line.strip().rstrip(":") for line in sh("dvc", "status", cwd=repo).splitlines()}
    assert {f"train@{slug}" for slug in listed} <= stale
    lock.write_text(pinned)
    sh("dvc", "repro", "--single-item", "lineage", cwd=repo)
    assert ran_stages(sh("dvc", "repro", cwd=repo)) == set()


def test_sweep_tables_survive_the_next_repro(repo):
    sh(
        "paperzoo",
        "sweep",
        "uba_phi",
        "--grid",
        "schedule.phi=0.5,2",
        "--grid",
        "optimizer=sgd",
        "--seeds",
        "0",
        "--preset",
        "test",
        cwd=repo,
    )
    sh("paperzoo", "report", cwd=repo)
    assert "uba_phi" in (repo / "reports/index.md").read_text()
    edit_params(repo, lambda params: params["uba"]["schedule"].update(phi=0.9))
    assert "report" in ran_stages(sh("dvc", "repro", cwd=repo))
    report = (repo / "reports/index.md").read_text()
    assert "uba_phi" in report and "uba_phi" in (repo / "reports/index.html").read_text()


def test_push_and_pull_round_trip(repo):
    shards = sorted((repo / "data/images/digits").iterdir())
    before = {p.name: p.read_bytes() for p in shards}
    sh("dvc", "push", cwd=repo)
    assert any((repo / ".dvcstore").rglob("*"))
    shutil.rmtree(repo / "data/images/digits")
    shutil.rmtree(repo / ".dvc/cache")
    sh("dvc", "pull", cwd=repo)
    after = {p.name: p.read_bytes() for p in sorted((repo / "data/images/digits").iterdir())}
    assert after == before


def test_reproduce_flow_drives_dvc(repo, monkeypatch):
    """The Prefect `reproduce` flow runs DVC's own reproduce: only the changed component's stages run."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    from pipelines.flows import reproduce_flow

    sh("dvc", "repro", cwd=repo)
    edit_params(repo, lambda params: params["uba"]["schedule"].update(phi=3.0))
    monkeypatch.chdir(repo)
    ran = reproduce_flow(root=str(repo))
    assert set(ran) == {"lineage", "train@uba", "report"}
    assert reproduce_flow(root=str(repo)) == []
