"""The run's figures (matplotlib, Agg): l1/l2 against d on log-log axes with the fitted slope, rho over
training per width, and the quadratic's averaged l1 norm against the horizon."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

GAUSSIAN_RHO = math.sqrt(2.0 / math.pi)  # rho of N(0, I) as d grows (§3.3)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ratio_against_d(
    path: Path, widths: Sequence[Mapping[str, Any]], metrics: Mapping[str, float], optimizer: str
) -> None:
    plt = _pyplot()
    d = np.array([s["d"] for s in widths])
    ratio = np.array([s["ratio_mean"] for s in widths])
    records = [np.array(s["records"]) for s in widths]
    low = ratio - np.array([r[:, 6].min() for r in records])
    high = np.array([r[:, 6].max() for r in records]) - ratio
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    grid = np.geomspace(min(d.min(), 10.0), d.max() * 2, 50)
    ax.plot(grid, np.sqrt(grid), color="0.6", lw=1, ls=":", label="sqrt(d) (upper bound, rho = 1)")
    ax.plot(grid, GAUSSIAN_RHO * np.sqrt(grid), color="0.4", lw=1, ls="--", label="sqrt(2d/pi) (Gaussian)")
    ax.axhline(1.0, color="0.8", lw=1, label="1 (one-hot, rho = 1/sqrt(d))")
    tensors = [(v[0], v[3]) for s in widths for v in s["tensors"].values() if v[0] > 1]
    ax.scatter(
        [t[0] for t in tensors],
        [t[1] for t in tensors],
        s=12,
        color="tab:gray",
        alpha=0.5,
        label=f"per tensor (slope {metrics.get('tensor_slope', math.nan):.2f})",
    )
    ax.errorbar(
        d,
        ratio,
        yerr=[low, high],
        fmt="o",
        color="tab:blue",
        capsize=3,
        label="minibatch gradient (mean, min-max over steps)",
    )
    slope = metrics["loglog_slope"]
    intercept = np.mean(np.log(ratio)) - slope * np.mean(np.log(d))
    ax.plot(grid, np.exp(intercept) * grid**slope, color="tab:blue", lw=1.5, label=f"fit: slope {slope:.3f}")
    if all("true_ratio_mean" in s for s in widths):
        ax.plot(
            d,
            [s["true_ratio_mean"] for s in widths],
            "s",
            color="tab:orange",
            mfc="none",
            label=f"large-batch gradient (slope {metrics.get('loglog_slope_true', math.nan):.3f})",
        )
    for s in widths:
        ax.annotate(
            f"w={int(s['width'])}", (s["d"], s["ratio_mean"]), textcoords="offset points", xytext=(5, -12), fontsize=8
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="d (trainable parameters)",
        ylabel="||g||_1 / ||g||_2",
        title=f"l1/l2 of the full gradient against d ({optimizer})",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def rho_over_steps(path: Path, widths: Sequence[Mapping[str, Any]], optimizer: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    for s in widths:
        records = np.array(s["records"])
        (line,) = ax.plot(records[:, 1], records[:, 7], lw=0.8, label=f"w={int(s['width'])}, d={int(s['d'])}")
        if len(s["true_records"]):
            true = np.array(s["true_records"])
            ax.plot(true[:, 1], true[:, 5], "o", ms=3, color=line.get_color())
    ax.axhline(GAUSSIAN_RHO, color="0.4", ls="--", lw=1, label="sqrt(2/pi) (Gaussian)")
    ax.set(
        xlabel="step within the width",
        ylabel="rho = ||g||_1 / (sqrt(d) ||g||_2)",
        ylim=(0, 1),
        title=f"rho during training ({optimizer}); dots: large-batch gradient",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def quadratic_rate(path: Path, horizons: Sequence[int], averages: Sequence[float]) -> None:
    plt = _pyplot()
    k = np.array(horizons, dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    ax.plot(k, averages, "o-", label="(1/K) sum ||grad f(x_k)||_1")
    ax.plot(k, averages[0] * (k / k[0]) ** -0.25, "--", color="0.5", label="K^(-1/4) from the first point")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="horizon K",
        ylabel="averaged true-gradient l1 norm",
        title="AdamW, beta1 = 1 - K^-1/2, beta2 = 1 - 1/K, eta = K^-3/4",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
