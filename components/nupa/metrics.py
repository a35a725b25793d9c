"""NUPA's metrics (nupa.md §3.4): exact match, digit match with per-part alignment, dlength, answer extraction,
bucket means and the well-learned / performance-preserving digits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from components.core.numbers import buckets

PATTERNS = {
    "integer": re.compile(r"\d+"),
    "float": re.compile(r"\d+\.\d+"),
    "fraction": re.compile(r"\d+/\d+"),
    "scientific": re.compile(r"\d+\.\d+[eE][+-]?\d+"),
}
# which parts are integer-like (compared right-aligned) and which fractional (left-aligned)
PART_KINDS = {
    "integer": ("int",),
    "float": ("int", "frac"),
    "fraction": ("int", "int"),
    "scientific": ("int", "frac", "int"),
}
METRICS = ("exact_match", "digit_match", "dlength")
THRESHOLDS = {  # (well-learned, performance-preserving), higher is better except dlength
    "exact_match": (0.9, 0.1),
    "digit_match": (0.9, 0.5),
    "dlength": (0.1, 1.0),
}


def parts(text: str, representation: str) -> list[str]:
    """Digits of each part; a string that is not a number of the representation has no parts."""
    text = text.strip().lower()
    match = PATTERNS[representation].fullmatch(text) if text else None
    if match is None:
        return []
    if representation == "integer":
        pieces = [text]
    elif representation == "float":
        pieces = text.split(".")
    elif representation == "fraction":
        pieces = text.split("/")
    else:
        mantissa, exponent = text.split("e")
        pieces = [*mantissa.split("."), exponent]
    return ["".join(ch for ch in piece if ch.isdigit()) for piece in pieces]


def extract(text: str, representation: str) -> str:
    """The answer of an LLM's text: after ' = ' (or 'The answer is'), the representation's pattern at the start,
    signs dropped, `E` lower-cased; '' when nothing matches."""
    for marker in (" = ", "The answer is"):
        if marker in text:
            text = text.split(marker)[-1]
            break
    text = text.strip()
    match = PATTERNS[representation].match(text)
    if match is None:
        return ""
    return match.group(0).replace("+", "").replace("-", "").lower()


def score(prediction: str, gold: str, representation: str) -> dict[str, float]:
    """exact_match, digit_match, dlength (text variant: total lengths) and dlength_parts (the from-scratch
    trainer's per-part variant) of one prediction."""
    gold_parts = parts(gold, representation)
    predicted = parts(prediction, representation)
    if not gold_parts:
        raise ValueError(f"gold answer {gold!r} is not a {representation}")
    padded = predicted if predicted else [""] * len(gold_parts)
    matches = 0
    for kind, g, y in zip(PART_KINDS[representation], gold_parts, padded):
        if kind == "int":  # right-aligned: compare from the units digit
            g, y = g[::-1], y[::-1]
        matches += sum(1 for a, b in zip(g, y) if a == b)
    total = sum(len(g) for g in gold_parts)
    return {
        "exact_match": float(predicted == gold_parts),
        "digit_match": matches / total,
        "dlength": float(abs(sum(len(y) for y in predicted) - total)),
        "dlength_parts": float(sum(abs(len(y) - len(g)) for g, y in zip(gold_parts, padded))),
    }


def per_length(scores: Iterable[tuple[int, Mapping[str, float]]]) -> dict[int, dict[str, float]]:
    """Mean of each metric per length, from (length, score) pairs."""
    sums: dict[int, dict[str, float]] = {}
    counts: dict[int, int] = {}
    for length, values in scores:
        bucket = sums.setdefault(length, {})
        for key, value in values.items():
            bucket[key] = bucket.get(key, 0.0) + value
        counts[length] = counts.get(length, 0) + 1
    return {length: {k: v / counts[length] for k, v in sums[length].items()} for length in sorted(sums)}


def digits_reached(means: Mapping[int, Mapping[str, float]], metric: str, threshold: float) -> int:
    """The largest length whose mean meets the threshold (>= for EM/DM, <= for dlength); 0 when none does."""
    lower_is_better = metric.startswith("dlength")
    good = [
        length
        for length, values in means.items()
        if (values[metric] <= threshold if lower_is_better else values[metric] >= threshold)
    ]
    return max(good, default=0)


def summarise(task: str, means: Mapping[int, Mapping[str, float]], max_length: int) -> dict[str, float]:
    """`{task}_{metric}_d{L}`, bucket means `{task}_{metric}_{S|M|L|XL|in|out}` (only buckets with lengths
    measured) and `{task}_{metric}_well_learned_digits` / `_perf_preserving_digits` (the task-level names use
    exact match, as the paper's tables do)."""
    out: dict[str, float] = {}
    for length, values in means.items():
        for metric in METRICS:
            out[f"{task}_{metric}_d{length}"] = values[metric]
    ranges = buckets(max_length)
    groups = {**{name: [span] for name, span in ranges.items()}}
    groups["in"] = [ranges["S"], ranges["M"]]
    groups["out"] = [ranges["L"], ranges["XL"]]
    for name, spans in groups.items():
        lengths = [length for length in means if any(lo <= length <= hi for lo, hi in spans)]
        if not lengths:
            continue
        for metric in METRICS:
            out[f"{task}_{metric}_{name}"] = sum(means[length][metric] for length in lengths) / len(lengths)
    for metric in METRICS:
        well, preserving = THRESHOLDS[metric]
        out[f"{task}_{metric}_well_learned_digits"] = float(digits_reached(means, metric, well))
        out[f"{task}_{metric}_perf_preserving_digits"] = float(digits_reached(means, metric, preserving))
    out[f"{task}_well_learned_digits"] = out[f"{task}_exact_match_well_learned_digits"]
    out[f"{task}_perf_preserving_digits"] = out[f"{task}_exact_match_perf_preserving_digits"]
    return out
