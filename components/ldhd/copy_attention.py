"""Check 4 of ldhd.md §6: position-only copy attention on unaligned copy. Output step k (predicting x_k) attends
over the input digits x_1..x_n with weights softmax_j B[phi(query, j)] and predicts sum_j alpha_kj onehot(x_j).
RPE: phi = p(query) - p(j), token distance, which is n for the right source (the length-dependent nuisance).
RPE-Square (hard): phi = r(query) - r(j) with r the offset from the segment's anchor (BOS for inputs, '=' for the
answer), which is -1 for the right source at every length."""

from __future__ import annotations

import numpy as np


def offsets(n: int, square: bool) -> np.ndarray:
    """phi [n queries, n keys] for `BOS x_1..x_n = y_1..y_n`: query k (k = 1..n) is the token before y_k."""
    key_position = np.arange(1, n + 1)  # x_j at position j (BOS at 0)
    query_position = n + np.arange(1, n + 1)  # '=' at n + 1 predicts y_1, ..., y_{k-1} at n + k predicts y_k
    if square:
        key_relative = key_position  # offset from BOS
        query_relative = query_position - (n + 1)  # offset from '='
        return query_relative[:, None] - key_relative[None, :]
    return query_position[:, None] - key_position[None, :]


class PositionOnlyCopy:
    """One head, no content: a bias table B over clipped offsets phi, zero-initialised (unseen offsets stay
    neutral, ldhd.md §8)."""

    def __init__(self, square: bool, clip: int = 32):
        self.square, self.clip = square, clip
        self.table = np.zeros(2 * clip + 1)

    def index(self, n: int) -> np.ndarray:
        return np.clip(offsets(n, self.square), -self.clip, self.clip) + self.clip

    def attention(self, n: int) -> np.ndarray:
        """alpha [n, n]: the same for every sequence of length n (position-only)."""
        logits = self.table[self.index(n)]
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return weights / weights.sum(axis=1, keepdims=True)

    def predict(self, digits: np.ndarray) -> np.ndarray:
        """Per-output probabilities over 10 digits [B, n, 10] for input digits [B, n]."""
        return np.einsum("kj,bjd->bkd", self.attention(digits.shape[1]), np.eye(10)[digits])


def train_copy(
    square: bool, train_max: int = 8, sequences: int = 3000, batch: int = 16, lr: float = 0.05, seed: int = 0
) -> PositionOnlyCopy:
    """Adam (numpy) on batches of `batch` same-length sequences, lengths U{1..train_max}, on the NLL of the
    mixture's probability of the right digit, -log sum_j alpha_kj [x_j = x_k] (3000 sequences as the spec)."""
    rng = np.random.default_rng(seed)
    model = PositionOnlyCopy(square)
    first, second = np.zeros_like(model.table), np.zeros_like(model.table)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, sequences // batch + 1):
        n = int(rng.integers(1, train_max + 1))
        digits = rng.integers(0, 10, size=(batch, n))
        alpha = model.attention(n)
        match = (digits[:, :, None] == digits[:, None, :]).astype(float)  # [B, k, j]: x_j equals the target x_k
        probability = np.einsum("kj,bkj->bk", alpha, match) + 1e-9
        # d(-log p_k)/d logit_kj = alpha_kj - alpha_kj [x_j = x_k] / p_k, averaged over the batch and the outputs
        grad_logits = (alpha[None] - alpha[None] * match / probability[..., None]).mean(axis=0) / n
        grad = np.bincount(model.index(n).ravel(), weights=grad_logits.ravel(), minlength=model.table.size)
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad**2
        model.table -= lr * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + eps)
    return model


def exact_match(model: PositionOnlyCopy, lengths: range, per_length: int = 100, seed: int = 1) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    out = {}
    for n in lengths:
        digits = rng.integers(0, 10, size=(per_length, n))
        out[n] = float(np.mean(np.all(model.predict(digits).argmax(-1) == digits, axis=1)))
    return out


def copy_check(seed: int = 0, sequences: int = 3000) -> dict[str, float]:
    """RPE vs RPE-Square exact match in domain (1-8) and beyond (9-16)."""
    out = {}
    for name, square in (("rpe", False), ("rpe_square", True)):
        acc = exact_match(train_copy(square, sequences=sequences, seed=seed), range(1, 17), seed=seed + 1)
        out[f"copy_{name}_em_in"] = float(np.mean([acc[n] for n in range(1, 9)]))
        out[f"copy_{name}_em_out"] = float(np.mean([acc[n] for n in range(9, 17)]))
        out[f"copy_{name}_em_min_out"] = min(acc[n] for n in range(9, 17))
    return out
