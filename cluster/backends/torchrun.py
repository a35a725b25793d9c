"""The `torchrun` backend: each trial as `torchrun --nproc-per-node N -m cluster.launch SPEC.json` on this
machine (gloo on CPU, NCCL on GPU); rank 0 writes the run directory, every rank trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cluster.distributed import free_port
from cluster.launch import LaunchSpec, TrialOutcome, outcome_from_run_dir
from cluster.profiles import Profile


def torchrun_command(spec_file: Path, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "cluster.launch",
        str(spec_file),
    ]


def run_trials(
    specs: list[LaunchSpec], profile: Profile, *, workdir: Path, metric: str | None = None, mode: str = "min"
) -> list[TrialOutcome]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for index, spec in enumerate(specs):
        spec_file = workdir / f"spec-{index:03d}.json"
        spec_file.write_text(spec.to_json())
        print(f"[{index + 1}/{len(specs)}] {Path(spec.run_dir).name} on {profile.processes} processes", flush=True)
        done = subprocess.run(
            torchrun_command(spec_file, profile.processes),
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(profile.threads)},
        )
        outcome = outcome_from_run_dir(spec)
        if done.returncode != 0 and outcome.status in ("running", "missing"):
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            outcome = TrialOutcome(spec, "failed", {}, f"torchrun exited {done.returncode}: {tail[0]}")
        if outcome.status != "completed":
            print(f"  {outcome.status}: {outcome.error}", flush=True)
        outcomes.append(outcome)
    return outcomes
