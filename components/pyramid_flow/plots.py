"""Run artefacts a person looks at: the stage table (CSV and markdown), per-stage loss curves, the sample grid."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from components.core.files import atomic_write_text
from components.pyramid_flow.schedule import StageTable


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    fig.savefig(partial, dpi=100)
    _pyplot().close(fig)
    partial.replace(path)


def write_stage_table(
    table: StageTable,
    sizes: Sequence[tuple[int, int]],
    tokens: Sequence[int],
    first_steps: Sequence[int],
    video_steps: Sequence[int],
    run_dir: Path,
) -> None:
    """stage_table.csv (full precision) and stage_table.md (rounded, for reading)."""
    rows = [
        {**row, "latent_size": f"{h}x{w}", "tokens_per_unit": n, "first_unit_steps": a, "video_steps": b}
        for row, (h, w), n, a, b in zip(table.rows(), sizes, tokens, first_steps, video_steps)
    ]
    columns = list(rows[0])
    with open(run_dir / ".stage_table.partial.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    (run_dir / ".stage_table.partial.csv").replace(run_dir / "stage_table.csv")

    def cell(value) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = [
        f"Stage table: K = {table.stages}, gamma = {table.gamma:.4g}, {table.train_timesteps} timesteps. "
        "Noise levels are the noise coefficient sigma (1 = pure noise).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    atomic_write_text(run_dir / "stage_table.md", "\n".join(lines) + "\n")


def write_losses(history: Sequence[dict[str, float]], stages: int, run_dir: Path) -> None:
    """losses.csv (every step: loss and each stage's loss in that batch) and losses.png (smoothed per stage)."""
    columns = ["step", "loss"] + [f"loss_stage{k}" for k in range(stages)]
    with open(run_dir / ".losses.partial.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in history:
            writer.writerow([row["step"]] + [repr(row.get(c, math.nan)) for c in columns[1:]])
    (run_dir / ".losses.partial.csv").replace(run_dir / "losses.csv")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    steps = np.array([row["step"] for row in history])
    window = max(1, len(history) // 25)
    for name in columns[1:]:
        values = np.array([row.get(name, math.nan) for row in history], dtype=float)
        keep = np.isfinite(values)
        if keep.sum() >= window:
            smooth = np.convolve(values[keep], np.ones(window) / window, mode="valid")
            ax.plot(steps[keep][window - 1 :], smooth, label=name.replace("loss_", ""), lw=2 if name == "loss" else 1)
    ax.set(
        xlabel="optimizer step",
        ylabel=f"flow-matching MSE (mean of {window})",
        yscale="log",
        title="training loss per stage (stage 0 = lowest resolution)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, run_dir / "losses.png")


def write_sample_grid(generated: torch.Tensor, real: torch.Tensor, run_dir: Path, title: str) -> None:
    """samples.png: one row per clip, one column per unit; real val clips first, then generated ones.

    Inputs are [N, T, C, H, W] images in [0, 1] (1 channel: grey; 3: RGB; else the first channel)."""
    plt = _pyplot()
    rows = torch.cat([real, generated]).clamp(0, 1)
    count, units = rows.shape[:2]
    fig, axes = plt.subplots(count, units, figsize=(1.1 * units, 1.1 * count + 0.5), squeeze=False)
    for i in range(count):
        for j in range(units):
            frame = rows[i, j]
            image = frame.permute(1, 2, 0).numpy() if frame.shape[0] == 3 else frame[0].numpy()
            axes[i, j].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"unit {j}", fontsize=8)
        axes[i, 0].set_ylabel("real" if i < len(real) else "sample", fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    _save(fig, run_dir / "samples.png")
