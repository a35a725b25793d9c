"""The sweep ledger and cached sweeps on the local backend: a re-run runs only trials with no completed
result, failed ones again; --rerun forces; the verbs status, logs, collect, compare and gc read the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines import ledger as ledger_module
from pipelines.cli import main
from pipelines.ledger import read_ledger, trial_key
from pipelines.sweep import run_sweep

GRID = {"schedule.phi": [0.5, 2], "optimizer": ["sgd"]}


def probe(params: dict) -> dict:
    params["sweeps"]["lr_probe"] = {
        "component": "uba",
        "grid": {"lr": [0.05, 1e6]},  # 1e6 diverges: a failed trial
        "seeds": [0],
        "metric": "val/loss",
        "mode": "min",
    }
    return params


def sweep(params, data_root, root: Path, **options):
    options.setdefault("grid", GRID)
    options.setdefault("seeds", [0])
    return run_sweep("uba_phi", params, preset="test", run_root=root, data_dir=data_root, **options)


def test_rerun_reuses_completed_trials_and_a_wider_sweep_runs_only_the_new_ones(params, data_root, tmp_path):
    first = sweep(params, data_root, tmp_path)
    records = read_ledger(first.directory)
    assert [r["state"] for r in records] == ["completed", "completed"]
    assert all(r["attempts"] == 1 and r["job_id"].startswith("pid:") and r["origin"] == "new" for r in records)
    assert [r["run_dir"] for r in records] == [r.run_dir for r in first.results]

    again = sweep(params, data_root, tmp_path)
    assert again.directory != first.directory
    assert [r["origin"] for r in read_ledger(again.directory)] == ["cached", "cached"]
    assert [r.run_dir for r in again.results] == [r.run_dir for r in first.results]  # nothing ran again
    assert (again.directory / "summary.csv").read_text() == (first.directory / "summary.csv").read_text()
    assert not (again.directory / "trials").exists()

    wider = sweep(params, data_root, tmp_path, seeds=[0, 1])
    origins = {(r["overrides"]["schedule.phi"], r["seed"]): r["origin"] for r in read_ledger(wider.directory)}
    assert origins == {(0.5, 0): "cached", (0.5, 1): "new", (2, 0): "cached", (2, 1): "new"}
    assert json.loads((wider.directory / "sweep.json").read_text())["origins"] == {"new": 2, "cached": 2}

    forced = sweep(params, data_root, tmp_path, rerun=True)
    assert [r["origin"] for r in read_ledger(forced.directory)] == ["new", "new"]
    assert all(Path(r.run_dir).parent.parent == forced.directory for r in forced.results)
    assert [r.metrics for r in forced.results] == [r.metrics for r in first.results]  # the same trials, bit-exact


def test_failed_trials_run_again_and_completed_ones_do_not(params, data_root, tmp_path):
    params = probe(params)
    first = run_sweep("lr_probe", params, preset="test", run_root=tmp_path, data_dir=data_root)
    assert [r.status for r in first.results] == ["completed", "failed"]
    again = run_sweep("lr_probe", params, preset="test", run_root=tmp_path, data_dir=data_root)
    records = read_ledger(again.directory)
    assert [(r["origin"], r["state"]) for r in records] == [("cached", "cached"), ("new", "failed")]
    assert records[1]["run_dir"] != read_ledger(first.directory)[1]["run_dir"]


def test_trial_identity_is_config_seed_code_and_data(params, data_root, tmp_path, monkeypatch):
    datasets = {"images/digits": {"manifest_sha256": "a"}}
    key = trial_key("uba", {"lr": 0.1}, 0, datasets)
    assert key == trial_key("uba", {"lr": 0.1}, 0, datasets)
    assert key != trial_key("uba", {"lr": 0.2}, 0, datasets)
    assert key != trial_key("uba", {"lr": 0.1}, 1, datasets)
    assert key != trial_key("uba", {"lr": 0.1}, 0, {"images/digits": {"manifest_sha256": "b"}})
    # the code digest covers what uba's train stage imports and the lock, as DVC's lineage stage sees it
    from pipelines.lineage import ROOT, RUNNER_MODULE, import_closure

    closure = {str(p.relative_to(ROOT)) for p in import_closure(("components.uba.component", RUNNER_MODULE), ROOT)}
    assert "components/uba/component.py" in closure and "cluster/runner.py" in closure
    assert not any(path.startswith(("pipelines/", "components/lion/")) for path in closure)

    first = sweep(params, data_root, tmp_path, grid={"schedule.phi": [0.5], "optimizer": ["sgd"]})
    monkeypatch.setattr(ledger_module, "code_digest", lambda slug: "changed code")
    changed = sweep(params, data_root, tmp_path, grid={"schedule.phi": [0.5], "optimizer": ["sgd"]})
    assert read_ledger(changed.directory)[0]["origin"] == "new"
    assert read_ledger(changed.directory)[0]["key"] != read_ledger(first.directory)[0]["key"]


def cli(capsys, root: Path, data_root: Path, params_file: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--params", str(params_file), "--data-dir", str(data_root), "--run-root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_logs_collect_compare_and_gc(params, data_root, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(probe(params)))
    root = tmp_path / "runs"
    code, out, _ = cli(capsys, root, data_root, params_file, "sweep", "lr_probe", "--preset", "test")
    assert code == 1
    (directory,) = (root / "sweeps" / "lr_probe").iterdir()

    code, out, _ = cli(capsys, root, data_root, params_file, "status")
    lines = out.splitlines()
    assert lines[0].startswith("sweep lr_probe (uba, local): failed; driver gone; 1 completed, 1 failed")
    assert lines[3].split()[:2] == ["trial", "state"] and "ETA" in lines[3]
    assert "completed" in lines[5] and "30/30" in lines[5] and "val/loss=" in lines[5]
    assert "failed" in lines[6]

    code, out, _ = cli(capsys, root, data_root, params_file, "logs", str(directory), "--trial", "1")
    assert "metrics.jsonl <==" in out and '"train/loss"' in out
    code, _, err = cli(capsys, root, data_root, params_file, "logs", str(directory))
    assert code == 2 and "name a trial with --trial" in err

    (directory / "summary.md").unlink()
    code, out, _ = cli(capsys, root, data_root, params_file, "collect", str(directory))
    assert "1 of 2 trials did not complete" in out and (directory / "summary.md").is_file()

    code, out, _ = cli(capsys, root, data_root, params_file, "compare", str(directory), "--markdown")
    assert "config keys that differ: lr" in out
    header, _, first, second = out.strip().splitlines()[2:]
    assert header.startswith("| run | state | lr |") and "val/loss" in header
    assert "| completed | 0.05 |" in first and "| failed | 1e+06 |" in second
    code, again, _ = cli(capsys, root, data_root, params_file, "compare", str(directory), str(directory), "--markdown")
    assert again == out  # a run reached through two sweep folders is one row

    one_off = root / "uba" / "one-off"
    code, _, _ = cli(capsys, root, data_root, params_file, "run", "uba", "--preset", "test", "--out", str(one_off))
    checkpoints = Path(read_ledger(directory)[0]["run_dir"]) / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    (checkpoints / "step-30.pt").write_bytes(b"x" * 1000)
    code, out, _ = cli(capsys, root, data_root, params_file, "gc")
    assert "one-off" in out and "checkpoints of a completed run" in out and "would free" in out
    assert one_off.is_dir() and checkpoints.is_dir()  # shown, not removed
    code, out, _ = cli(capsys, root, data_root, params_file, "gc", "--yes")
    assert not one_off.exists() and not checkpoints.exists()
    assert all(Path(r["run_dir"]).is_dir() for r in read_ledger(directory))  # what a sweep refers to stays


@pytest.mark.parametrize("verb", ["sweep", "status", "logs", "cancel", "collect", "gc", "compare"])
def test_every_verb_has_help_with_examples(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"paperzoo {verb}" in out


def test_estimate_then_the_sweep_reports_its_cost_beside_it(params, data_root, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    root = tmp_path / "runs"
    narrow = ("uba_phi", "--preset", "test", "--grid", "schedule.phi=0.5,2", "--grid", "optimizer=sgd", "--seeds", "0")
    code, out, _ = cli(capsys, root, data_root, params_file, "sweep", *narrow, "--estimate")
    assert code == 0 and "2 trials x 30 steps x" in out and "CPU-process-hours" in out
    estimate = json.loads((root / "sweeps" / "uba_phi" / "estimate.json").read_text())
    assert estimate["trials"] == 2 and estimate["steps"] == 30 and estimate["seconds_per_step"] > 0
    assert not list((root / "sweeps" / "uba_phi").glob("*/sweep.json"))  # nothing ran
    code, out, _ = cli(capsys, root, data_root, params_file, "sweep", *narrow)
    assert code == 0 and "cost: " in out and "(estimate: " in out


def test_a_gpu_profile_estimate_counts_the_flops_of_one_step(params, data_root, tmp_path, capsys):
    # uba's test preset: the digits MLP 64-32-32-10 at batch 32. One SGD step is the forward matmuls, the weight
    # gradients (as many FLOPs) and the input gradients of every layer but the first (nothing needs the images')
    from pipelines.operations import GPU_PEAK_FLOPS, GPU_UTILISATION

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    root = tmp_path / "runs"
    narrow = ("uba_phi", "--preset", "test", "--grid", "schedule.phi=0.5", "--grid", "optimizer=sgd", "--seeds", "0")
    code, out, _ = cli(
        capsys, root, data_root, params_file, "sweep", *narrow, "--estimate", "--profile", "slurm-gpu1", "--backend",
        "submitit",
    )  # fmt: skip
    assert code == 0 and "GFLOP/step (PyTorch's FLOP counter" in out and "GPU-hours" in out
    estimate = json.loads((root / "sweeps" / "uba_phi" / "estimate.json").read_text())
    layers = [(64, 32), (32, 32), (32, 10)]
    forward = sum(2 * 32 * fan_in * fan_out for fan_in, fan_out in layers)
    backward = forward + sum(2 * 32 * fan_in * fan_out for fan_in, fan_out in layers[1:])
    assert estimate["flops_per_step"] == forward + backward
    assert estimate["seconds_per_step"] == pytest.approx((forward + backward) / (GPU_PEAK_FLOPS * GPU_UTILISATION))


@pytest.mark.parametrize(
    ("backend", "cold", "at_once"),
    [
        ("submitit", 8, 8),  # 32 trials on 8 CPUs: 8 array tasks of 4 trials, one interpreter each, all at once
        ("torchrun", 1, 1),  # one-process trials: one worker runs them all
        ("local", 1, 1),
    ],
)
def test_a_cpu_estimate_counts_the_processes_each_backend_starts(
    backend, cold, at_once, params, data_root, tmp_path, capsys, monkeypatch
):
    from cluster.backends import submitit_backend

    monkeypatch.setattr(submitit_backend, "slurm_available", lambda: True)
    monkeypatch.setattr(submitit_backend, "partition_capacity", lambda profile: (8, None))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    root = tmp_path / "runs"
    args = ("uba_phi", "--preset", "test", "--estimate", "--profile", "slurm-cpu", "--backend", backend)
    code, out, _ = cli(capsys, root, data_root, params_file, "sweep", *args)
    assert code == 0 and "32 trials x 30 steps x" in out, out
    assert f" + {cold} x " in out and f"with {at_once} trial(s) at once" in out, out
    estimate = json.loads((root / "sweeps" / "uba_phi" / "estimate.json").read_text())
    busy = 32 * 30 * estimate["seconds_per_step"]
    assert estimate["device_hours"] * 3600 == pytest.approx(busy + cold * estimate["start_up_seconds"])
    rounds = 32 // at_once  # trials one after another in each of the processes running at once
    assert estimate["wall_hours"] * 3600 == pytest.approx(busy / 32 * rounds + estimate["start_up_seconds"])


def test_progress_lines_off_a_terminal(capsys):
    from cluster.runner import progress_bar

    latest = {"train/loss": 0.5}
    assert list(progress_bar(False, 1e-9, latest)(range(3), total=10, desc="uba")) == [0, 1, 2]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("uba: step 1/10 (10%), train/loss 0.5, ") and "steps/s, ETA" in lines[0]
    assert len(lines) == 3
    assert list(progress_bar(False, 0.0, latest)(range(3), total=10)) == [0, 1, 2]
    assert capsys.readouterr().out == ""  # 0: none (the default under pytest)
