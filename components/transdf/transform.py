"""The label transform of TransDF (transdf.md §3.2-3.3): per channel, per-step standardisation of the training
labels, then PCA over the time axis; the loss compares prediction and label on the top-K components.

Fitted once, on training labels only, in float64 (as numpy/sklearn fit it); applied in the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LabelTransform:
    components: np.ndarray  # C [D, K, P]: orthonormal rows (principal directions), by decreasing variance
    mean: np.ndarray  # M [P, D]: per-step mean of the training labels
    std: np.ndarray  # Sd [P, D]: per-step population std of the training labels
    explained: np.ndarray  # [D, P]: explained-variance ratio of every component (before truncation)

    @property
    def rank(self) -> int:
        return self.components.shape[1]

    def apply(self, sequences: np.ndarray) -> np.ndarray:
        """z(S)[n, k, d] = sum_t C[d, k, t] (S[n, t, d] - M[t, d]) / Sd[t, d] for S [N, P, D]."""
        return np.einsum("ntd,dkt->nkd", (sequences - self.mean) / self.std, self.components)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"components": self.components, "mean": self.mean, "std": self.std, "explained": self.explained}


def components_kept(pred_len: int, rank_ratio: float) -> int:
    """K = int(P * ratio) for a ratio in (0, 1] (Python int(), as the official code), else min(ratio, P)."""
    k = int(pred_len * rank_ratio) if rank_ratio <= 1 else min(int(rank_ratio), pred_len)
    return max(k, 1)


def fit_label_transform(labels: np.ndarray, rank_ratio: float) -> LabelTransform:
    """labels [N, P, D] (training windows' labels, already scaled per channel) -> the truncated transform."""
    labels = np.asarray(labels, dtype=np.float64)
    windows, pred_len, channels = labels.shape
    if windows < 2:
        raise ValueError(f"fitting the label transform needs >= 2 training windows, got {windows}")
    mean = labels.mean(axis=0)
    std = labels.std(axis=0)  # population std, as sklearn's StandardScaler
    std = np.where(std > 0, std, 1.0)  # a constant label step carries no variance to rescale
    k = components_kept(pred_len, rank_ratio)
    components = np.empty((channels, k, pred_len))
    explained = np.empty((channels, pred_len))
    for d in range(channels):
        standardised = (labels[:, :, d] - mean[:, d]) / std[:, d]
        _, singular, vt = np.linalg.svd(standardised - standardised.mean(axis=0), full_matrices=False)
        variance = np.zeros(pred_len)
        variance[: len(singular)] = singular**2
        explained[d] = variance / variance.sum()
        basis = np.zeros((pred_len, pred_len))
        basis[: len(vt)] = vt  # fewer windows than P: the missing directions carry no training variance
        components[d] = basis[:k]
    return LabelTransform(components, mean, std, explained)


def transform_diagnostics(transform: LabelTransform, labels: np.ndarray) -> dict[str, float]:
    """How decorrelated the kept components are on the training labels, and how correlated the raw steps are."""
    z = transform.apply(labels)  # [N, K, D]
    offdiag_max, raw_mean = 0.0, 0.0
    for d in range(labels.shape[2]):
        if transform.rank > 1:
            corr = np.corrcoef(z[:, :, d], rowvar=False)
            offdiag_max = max(offdiag_max, float(np.abs(corr - np.diag(np.diag(corr))).max()))
        raw = np.corrcoef(labels[:, :, d], rowvar=False)
        mask = ~np.eye(len(raw), dtype=bool)
        raw_mean += float(np.abs(raw[mask]).mean()) / labels.shape[2]
    return {
        "transform/rank": float(transform.rank),
        "transform/explained_var_topK": float(transform.explained[:, : transform.rank].sum(axis=1).mean()),
        "transform/offdiag_corr_max": offdiag_max,
        "transform/label_corr_mean": raw_mean,
    }


def transdf_loss(
    pred: torch.Tensor,
    label: torch.Tensor,
    components: torch.Tensor,
    std: torch.Tensor,
    rec_lambda: float,
    distance: str = "l1",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rec_lambda x TMSE + (1 - rec_lambda) x distance(z(pred), z(label)); returns (loss, tmse, transformed).

    z(pred) - z(label) = sum_t C[d, k, t] (pred - label)[t, d] / Sd[t, d]: the mean M cancels."""
    tmse = (pred - label).pow(2).mean()
    z = torch.einsum("btd,dkt->bkd", (pred - label) / std, components)
    transformed = z.abs().mean() if distance == "l1" else z.pow(2).mean()
    return rec_lambda * tmse + (1.0 - rec_lambda) * transformed, tmse, transformed
