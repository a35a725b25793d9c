"""The curves of hypergraph.md §3.6 as PNGs in the run directory (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rate_curves(path: Path, samples: list[int], tv: dict[int, list[float]], theory: dict[int, list[float]]) -> None:
    """E d_TV against N per M (log-log), beside the §3.4 prediction and the sqrt(M/N) reference."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for m, values in tv.items():
        (line,) = ax.loglog(samples, values, "o-", label=f"M = {m}, measured")
        ax.loglog(samples, theory[m], "--", color=line.get_color(), alpha=0.7, label=f"M = {m}, theory")
    ax.set(xlabel="samples N", ylabel="E d_TV(H_hat, H0)", title="recovery rate (slope -1/2 expected)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def exact_curves(
    path: Path, samples: list[int], measured: dict[int, list[float]], predicted: dict[int, list[float]]
) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for m, values in measured.items():
        (line,) = ax.semilogx(samples, values, "o-", label=f"M = {m}, measured")
        ax.semilogx(samples, predicted[m], "--", color=line.get_color(), alpha=0.7, label=f"M = {m}, prod(1-(1-w)^N)")
    ax.set(xlabel="samples N", ylabel="P(exact structure recovery)", ylim=(-0.03, 1.03), title="exact recovery")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def alignment_curve(path: Path, samples: list[int], accuracy: list[float], control: float) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.semilogx(samples, accuracy, "o-", label="random hypergraph")
    ax.axhline(control, color="grey", linestyle=":", label="symmetric control (cycle)")
    ax.set(xlabel="samples per modality", ylabel="alignment accuracy", ylim=(-0.03, 1.03), title="entity alignment")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
