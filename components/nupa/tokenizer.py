"""NUPA's number tokenizer and number formats (nupa.md §3.6): k digits per token, split direction, reversal,
zero padding and index hints.

A sequence is `BOS a OP b = answer EOS`. Number tokens are all digit strings of length 1..k. Integer-like parts
(integers, numerators, denominators, mantissa integer digits, exponents) are grouped from the right, fractional
parts from the left (`direction="right"`, the official rule); `left` groups every part from the left and
`random` cuts each part into random chunks of length <= k. Reversal reverses a part's digit string (and so its
chunks); `total` reverses the whole number. Zero padding pads each part of the operands to the sample's longest
(integer-like on the left, fractional on the right); the answer is not padded. Index hints put a hint token
before every number token naming its digit place inside the part (integer-like parts count from the units,
fractional parts from the point), so corresponding digits of the operands share a hint whatever the reversal;
hints go on operands only. During training the hint offset is drawn uniformly with offset + part length <=
max_index (the official trick that lets long numbers' hints be seen); at evaluation it is 0 (our fixed policy).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import product
from typing import Literal

from components.core.numbers import OPERAND_TASKS, TASKS, output_representation
from components.nupa.metrics import PART_KINDS

Reverse = Literal["no", "int", "dec", "each", "total"]
Direction = Literal["right", "left", "random"]
SPECIAL = ("<pad>", "<bos>", "<eos>", "=", ".", "/", "e", "-")
PAD, BOS, EOS, EQUALS = 0, 1, 2, 3
MAX_PARTS = 3
SHAPES = {
    "integer": re.compile(r"(\d*)"),
    "float": re.compile(r"(\d*)\.(\d*)"),
    "fraction": re.compile(r"(\d*)/(\d*)"),
    "scientific": re.compile(r"(\d*)\.(\d*)e(-?)(\d*)"),
}


@dataclass(frozen=True)
class NumberFormat:
    digits_per_token: int = 1  # k
    direction: Direction = "right"
    reverse: Reverse = "no"
    pad: bool = False
    index_hint: bool = False
    max_index: int = 30  # hint alphabet size per part


def split_parts(text: str, representation: str) -> tuple[list[str], bool]:
    """Digit strings of each part and whether the exponent is negative."""
    match = SHAPES[representation].fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a {representation}")
    groups = list(match.groups())
    negative = False
    if representation == "scientific":
        negative = groups.pop(2) == "-"
    return groups, negative


def separators(representation: str, negative: bool) -> list[list[str]]:
    """Tokens between consecutive parts."""
    return {
        "integer": [],
        "float": [["."]],
        "fraction": [["/"]],
        "scientific": [["."], ["e", "-"] if negative else ["e"]],
    }[representation]


class NumberTokenizer:
    def __init__(self, fmt: NumberFormat):
        self.fmt = fmt
        numbers = [
            "".join(d) for size in range(1, fmt.digits_per_token + 1) for d in product("0123456789", repeat=size)
        ]
        operators = [f"<{task}>" for task in TASKS]
        hints = [f"<h{part}:{i}>" for part in range(MAX_PARTS) for i in range(fmt.max_index)] if fmt.index_hint else []
        self.vocab = [*SPECIAL, *operators, *numbers, *hints]
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.anchor_ids = (BOS, EQUALS, *(self.index[op] for op in operators))

    def __len__(self) -> int:
        return len(self.vocab)

    def chunks(self, digits: str, kind: str, rng: random.Random | None) -> list[str]:
        k = self.fmt.digits_per_token
        if self.fmt.direction == "random" and k > 1:
            rng = rng or random.Random(digits)  # evaluation: a fixed split per string
            out, start = [], 0
            while start < len(digits):
                size = rng.randint(1, k)
                out.append(digits[start : start + size])
                start += size
            return out
        if kind == "int" and self.fmt.direction == "right":  # from the units digit: 10000 -> 10|000
            head = len(digits) % k
            return ([digits[:head]] if head else []) + [digits[i : i + k] for i in range(head, len(digits), k)]
        return [digits[i : i + k] for i in range(0, len(digits), k)]

    def reversed_kind(self, kind: str) -> bool:
        return self.fmt.reverse == "each" or (self.fmt.reverse, kind) in (("int", "int"), ("dec", "frac"))

    def number(
        self,
        text: str,
        representation: str,
        *,
        pad_to: list[int] | None = None,
        offsets: list[int] | None = None,
        rng: random.Random | None = None,
    ) -> list[str]:
        """Token strings of one number in the format (hints only when `offsets` are given)."""
        parts, negative = split_parts(text, representation)
        kinds = PART_KINDS[representation]
        pieces: list[list[str]] = []
        for index, (digits, kind) in enumerate(zip(parts, kinds)):
            if pad_to is not None:
                digits = digits.rjust(pad_to[index], "0") if kind == "int" else digits.ljust(pad_to[index], "0")
            chunks = self.chunks(digits, kind, rng)
            places = list(range(len(chunks)))
            if kind == "int":
                places.reverse()  # the units chunk is place 0
            items = list(zip(places, chunks))
            if self.reversed_kind(kind):
                items = [(place, chunk[::-1]) for place, chunk in reversed(items)]
            tokens = []
            for place, chunk in items:
                if offsets is not None:
                    tokens.append(f"<h{index}:{min(offsets[index] + place, self.fmt.max_index - 1)}>")
                tokens.append(chunk)
            pieces.append(tokens)
        seps = separators(representation, negative)
        out = list(pieces[0])
        for sep, tokens in zip(seps, pieces[1:]):
            out += sep + tokens
        if self.fmt.reverse == "total":
            out = reverse_tokens(out)
        return out

    def operands(self, task: str, representation: str, a: str, b: str, rng: random.Random | None) -> list[str]:
        """`a OP b =` (or `a OP =`) with padding and hints applied to the operands."""
        pair = task in OPERAND_TASKS
        pad_to = offsets = None
        if pair and (self.fmt.pad or self.fmt.index_hint):
            lengths = [
                [len(p) for p in split_parts(x, representation)[0]] for x in (a, b)
            ]  # part lengths of both operands
            longest = [max(la, lb) for la, lb in zip(*lengths)]
            pad_to = longest if self.fmt.pad else None
        if self.fmt.index_hint:
            longest_part = [max(len(p) for p in split_parts(x, representation)[0]) for x in ((a, b) if pair else (a,))]
            span = max(longest_part)
            top = max(0, self.fmt.max_index - span)
            offsets = [rng.randint(0, top) if rng is not None else 0 for _ in range(MAX_PARTS)]
        tokens = self.number(a, representation, pad_to=pad_to, offsets=offsets, rng=rng) + [f"<{task}>"]
        if b:
            if pair:
                tokens += self.number(b, representation, pad_to=pad_to, offsets=offsets, rng=rng)
            else:  # an index, a digit or a count of figures: a plain integer
                tokens += self.chunks(b, "int", None)
        return tokens + ["="]

    def encode(
        self, task: str, representation: str, a: str, b: str, answer: str | None, rng: random.Random | None = None
    ) -> tuple[list[int], int]:
        """Token ids of `BOS a OP b = [answer EOS]` and the index of the first answer token."""
        tokens = ["<bos>", *self.operands(task, representation, a, b, rng)]
        start = len(tokens)
        if answer is not None:
            tokens += self.number(answer, output_representation(task, representation), rng=rng) + ["<eos>"]
        return [self.index[t] for t in tokens], start

    def decode_answer(self, ids: list[int], representation: str) -> str:
        """The canonical answer string of generated ids: hints and specials dropped, reversal undone."""
        tokens = [self.vocab[i] for i in ids if 0 <= i < len(self.vocab)]
        tokens = [t for t in tokens if t in (".", "/", "e", "-") or t.isdigit()]
        if self.fmt.reverse == "total":
            tokens = reverse_tokens(tokens)
        text = "".join(tokens)
        match = SHAPES[representation].fullmatch(text)
        if match is None:
            return text
        groups = list(match.groups())
        sign = groups.pop(2) if representation == "scientific" else ""
        parts = [
            digits[::-1] if self.reversed_kind(kind) else digits
            for digits, kind in zip(groups, PART_KINDS[representation])
        ]
        if representation == "integer":
            return parts[0]
        if representation == "float":
            return f"{parts[0]}.{parts[1]}"
        if representation == "fraction":
            return f"{parts[0]}/{parts[1]}"
        return f"{parts[0]}.{parts[1]}e{sign}{parts[2]}"


def reverse_tokens(tokens: list[str]) -> list[str]:
    """The whole number reversed: token order and each token's characters (hints stay before their chunk)."""
    out: list[str] = []
    pending_hint = None
    for token in reversed(tokens):
        if token.startswith("<h"):
            continue
        out.append(token[::-1] if token.isdigit() else token)
    if any(t.startswith("<h") for t in tokens):  # re-attach each hint before its chunk, in the new order
        hinted, pending_hint = [], None
        pairs = []
        for token in tokens:
            if token.startswith("<h"):
                pending_hint = token
            else:
                pairs.append((pending_hint, token))
                pending_hint = None
        for hint, token in reversed(pairs):
            if hint is not None:
                hinted.append(hint)
            hinted.append(token[::-1] if token.isdigit() else token)
        return hinted
    return out
