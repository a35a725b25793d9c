"""The length-generalisation tasks of ldhd.md §3.5, generated from a seed (no data stage: every batch is a fresh
draw, and the test lengths beyond train_max_length are never drawn in training).

unaligned_copy: `BOS x_1..x_n = x_1..x_n EOS`; urf_addition: `BOS a_0..a_{n-1} + b_0..b_{m-1} = c_0..c_K EOS`,
least-significant digit first, not zero padded (the unaligned format RPE-Square is built for)."""

from __future__ import annotations

import numpy as np

DIGITS = 10
BOS, PLUS, EQUALS, EOS, PAD = 10, 11, 12, 13, 14
VOCAB = 15
ANCHORS = (BOS, PLUS, EQUALS)  # RPE-Square's separators
TASKS = ("unaligned_copy", "urf_addition")


def reversed_digits(value: int) -> list[int]:
    return [int(c) for c in str(value)[::-1]]


def example(task: str, rng: np.random.Generator, length: int, exact: bool) -> tuple[list[int], list[int]]:
    """(prompt up to and including '=', answer + EOS) of one instance. `length` is n for copy and max(n, m) for
    addition; exact=True puts one operand at exactly that length (evaluation), else every operand is U{1..length}."""
    if task == "unaligned_copy":
        n = length if exact else int(rng.integers(1, length + 1))
        x = rng.integers(0, DIGITS, size=n).tolist()
        return [BOS, *x, EQUALS], [*x, EOS]
    n, m = (int(v) for v in rng.integers(1, length + 1, size=2))
    if exact:
        n, m = (length, m) if rng.random() < 0.5 else (n, length)
    a, b = (operand(rng, k) for k in (n, m))
    return [BOS, *reversed_digits(a), PLUS, *reversed_digits(b), EQUALS], [*reversed_digits(a + b), EOS]


def operand(rng: np.random.Generator, digits: int) -> int:
    """A uniform integer with exactly `digits` digits (no leading zero unless it is 0 itself)."""
    if digits == 1:
        return int(rng.integers(0, 10))
    rest = "".join(str(d) for d in rng.integers(0, 10, size=digits - 1))  # digit by digit: no int64 overflow
    return int(f"{int(rng.integers(1, 10))}{rest}")


def instance_length(task: str, prompt: list[int]) -> int:
    """The problem size of a prompt: n for copy, the longer operand for addition."""
    body = prompt[1:-1]
    if task == "unaligned_copy":
        return len(body)
    cut = body.index(PLUS)
    return max(cut, len(body) - cut - 1)


def training_batch(task: str, rng: np.random.Generator, batch: int, train_max: int):
    """(inputs, targets, loss mask) [B, T-1]: right-padded sequences; the loss covers the answer digits and EOS
    only (ldhd.md §3.6: loss only on the answer; §8: include the final carry and EOS)."""
    pairs = [example(task, rng, train_max, exact=False) for _ in range(batch)]
    width = max(len(p) + len(a) for p, a in pairs)
    tokens = np.full((batch, width), PAD, dtype=np.int64)
    mask = np.zeros((batch, width - 1), dtype=bool)
    for row, (prompt, answer) in enumerate(pairs):
        tokens[row, : len(prompt) + len(answer)] = prompt + answer
        mask[row, len(prompt) - 1 : len(prompt) + len(answer) - 1] = True  # target t+1 is an answer token or EOS
    return tokens[:, :-1], tokens[:, 1:], mask


def test_set(task: str, seed: int, max_length: int, per_length: int) -> list[tuple[int, list[int], list[int]]]:
    """(length, prompt, answer) for every length 1..max_length, from a stream of its own (seed, 'test')."""
    rng = np.random.default_rng([seed, 7357])
    return [
        (length, *example(task, rng, length, exact=True))
        for length in range(1, max_length + 1)
        for _ in range(per_length)
    ]
