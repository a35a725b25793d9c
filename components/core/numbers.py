"""NUPA's number generator (nupa.md §3.1-3.3): four representations, 17 tasks, the 41 valid combinations,
samplers per length, exact answers, and decontaminated train/valid/test splits.

Every answer is computed with exact arithmetic (big ints and `fractions.Fraction`), never with float. Numbers
travel as canonical strings: Integer `123`, Float `12.05` (at least one fractional digit, no trailing zero
beyond it), Fraction `12/5` (irreducible, `n/1` for whole numbers), Scientific `1.23e4` (mantissa in [1, 10),
at least one fractional digit, exponent may be negative after a conversion of a float below 1).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import Literal

REPRESENTATIONS = ("integer", "float", "fraction", "scientific")
Representation = Literal["integer", "float", "fraction", "scientific"]
TASKS = (
    "add", "sub", "multiply", "truediv", "floordiv", "mod", "max", "min",
    "digit_max", "digit_min", "digit_add", "get_digit", "length", "count",
    "to_float", "to_scientific", "sig_fig",
)  # fmt: skip
Rounding = Literal["official", "exact"]

# the 41 valid (task, representation) pairs of nupa.md §3.2: Integer 16, Float 12, Fraction 7, Scientific 6
VALID: dict[str, tuple[str, ...]] = {
    "integer": (
        "add", "sub", "multiply", "truediv", "floordiv", "mod", "max", "min",
        "digit_max", "digit_min", "digit_add", "get_digit", "length", "count", "to_scientific", "sig_fig",
    ),
    "float": (
        "add", "sub", "multiply", "max", "min", "digit_max", "digit_min", "digit_add", "get_digit", "length",
        "to_scientific", "sig_fig",
    ),
    "fraction": ("add", "sub", "multiply", "truediv", "max", "min", "to_float"),
    "scientific": ("add", "sub", "multiply", "max", "min", "to_float"),
}  # fmt: skip
COMBINATIONS = tuple((task, rep) for rep in REPRESENTATIONS for task in VALID[rep])

# the official length regimes (benchmark_config.py): the pair dataset each task reuses
ADD_REGIME = {"train": (1, 8), "test": (3, 20), "max": 20}
COMPARE_REGIME = {"train": (1, 20), "test": (5, 100), "max": 100}
ADD_TASKS = ("add", "sub", "multiply", "truediv", "floordiv", "mod")
OPERAND_TASKS = (
    "add",
    "sub",
    "multiply",
    "truediv",
    "floordiv",
    "mod",
    "max",
    "min",
    "digit_max",
    "digit_min",
    "digit_add",
)  # fmt: skip  (b is a number of the same representation)
ONE_OPERAND = ("length", "to_float", "to_scientific")


def output_representation(task: str, representation: str) -> str:
    if task == "truediv":
        return "fraction"
    if task in ("floordiv", "mod", "get_digit", "length", "count"):
        return "integer"
    if task == "to_float":
        return "float"
    if task in ("to_scientific", "sig_fig"):
        return "scientific"
    return representation


def regime(task: str, representation: str) -> dict:
    """Train/test length ranges and max length of the pair dataset the task reuses (nupa.md §3.3)."""
    if task in ADD_TASKS or representation == "fraction":
        test = (1, 20) if representation == "fraction" else ADD_REGIME["test"]
        return {"train": ADD_REGIME["train"], "test": test, "max": 20}
    test = (3, 100) if representation in ("float", "scientific") else COMPARE_REGIME["test"]
    return {"train": COMPARE_REGIME["train"], "test": test, "max": 100}


def buckets(max_length: int) -> dict[str, tuple[int, int]]:
    """Reporting buckets of text_model/metrics.py; in = S and M, out = L and XL."""
    if max_length <= 20:
        return {"S": (1, 4), "M": (5, 8), "L": (9, 14), "XL": (15, 20)}
    return {"S": (1, 10), "M": (11, 20), "L": (21, 60), "XL": (61, 100)}


# --- canonical strings <-> exact values
def value(text: str, representation: str) -> Fraction:
    """The exact value of a canonical number string."""
    if representation == "fraction":
        numerator, denominator = text.split("/")
        return Fraction(int(numerator), int(denominator))
    if representation == "scientific":
        mantissa, exponent = text.split("e")
        return Fraction(mantissa) * Fraction(10) ** int(exponent)
    return Fraction(text)


def terminating_digits(x: Fraction) -> tuple[int, int]:
    """(n, k) with x = n / 10^k exactly; x must have a terminating decimal expansion."""
    k = 0
    while x.denominator != 1:
        x *= 10
        k += 1
        if k > 10_000:
            raise ValueError(f"{x} has no terminating decimal expansion")
    return x.numerator, k


def format_float(x: Fraction) -> str:
    n, k = terminating_digits(x)
    text = str(n).rjust(k + 1, "0")
    integer, fractional = text[: len(text) - k], text[len(text) - k :].rstrip("0")
    return f"{integer}.{fractional or '0'}"


def format_fraction(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}"


def format_scientific(x: Fraction) -> str:
    """x > 0 (or 0) with all significant digits: mantissa in [1, 10), trailing zeros dropped."""
    if x == 0:
        return "0.0e0"
    n, k = terminating_digits(x)
    digits = str(n)
    stripped = digits.rstrip("0")
    exponent = len(digits) - 1 - k
    return f"{stripped[0]}.{stripped[1:] or '0'}e{exponent}"


def format_value(x: Fraction, representation: str) -> str:
    if representation == "integer":
        return str(int(x))
    if representation == "float":
        return format_float(x)
    if representation == "fraction":
        return format_fraction(x)
    return format_scientific(x)


def number_length(text: str, representation: str) -> int:
    """The code property `digit` (nupa.md §3.1): digits for Integer, fractional digits for Float and for
    Scientific's mantissa, max(len num, len den) for Fraction."""
    if representation == "integer":
        return len(text)
    if representation == "float":
        return len(text.split(".")[1])
    if representation == "fraction":
        return max(len(part) for part in text.split("/"))
    return len(text.split("e")[0].split(".")[1])


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


# --- samplers (nupa.md §3.1)
def uniform_digits(rng: random.Random, length: int) -> int:
    return rng.randint(0, 9) if length == 1 else rng.randint(10 ** (length - 1), 10**length - 1)


def fractional_digits(rng: random.Random, length: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(length - 1)) + str(rng.randint(1, 9))


def sample_number(rng: random.Random, representation: str, length: int) -> str:
    if representation == "integer":
        return str(uniform_digits(rng, length))
    if representation == "float":
        return f"{uniform_digits(rng, rng.randint(1, length))}.{fractional_digits(rng, length)}"
    if representation == "fraction":
        while True:
            numerator = rng.randint(0, 10**length - 1)
            denominator = rng.randint(10 ** (length - 1) if length > 1 else 1, 10**length - 1)
            divisor = gcd(numerator, denominator)
            numerator, denominator = numerator // divisor, denominator // divisor
            if len(str(denominator)) == length:
                return f"{numerator}/{denominator}"
    return f"{rng.randint(1, 9)}.{fractional_digits(rng, length)}e{rng.randint(0, 99)}"


def truncate(text: str, digits: int) -> str:
    """Keep at most `digits` leading digits of an integer string (never empty, never leading zeros)."""
    return str(int(text[:digits]))


# --- sig_fig (nupa.md §3.2): the official, bug-compatible rounding and the exact one
def significant(x: Fraction, figures: int, rounding: str) -> str:
    if x == 0:
        return f"0.{'0' * (figures - 1)}e0"
    n, k = terminating_digits(x)
    digits = str(n)
    exponent = len(digits) - 1 - k
    kept = int(digits[:figures].ljust(figures, "0"))
    rest = digits[figures:]
    if rounding == "official":
        # the released code compares the next digit (a character) with the int 5, so only d > 5 rounds up
        if rest and int(rest[0]) > 5:
            kept += 1
    else:
        remainder = Fraction(int(rest), 10 ** len(rest)) if rest else Fraction(0)
        if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and kept % 2 == 1):
            kept += 1
    text = str(kept)
    if len(text) > figures:  # 9.99 rounded up to 10.0: one more order of magnitude
        exponent += 1
        text = text[:figures]
    return f"{text[0]}.{text[1:]}e{exponent}"


# --- digit-wise tasks: align integer parts from the right and fractional parts from the left
def split_float(text: str) -> tuple[str, str]:
    integer, _, fractional = text.partition(".")
    return integer, fractional


def digitwise(a: str, b: str, representation: str, op) -> str:
    (ai, af), (bi, bf) = split_float(a), split_float(b)
    width, frac_width = max(len(ai), len(bi)), max(len(af), len(bf))
    integer = "".join(str(op(int(x), int(y))) for x, y in zip(ai.rjust(width, "0"), bi.rjust(width, "0")))
    fractional = "".join(str(op(int(x), int(y))) for x, y in zip(af.ljust(frac_width, "0"), bf.ljust(frac_width, "0")))
    if representation == "integer":
        return str(int(integer))
    return format_float(Fraction(f"{int(integer)}.{fractional}"))


DIGIT_OPS = {"digit_max": max, "digit_min": min, "digit_add": lambda x, y: (x + y) % 10}


@dataclass(frozen=True)
class Sample:
    task: str
    representation: str
    length: int
    a: str
    b: str  # "" for one-operand tasks; an index or a digit for get_digit / count; figures for sig_fig
    answer: str

    def key(self) -> tuple[str, str]:
        return (self.a, self.b)


def make_pair(rng: random.Random, representation: str, length: int, low: int) -> tuple[str, str]:
    """a of length L, b of length ~ U{low..L}; with prob 1/2 the order is swapped when the lengths differ."""
    a = sample_number(rng, representation, length)
    b_length = rng.randint(min(low, length), length)
    b = sample_number(rng, representation, b_length)
    if b_length != length and rng.random() < 0.5:
        a, b = b, a
    return a, b


def below_one(text: str) -> str:
    numerator, denominator = (int(part) for part in text.split("/"))
    if numerator > denominator:
        numerator, denominator = denominator, numerator
    return f"{numerator}/{denominator}"


def preprocess_and_answer(
    rng: random.Random, task: str, representation: str, a: str, b: str, length: int, rounding: str
) -> tuple[str, str, str]:
    """Task preprocessing (operand order, truncations, index draws) then the exact answer: (a, b, answer)."""
    out = output_representation(task, representation)
    if representation == "scientific" and task in ("add", "sub"):
        mantissa, exponent = a.split("e")
        gap = rng.randint(-5, 5)  # |e_a - e_b| <= 5 keeps the answer's mantissa short
        b = f"{b.split('e')[0]}e{min(99, max(0, int(exponent) + gap))}"
    if task in ("sub", "floordiv", "mod") and value(a, representation) < value(b, representation):
        a, b = b, a
    while task == "sub" and representation == "scientific" and value(a, representation) - value(b, representation) < 1:
        mantissa, exponent = a.split("e")
        a = f"{mantissa}e{int(exponent) + 1}"  # a - b >= 1 keeps the answer's exponent non-negative
    if task == "mod":
        b = truncate(b, int(0.7 * len(a)) + 1)
    if task in ("max", "min") and representation == "fraction":
        a, b = below_one(a), below_one(b)
    x, y = (
        (value(a, representation), value(b, representation))
        if task in OPERAND_TASKS
        else (value(a, representation), None)
    )
    if task in ("truediv", "floordiv", "mod") and y == 0:
        b, y = "1" if representation == "integer" else "1/1", Fraction(1)
    if task == "add":
        answer = format_value(x + y, out)
    elif task == "sub":
        answer = format_value(x - y, out)
    elif task == "multiply":
        answer = format_value(x * y, out)
    elif task == "truediv":
        answer = format_fraction(x / y)
    elif task == "floordiv":
        answer = str(int(x) // int(y))
    elif task == "mod":
        answer = str(int(x) % int(y))
    elif task in ("max", "min"):
        answer = a if (x >= y) == (task == "max") else b
    elif task in DIGIT_OPS:
        answer = digitwise(a, b, representation, DIGIT_OPS[task])
    elif task == "get_digit":
        digits = digits_of(a)
        b = str(rng.randint(0, len(digits) - 1))
        answer = digits[int(b)]
    elif task == "length":
        b, answer = "", str(len(digits_of(a)))
    elif task == "count":
        b = str(rng.randint(0, 9))
        answer = str(digits_of(a).count(b))
    elif task == "to_float":
        b, answer = "", format_float(x)
    elif task == "to_scientific":
        b, answer = "", format_scientific(x)
    elif task == "sig_fig":
        digits = len(digits_of(a).lstrip("0")) or 1
        b = str(rng.randint(2, max(2, digits)))
        answer = significant(x, int(b), rounding)
    else:
        raise ValueError(f"unknown task {task}")
    return a, b, answer


def sample_operands(rng: random.Random, task: str, representation: str, length: int, low: int) -> tuple[str, str]:
    if task == "to_float" and representation == "fraction":
        numerator = rng.randint(0, 10**length - 1)
        denominator = 2 ** rng.randint(0, length) * 5 ** rng.randint(0, length)
        return format_fraction(Fraction(numerator, denominator)), ""
    if task == "to_float":  # scientific -> float: the exponent redrawn in {0..min(e, L)} keeps the float short
        mantissa, exponent = sample_number(rng, representation, length).split("e")
        return f"{mantissa}e{rng.randint(0, min(int(exponent), length))}", ""
    if task == "to_scientific" and representation == "integer":
        number = sample_number(rng, representation, length)
        zeros = rng.randint(0, len(number) - 1) if len(number) > 1 else 0  # trailing zeros injected
        return number[: len(number) - zeros] + "0" * zeros, ""
    if task in OPERAND_TASKS:
        return make_pair(rng, representation, length, low)
    return sample_number(rng, representation, length), ""


def generate(
    task: str,
    representation: str,
    lengths: tuple[int, int],
    per_length: int,
    seed: int,
    low: int | None,
    rounding: str = "official",
) -> Iterator[Sample]:
    """`per_length` samples for every length in [lengths[0], lengths[1]] (before deduplication). `low` is the
    smallest b-length (the train minimum) or None for valid/test, where b-length >= floor(L/2)."""
    if task not in VALID.get(representation, ()):
        raise ValueError(f"task {task} is not valid for representation {representation}")
    for length in range(lengths[0], lengths[1] + 1):
        rng = random.Random(f"{seed}-{task}-{representation}-{length}")
        b_low = low if low is not None else max(1, length // 2)
        for _ in range(per_length):
            a, b = sample_operands(rng, task, representation, length, b_low)
            a, b, answer = preprocess_and_answer(rng, task, representation, a, b, length, rounding)
            yield Sample(task, representation, length, a, b, answer)


def deduplicate(samples: Iterator[Sample], seen: set[tuple[str, str]]) -> tuple[list[Sample], int]:
    """Drop exact duplicates and anything whose (a, b) is in `seen` (the earlier splits); `seen` grows."""
    kept, dropped = [], 0
    for sample in samples:
        if sample.key() in seen:
            dropped += 1
            continue
        seen.add(sample.key())
        kept.append(sample)
    return kept, dropped


def splits(
    task: str,
    representation: str,
    *,
    train_lengths: tuple[int, int],
    test_lengths: tuple[int, int],
    train_per_length: int,
    test_per_length: int,
    valid_per_length: int,
    seed: int,
    rounding: str = "official",
) -> tuple[dict[str, list[Sample]], dict[str, int]]:
    """Train, then valid, then test; each later split drops what an earlier one holds (after preprocessing)."""
    seen: set[tuple[str, str]] = set()
    out, dropped = {}, {}
    plan = (
        ("train", train_lengths, train_per_length, train_lengths[0], seed),
        ("val", test_lengths, valid_per_length, None, seed + 1),
        ("test", test_lengths, test_per_length, None, seed + 2),
    )
    for split, lengths, per_length, low, split_seed in plan:
        generated = generate(task, representation, lengths, per_length, split_seed, low, rounding)
        out[split], dropped[split] = deduplicate(generated, seen)
    return out, dropped
