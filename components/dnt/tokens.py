"""Token streams for L-DNT, all built deterministically without a download.

- `stdlib`: the source files of a fixed list of pure-Python standard-library modules (code, comments and
  docstrings), byte-tokenised (vocabulary 256). Which bytes these are depends on the Python version; the
  run records the stream's SHA-256. The last 10% of the concatenation is the validation split.
- `markov`: dnt.md §6's order-2 Markov chain over S symbols with a fixed random transition table, whose
  entropy rate (the lowest achievable validation loss) is computed exactly.
- `bin`: nanoGPT's format (train.bin / val.bin of uint16 GPT-2 BPE tokens), e.g. OpenWebText.

Batches are windows at positions drawn from `default_rng([seed, step])`, so global batch `step` is a pure
function of (seed, step): resume needs only the step, and rank r of W keeps rows r::W.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core.errors import DataError

# Long-lived, pure-Python modules with plenty of English in docstrings and comments (~1 MB in Python 3.11).
STDLIB_MODULES = (
    "argparse",
    "calendar",
    "collections",
    "configparser",
    "csv",
    "dataclasses",
    "difflib",
    "email.message",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "gettext",
    "heapq",
    "inspect",
    "json.decoder",
    "json.encoder",
    "logging",
    "mailbox",
    "pathlib",
    "pydoc",
    "random",
    "shutil",
    "statistics",
    "string",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest.case",
    "zipfile",
)
MARKOV_TABLE_SEED = 20250723  # fixed: the chain is part of the task, not of the run's seed
MARKOV_CONCENTRATION = 0.2  # Dirichlet alpha: peaked next-symbol distributions, so there is structure to learn
MARKOV_LENGTH = 1 << 18  # tokens in the stream (train 90%, val 10%)
VAL_FRACTION = 0.1


@dataclass
class TokenData:
    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    source: str
    facts: dict = field(default_factory=dict)  # recorded in the run directory (sha256, sizes, entropy rate)

    def batch(
        self, step: int, batch_size: int, seq_len: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and next-token targets [batch_size / world_size, seq_len] of global batch `step`."""
        starts = np.random.default_rng([seed, step]).integers(0, len(self.train) - seq_len - 1, size=batch_size)
        windows = self.train[starts[rank::world_size, None] + np.arange(seq_len + 1)].astype(np.int64)
        return windows[:, :-1], windows[:, 1:]

    def val_windows(self, count: int, seq_len: int) -> np.ndarray:
        """Up to `count` non-overlapping windows of seq_len + 1 tokens from the start of the val split."""
        count = min(count, (len(self.val) - 1) // seq_len)
        if count < 1:
            raise DataError(
                f"the {self.source} validation split ({len(self.val)} tokens) is shorter than "
                f"one window of seq_len {seq_len} + 1"
            )
        return self.val[np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)].astype(np.int64)


def split(stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cut = int(len(stream) * (1 - VAL_FRACTION))
    return stream[:cut], stream[cut:]


def stdlib_bytes() -> bytes:
    parts = []
    for name in STDLIB_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise DataError(f"standard-library module '{name}' has no source file here; tokens=stdlib needs it")
        parts.append(Path(spec.origin).read_bytes())
    return b"\n".join(parts)


def stdlib_tokens() -> TokenData:
    text = stdlib_bytes()
    train, val = split(np.frombuffer(text, dtype=np.uint8))
    return TokenData(
        train,
        val,
        256,
        "stdlib",
        {"sha256": hashlib.sha256(text).hexdigest(), "bytes": len(text), "modules": list(STDLIB_MODULES)},
    )


def markov_table(symbols: int) -> np.ndarray:
    """P[a, b, c] = P(next = c | previous two = a, b)."""
    rng = np.random.default_rng(MARKOV_TABLE_SEED)
    return rng.dirichlet(np.full(symbols, MARKOV_CONCENTRATION), size=(symbols, symbols))


def pair_stationary(table: np.ndarray, iterations: int = 10000, tol: float = 1e-15) -> np.ndarray:
    """Stationary distribution pi[a, b] of the pair chain (a, b) -> (b, c), by power iteration."""
    symbols = table.shape[0]
    pi = np.full((symbols, symbols), 1.0 / symbols**2)
    for _ in range(iterations):
        new = np.einsum("ab,abc->bc", pi, table)
        if np.abs(new - pi).max() < tol:
            return new
        pi = new
    return pi


def entropy_rate(table: np.ndarray) -> float:
    """H = sum_{a,b} pi(a, b) H(P(. | a, b)) in nats: the best achievable mean next-token loss."""
    conditional = -np.sum(table * np.log(np.where(table > 0, table, 1.0)), axis=-1)
    return float(np.sum(pair_stationary(table) * conditional))


def markov_stream(table: np.ndarray, length: int) -> np.ndarray:
    """`length` symbols of the chain from the state (0, 1), by inverse-CDF sampling with a fixed generator."""
    symbols = table.shape[0]
    cumulative = np.cumsum(table, axis=-1).reshape(symbols * symbols, symbols).tolist()
    uniforms = np.random.default_rng(MARKOV_TABLE_SEED + 1).random(length).tolist()
    out = []
    state = 1  # the pair (a, b) = (0, 1) as a * symbols + b
    for uniform in uniforms:
        c = min(bisect.bisect_right(cumulative[state], uniform), symbols - 1)
        out.append(c)
        state = (state % symbols) * symbols + c
    return np.asarray(out, dtype=np.uint8 if symbols <= 256 else np.int64)


def markov_tokens(symbols: int) -> TokenData:
    table = markov_table(symbols)
    train, val = split(markov_stream(table, MARKOV_LENGTH))
    return TokenData(train, val, symbols, "markov", {"entropy_rate": entropy_rate(table), "tokens": MARKOV_LENGTH})


def bin_tokens(data_dir: Path, dataset: str, vocab_size: int) -> TokenData:
    folder = Path(data_dir) / dataset
    files = {}
    for name in ("train", "val"):
        path = folder / f"{name}.bin"
        if not path.is_file():
            raise DataError(
                f"{path} not found: tokens=bin reads nanoGPT-format uint16 files; make them with "
                f"nanoGPT's data/openwebtext/prepare.py and put them in {folder}"
            )
        files[name] = np.memmap(path, dtype=np.uint16, mode="r")
    return TokenData(
        files["train"],
        files["val"],
        vocab_size,
        f"bin:{dataset}",
        {"train_tokens": len(files["train"]), "val_tokens": len(files["val"])},
    )


def load_tokens(source: str, *, data_dir: Path, dataset: str, vocab_size: int, markov_symbols: int) -> TokenData:
    if source == "stdlib":
        return stdlib_tokens()
    if source == "markov":
        return markov_tokens(markov_symbols)
    return bin_tokens(data_dir, dataset, vocab_size)
