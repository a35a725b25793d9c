"""The singular-value spectrum (what the paper reads the number of bases from) and the discovered bases."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spectrum(path: Path, sigma: np.ndarray, detected: int, gauge: int, title: str, shown: int = 30) -> None:
    plt = _pyplot()
    values = np.asarray(sigma)[:shown]
    floor = max(float(np.max(sigma)), 1e-300) * 1e-12
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=100)
    index = np.arange(1, len(values) + 1)
    ax.semilogy(index, np.maximum(values, floor), "o-", ms=4)
    if gauge:
        ax.semilogy(index[:gauge], np.maximum(values[:gauge], floor), "s", color="gray", label="gauge (skipped)")
    ax.axvline(detected + 0.5, color="tab:red", ls="--", label=f"gap rule: D = {detected}")
    ax.set(xlabel="index (ascending)", ylabel="singular value", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bases(path: Path, blocks: dict[str, np.ndarray], title: str) -> None:
    """One row per discovered basis, one column per generator block."""
    plt = _pyplot()
    names = list(blocks)
    count = len(next(iter(blocks.values())))
    fig, axes = plt.subplots(
        count, len(names), figsize=(1.8 * len(names) + 1, 1.7 * count + 0.6), dpi=100, squeeze=False
    )
    scale = max(float(np.max(np.abs(b))) for b in blocks.values()) or 1.0
    for row in range(count):
        for col, name in enumerate(names):
            ax = axes[row, col]
            ax.imshow(blocks[name][row], cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(f"basis {row + 1}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
