"""uba.md §6 check 4 (report-only): digits MLP, SGD momentum 0.9, eta_max 0.1, eta_min 0, batch 64,
budgets {100, 300}, 3 seeds; constant, step, cosine and UBA phi in {0.5, 5}. Prints a table.

Expected: each decaying schedule ends with a lower full-batch train loss than constant in most seeds;
differences among decaying schedules are within seed noise at this scale (no gate on UBA > cosine).

    python benchmarks/uba_budgets.py [--data-dir data]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from cluster.runner import execute, plan_run
from pipelines.params import load_params

SCHEDULES = {
    "constant": {"schedule.name": "constant"},
    "step": {"schedule.name": "step"},
    "cosine": {"schedule.name": "cosine"},
    "uba phi=0.5": {"schedule.name": "uba", "schedule.phi": 0.5},
    "uba phi=5": {"schedule.name": "uba", "schedule.phi": 5.0},
}
COMMON = {
    "task": "digits_mlp",
    "optimizer": "sgd",
    "lr": 0.1,
    "weight_decay": 0.0,
    "batch_size": 64,
    "schedule.min_ratio": 0.0,
    "schedule.warmup": 0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    params = load_params(Path("params.yaml"))
    rows = []
    with tempfile.TemporaryDirectory() as run_root:
        for budget in (100, 300):
            constant_losses: list[float] = []
            for name, schedule in SCHEDULES.items():
                losses, accs = [], []
                for seed in range(args.seeds):
                    request = plan_run(
                        "uba",
                        params,
                        preset="smoke",
                        seed=seed,
                        data_dir=args.data_dir,
                        overrides={**COMMON, **schedule, "budget": budget},
                    )
                    metrics = execute(
                        request, run_root=Path(run_root), data_dir=args.data_dir, show_progress=False
                    ).metrics
                    losses.append(metrics["final/train_loss"])
                    accs.append(metrics["test/acc"])
                if name == "constant":
                    constant_losses = losses
                beats = sum(loss < base for loss, base in zip(losses, constant_losses))
                rows.append(
                    (
                        budget,
                        name,
                        statistics.fmean(losses),
                        statistics.stdev(losses),
                        statistics.fmean(accs),
                        statistics.stdev(accs),
                        "-" if name == "constant" else f"{beats}/{args.seeds}",
                    )
                )
    print("| budget | schedule | train loss (mean) | (std) | test acc (mean) | (std) | seeds below constant |")
    print("|---|---|---|---|---|---|---|")
    for budget, name, loss, loss_sd, acc, acc_sd, beats in rows:
        print(f"| {budget} | {name} | {loss:.4f} | {loss_sd:.4f} | {acc:.4f} | {acc_sd:.4f} | {beats} |")


if __name__ == "__main__":
    main()
