"""The fast path (ict.md §3.7): batched path matrices, block-sparse symmetric projectors, streaming.

- Path matrices are grown one tensor slot at a time for all prefixes of one weight at once (one GEMM per
  (depth, j, j') instead of one einsum per path), kept up to depth n-1 and streamed at depth n by end
  weight, so no more than one chunk of final path matrices is alive.
- A decomposition matrix D_p (or an isotypic projector Pi_l) is never formed densely unless the layout asks
  for it. It is a list of `Block`s: row indices and a factor F with D restricted to those rows = F F^T, zero
  elsewhere. Layout "spherical": in the basis e_{-1}, e_0, e_{+1} per slot, D_p is block-diagonal by total
  magnetic number M and each block is rank one (the path's column m = M), restricted to the rows where that
  column is non-zero; all real (Condon-Shortley). Layout "cartesian": x, y, z per slot, blocks are groups of
  columns of P_p with overlapping row support. Layout "dense": one block, all 3^n rows (the official form).
- `stream_blocks` materialises the upper triangle of every block panel by panel (a few hundred thousand
  entries, cache-sized), reduces each panel into checksums and hands it to an optional sink (a file), then
  drops it. Every entry of the upper triangle is computed once; nothing is kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FilePath

import torch

from components.ict.cg import real_cg, spherical_to_cartesian, vector_cg
from components.ict.paths import Path, canonical_key, dense_entries, next_weights, spherical_block_entries, trinomial

LAYOUTS = ("spherical", "cartesian", "dense")


@dataclass
class Block:
    rows: torch.Tensor  # int64, ascending: indices into the 3^n basis of the layout
    factor: torch.Tensor  # (len(rows), rank): the matrix restricted to rows x rows is factor @ factor.T


@dataclass
class BlockMatrix:
    """One symmetric 3^n x 3^n matrix (a D_p or a Pi_l) as blocks on disjoint row sets, zero elsewhere."""

    label: Path | int  # the path of a D_p, the weight l of a Pi_l
    weight: int
    blocks: list[Block]


# ---------------------------------------------------------------------------------------------------------
# Cartesian path matrices, batched by depth


def grow_cartesian(x: torch.Tensor, j: int, j2: int, cg_source: str) -> torch.Tensor:
    """(N, R, 2j+1) -> (N, 3R, 2j2+1): couple one more vector slot (the new most significant digit) to all N
    prefixes at once. sqrt(2j2+1) C has orthonormal columns, so every column stays a unit vector."""
    c = real_cg(1, j, j2, cg_source, x.dtype, x.device) * math.sqrt(2 * j2 + 1)  # (3, 2j+1, 2j2+1)
    count, rows, _ = x.shape
    grown = x.reshape(count * rows, 2 * j + 1) @ c.permute(1, 0, 2).reshape(2 * j + 1, 3 * (2 * j2 + 1))
    return grown.reshape(count, rows, 3, 2 * j2 + 1).permute(0, 2, 1, 3).reshape(count, 3 * rows, 2 * j2 + 1)


Grow = Callable[[torch.Tensor, int, int, int], torch.Tensor]  # (x at depth k, k, j, j2) -> x at depth k+1


def prefix_levels(depth: int, grow: Grow, start: torch.Tensor) -> dict[int, tuple[list[Path], torch.Tensor]]:
    """All prefixes of `depth` couplings, grouped by their current weight j: (paths, stacked tensors)."""
    level: dict[int, tuple[list[Path], torch.Tensor]] = {0: ([(0,)], start)}
    for k in range(depth):
        grown: dict[int, tuple[list[Path], list[torch.Tensor]]] = {}
        for j, (paths, x) in level.items():
            for j2 in next_weights(j):
                entry = grown.setdefault(j2, ([], []))
                entry[0].extend(p + (j2,) for p in paths)
                entry[1].append(grow(x, k, j, j2))
        level = {j: (ps, torch.cat(xs) if len(xs) > 1 else xs[0]) for j, (ps, xs) in sorted(grown.items())}
    return level


def final_stream(
    n: int, grow: Grow, start: torch.Tensor, entries_per_row: Callable[[int], int], max_chunk_entries: int
) -> Iterator[tuple[int, list[Path], torch.Tensor]]:
    """(l, paths, tensor) chunks of the complete paths, by end weight l ascending; depth n-1 stays in memory,
    depth n is made one chunk at a time."""
    level = prefix_levels(n - 1, grow, start)
    for l in range(n + 1):
        for j in sorted(level):
            if l not in next_weights(j):
                continue
            paths, x = level[j]
            chunk = max(1, max_chunk_entries // max(1, entries_per_row(l)))
            for i0 in range(0, len(paths), chunk):
                yield l, [p + (l,) for p in paths[i0 : i0 + chunk]], grow(x[i0 : i0 + chunk], n - 1, j, l)


def cartesian_path_matrices(
    n: int,
    cg_source: str = "e3nn",
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    max_chunk_entries: int = 2**25,
) -> Iterator[tuple[int, list[Path], torch.Tensor]]:
    """Chunks (l, paths, P) with P of shape (chunk, 3^n, 2l+1): Algorithm 1, batched and streamed."""

    def grow(x: torch.Tensor, k: int, j: int, j2: int) -> torch.Tensor:
        return grow_cartesian(x, j, j2, cg_source)

    start = torch.ones(1, 1, 1, dtype=dtype, device=device)
    yield from final_stream(n, grow, start, lambda l: 3**n * (2 * l + 1), max_chunk_entries)


def all_cartesian_path_matrices(n: int, **kwargs) -> list[tuple[Path, torch.Tensor]]:
    """Every P_p in the canonical (depth-first) order; for tests and small n (keeps all 9^n entries)."""
    found = [(p, m) for _, paths, x in cartesian_path_matrices(n, **kwargs) for p, m in zip(paths, x)]
    return sorted(found, key=lambda item: canonical_key(item[0]))


# ---------------------------------------------------------------------------------------------------------
# Spherical path vectors: per weight j the 2j+1 columns, each stored only on its M = m row segment


@functools.cache
def spherical_rows(k: int, total: int) -> torch.Tensor:
    """Global row indices (ascending) of the basis strings of k slots with sum(mu) == total; digit a = mu + 1,
    slot k the most significant digit (the layout of Algorithm 1)."""
    if abs(total) > k:
        return torch.zeros(0, dtype=torch.int64)
    if k == 0:
        return torch.zeros(1, dtype=torch.int64)
    parts = [a * 3 ** (k - 1) + spherical_rows(k - 1, total - (a - 1)) for a in range(3)]
    return torch.cat(parts)


def segment_offsets(k: int, j: int) -> dict[int, tuple[int, int]]:
    """Column m of a weight-j vector at depth k lives at [start, stop) of its compressed row."""
    out, start = {}, 0
    for m in range(-j, j + 1):
        out[m] = (start, start + trinomial(k, m))
        start += trinomial(k, m)
    return out


def segment_width(k: int, j: int) -> int:
    return sum(trinomial(k, m) for m in range(-j, j + 1))


def segment_pieces(k: int, j: int, j2: int, big_m: int) -> Iterator[tuple[int, int, float]]:
    """How segment M of a weight-j2 vector at depth k+1 is made: (m, length, coefficient) for the new digit
    mu = -1, 0, 1 in turn, the piece being <j, m; 1 mu | j2 M> times the old segment m = M - mu (zero where
    |m| > j)."""
    for mu in (-1, 0, 1):
        m = big_m - mu
        length = trinomial(k, m)
        if length:
            yield m, length, vector_cg(j, m, mu, j2) if abs(m) <= j else 0.0


def grow_spherical(x: torch.Tensor, k: int, j: int, j2: int) -> torch.Tensor:
    """(N, width(k, j)) -> (N, width(k+1, j2)): every segment M of the new weight, side by side."""
    old = segment_offsets(k, j)
    count = x.shape[0]
    parts = []
    for big_m in range(-j2, j2 + 1):
        for m, length, coefficient in segment_pieces(k, j, j2, big_m):
            if coefficient == 0.0:
                parts.append(x.new_zeros(count, length))
            else:
                start, stop = old[m]
                parts.append(coefficient * x[:, start:stop])
    return torch.cat(parts, dim=1)


def spherical_path_vectors(
    n: int, dtype: torch.dtype = torch.float64, device: str = "cpu", max_chunk_entries: int = 2**25
) -> Iterator[tuple[int, list[Path], torch.Tensor]]:
    """Chunks (l, paths, V): V[i] is path i's matrix in the spherical basis, compressed to its M segments."""
    start = torch.ones(1, 1, dtype=dtype, device=device)
    yield from final_stream(n, grow_spherical, start, lambda l: segment_width(n, l), max_chunk_entries)


def spherical_blocks(n: int, path: Path, vector: torch.Tensor) -> BlockMatrix:
    """D_p in the spherical basis: for each M, the outer product of the path's column m = M on its support."""
    l = path[-1]
    blocks = []
    for m, (start, stop) in segment_offsets(n, l).items():
        segment = vector[start:stop]
        support = segment.nonzero().squeeze(1)
        blocks.append(Block(spherical_rows(n, m).to(segment.device)[support], segment[support].unsqueeze(1)))
    return BlockMatrix(path, l, blocks)


def cartesian_blocks(label: Path | int, weight: int, factor: torch.Tensor) -> BlockMatrix:
    """Group the columns of a (3^n x r) factor whose row supports overlap; each group is one block."""
    nonzero = factor != 0
    overlap = (nonzero.T.to(torch.float32) @ nonzero.to(torch.float32)) > 0
    groups, seen = [], set()
    for c in range(factor.shape[1]):
        if c in seen:
            continue
        group, frontier = {c}, [c]
        while frontier:
            for d in overlap[frontier.pop()].nonzero().squeeze(1).tolist():
                if d not in group:
                    group.add(d)
                    frontier.append(d)
        seen |= group
        groups.append(sorted(group))
    blocks = []
    for group in groups:
        cols = torch.tensor(group, device=factor.device)
        rows = nonzero[:, cols].any(dim=1).nonzero().squeeze(1)
        blocks.append(Block(rows, factor[rows][:, cols]))
    return BlockMatrix(label, weight, blocks)


def dense_block(label: Path | int, weight: int, factor: torch.Tensor) -> BlockMatrix:
    return BlockMatrix(label, weight, [Block(torch.arange(factor.shape[0], device=factor.device), factor)])


def projector_matrices(
    n: int,
    layout: str = "spherical",
    cg_source: str = "e3nn",
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    max_chunk_entries: int = 2**25,
) -> Iterator[BlockMatrix]:
    """Every per-path decomposition matrix D_p = P_p P_p^T as a BlockMatrix, by end weight, one at a time."""
    if layout == "spherical":
        for _, paths, vectors in spherical_path_vectors(n, dtype, device, max_chunk_entries):
            for path, vector in zip(paths, vectors):
                yield spherical_blocks(n, path, vector)
        return
    make = cartesian_blocks if layout == "cartesian" else dense_block
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}' (known: {', '.join(LAYOUTS)})")
    for l, paths, mats in cartesian_path_matrices(n, cg_source, dtype, device, max_chunk_entries):
        for path, mat in zip(paths, mats):
            yield make(path, l, mat)


def isotypic_matrices(
    n: int,
    layout: str = "spherical",
    cg_source: str = "e3nn",
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    max_chunk_entries: int = 2**25,
) -> Iterator[BlockMatrix]:
    """Pi_l = Q_l Q_l^T for l = 0..n, Q_l the path matrices ending at l side by side (one weight at a time)."""
    if layout == "spherical":
        stream = spherical_path_vectors(n, dtype, device, max_chunk_entries)
    else:
        stream = cartesian_path_matrices(n, cg_source, dtype, device, max_chunk_entries)
    current, pieces = None, []
    for l, _, x in stream:
        if current is not None and l != current:
            yield _isotypic(n, current, pieces, layout)
            pieces = []
        current = l
        pieces.append(x)
    if current is not None:
        yield _isotypic(n, current, pieces, layout)


def _isotypic(n: int, l: int, pieces: list[torch.Tensor], layout: str) -> BlockMatrix:
    stacked = torch.cat(pieces)
    if layout == "spherical":
        blocks = []
        for m, (start, stop) in segment_offsets(n, l).items():
            factor = stacked[:, start:stop].T  # (T(n, m), m_l)
            support = (factor != 0).any(dim=1).nonzero().squeeze(1)
            blocks.append(Block(spherical_rows(n, m).to(factor.device)[support], factor[support]))
        return BlockMatrix(l, l, blocks)
    q = stacked.permute(1, 0, 2).reshape(3**n, -1)  # (3^n, m_l (2l+1))
    return cartesian_blocks(l, l, q) if layout == "cartesian" else dense_block(l, l, q)


# ---------------------------------------------------------------------------------------------------------
# Streaming the upper triangles


@dataclass
class Checksum:
    """Reductions of the materialised upper triangle (i <= j) of one matrix."""

    entries: int = 0
    total: float = 0.0  # sum of the stored entries
    squares: float = 0.0  # sum of their squares
    trace: float = 0.0
    diagonal_squares: float = 0.0

    def add(self, other: Checksum) -> None:
        self.entries += other.entries
        self.total += other.total
        self.squares += other.squares
        self.trace += other.trace
        self.diagonal_squares += other.diagonal_squares

    @property
    def frobenius2(self) -> float:
        """||D||_F^2 of the whole symmetric matrix: = trace for an orthogonal projector."""
        return 2 * self.squares - self.diagonal_squares

    def as_list(self) -> list[float]:
        return [float(self.entries), self.total, self.squares, self.trace, self.diagonal_squares]


Sink = Callable[[torch.Tensor], None]


def stream_block(block: Block, panel_entries: int = 2**18, sink: Sink | None = None) -> Checksum:
    """Materialise the block's upper triangle, `panel_entries` at a time, in row-major packed order."""
    factor = block.factor
    size = factor.shape[0]
    out = Checksum()
    if size == 0:
        return out
    rows_per_panel = max(1, min(size, panel_entries // size))
    for i0 in range(0, size, rows_per_panel):
        i1 = min(size, i0 + rows_per_panel)
        height = i1 - i0
        tile = factor[i0:i1] @ factor[i0:].T  # rows i0..i1, columns i0..size: the upper part plus a corner
        corner = tile[:, :height].tril(-1)  # the i > j entries of the leading square are not stored
        flat = tile.reshape(-1)
        diagonal = tile.diagonal()
        out.entries += height * (size - i0) - height * (height - 1) // 2
        out.total += float(flat.sum(dtype=torch.float64) - corner.sum(dtype=torch.float64))
        out.squares += float(torch.dot(flat, flat).double() - (corner * corner).sum(dtype=torch.float64))
        out.trace += float(diagonal.sum(dtype=torch.float64))
        out.diagonal_squares += float((diagonal * diagonal).sum(dtype=torch.float64))
        if sink is not None:
            sink(tile[torch.ones(height, size - i0, dtype=torch.bool, device=tile.device).triu()])
    return out


def stream_matrix(matrix: BlockMatrix, panel_entries: int = 2**18, sink: Sink | None = None) -> Checksum:
    total = Checksum()
    for block in matrix.blocks:
        total.add(stream_block(block, panel_entries, sink))
    return total


def to_dense(matrix: BlockMatrix, n: int, layout: str) -> torch.Tensor:
    """The dense Cartesian 3^n x 3^n matrix (small n only: for tests and the reader)."""
    dense = torch.zeros(3**n, 3**n, dtype=torch.float64)
    for block in matrix.blocks:
        f = block.factor.double().cpu()
        rows = block.rows.cpu()
        dense[rows.unsqueeze(1), rows.unsqueeze(0)] = f @ f.T
    return spherical_to_cartesian(dense, n) if layout == "spherical" else dense


# ---------------------------------------------------------------------------------------------------------
# Files: packed upper triangles with sha256, and a manifest that a reader can follow


@dataclass
class ShardWriter:
    """One binary file of float64 packed upper triangles and one of int64 row indices, hashed as written."""

    values_path: FilePath
    rows_path: FilePath
    values_count: int = 0
    rows_count: int = 0
    values_hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    rows_hash: hashlib._Hash = field(default_factory=hashlib.sha256)

    def __post_init__(self) -> None:
        self._values = open(self.values_path, "wb")
        self._rows = open(self.rows_path, "wb")

    def write_values(self, values: torch.Tensor) -> None:
        data = values.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
        self._values.write(data)
        self.values_hash.update(data)
        self.values_count += values.numel()

    def write_rows(self, rows: torch.Tensor) -> None:
        data = rows.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
        self._rows.write(data)
        self.rows_hash.update(data)
        self.rows_count += rows.numel()

    def close(self) -> dict:
        self._values.close()
        self._rows.close()
        return {
            "values": self.values_path.name,
            "values_sha256": self.values_hash.hexdigest(),
            "values_count": self.values_count,
            "rows": self.rows_path.name,
            "rows_sha256": self.rows_hash.hexdigest(),
            "rows_count": self.rows_count,
        }


def write_matrices(
    matrices: Iterator[BlockMatrix], out_dir: FilePath, n: int, layout: str, kind: str, panel_entries: int = 2**18
) -> tuple[list[dict], list[Checksum]]:
    """Stream every matrix into shards by weight (`{kind}_l{l}.f64` / `.rows.i64`) plus `{kind}.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    writers: dict[int, ShardWriter] = {}
    entries, sums = [], []
    for matrix in matrices:
        writer = writers.get(matrix.weight)
        if writer is None:
            stem = f"{kind}_l{matrix.weight}"
            writer = writers[matrix.weight] = ShardWriter(out_dir / f"{stem}.f64", out_dir / f"{stem}.rows.i64")
        record = {
            "label": list(matrix.label) if isinstance(matrix.label, tuple) else matrix.label,
            "weight": matrix.weight,
            "blocks": [],
        }
        total = Checksum()
        for block in matrix.blocks:
            start_rows, start_values = writer.rows_count, writer.values_count
            writer.write_rows(block.rows)
            total.add(stream_block(block, panel_entries, writer.write_values))
            record["blocks"].append(
                {
                    "rows_offset": start_rows,
                    "size": int(block.rows.numel()),
                    "values_offset": start_values,
                    "values_count": writer.values_count - start_values,
                }
            )
        record["checksum"] = dict(zip(("entries", "total", "squares", "trace", "diagonal_squares"), total.as_list()))
        entries.append(record)
        sums.append(total)
    shards = {str(l): w.close() for l, w in sorted(writers.items())}
    manifest = {
        "n": n,
        "layout": layout,
        "kind": kind,
        "format": "packed upper triangle, row-major, per block",
        "basis": "spherical e_-1, e_0, e_+1 per slot (Condon-Shortley)"
        if layout == "spherical"
        else "Cartesian x, y, z per slot",
        "row_order": "slot n most significant, C order",
        "shards": shards,
        "matrices": entries,
    }
    (out_dir / f"{kind}.json").write_text(json.dumps(manifest, indent=1))
    return entries, sums


def read_matrix(out_dir: FilePath, kind: str, index: int) -> torch.Tensor:
    """Matrix `index` of a written stream as a dense Cartesian matrix (the inverse of `write_matrices`)."""
    import numpy as np

    manifest = json.loads((out_dir / f"{kind}.json").read_text())
    n, layout = manifest["n"], manifest["layout"]
    record = manifest["matrices"][index]
    shard = manifest["shards"][str(record["weight"])]
    values = np.fromfile(out_dir / shard["values"], dtype=np.float64)
    rows = np.fromfile(out_dir / shard["rows"], dtype=np.int64)
    dense = torch.zeros(3**n, 3**n, dtype=torch.float64)
    for block in record["blocks"]:
        size = block["size"]
        idx = torch.from_numpy(rows[block["rows_offset"] : block["rows_offset"] + size].copy())
        packed = torch.from_numpy(
            values[block["values_offset"] : block["values_offset"] + block["values_count"]].copy()
        )
        square = torch.zeros(size, size, dtype=torch.float64)
        upper = torch.ones(size, size, dtype=torch.bool).triu()
        square[upper] = packed
        square = square + square.T - torch.diag(square.diagonal())
        dense[idx.unsqueeze(1), idx.unsqueeze(0)] = square
    return spherical_to_cartesian(dense, n) if layout == "spherical" else dense


def estimated_stream_bytes(n: int, layout: str, kind: str) -> int:
    """Upper bound of the bytes `write_matrices` writes (dense-in-block upper triangles, float64)."""
    if kind == "isotypic":
        full = (
            sum(trinomial(n, m) ** 2 * sum(1 for l in range(abs(m), n + 1)) for m in range(-n, n + 1))
            if layout == "spherical"
            else (n + 1) * 9**n
        )
        return 8 * full // 2
    full = spherical_block_entries(n) if layout == "spherical" else dense_entries(n)
    return 8 * full // 2


# ---------------------------------------------------------------------------------------------------------
# Orthogonality at full rank without a dense 3^n x 3^n Gram


def spherical_prefixes(n: int, dtype: torch.dtype = torch.float64, device: str = "cpu") -> dict:
    """The depth n-1 path vectors by weight: every M-block of Q is cut from these (353 MB at n = 10)."""
    return prefix_levels(n - 1, grow_spherical, torch.ones(1, 1, dtype=dtype, device=device))


def magnetic_groups(prefixes: dict, n: int, big_m: int) -> list[tuple[int, int, int]]:
    """(end weight l, prefix weight j, first row) of the paths in block M: j_n = l >= |M|, by l then j (the
    order of the stream)."""
    out, row = [], 0
    for l in range(abs(big_m), n + 1):
        for j in sorted(prefixes):
            if l in next_weights(j):
                out.append((l, j, row))
                row += prefixes[j][1].shape[0]
    return out


def magnetic_height(prefixes: dict, n: int, big_m: int) -> int:
    return sum(prefixes[j][1].shape[0] for _, j, _ in magnetic_groups(prefixes, n, big_m))


def magnetic_block(prefixes: dict, n: int, big_m: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows start..stop of block M of Q in the spherical basis: row i is the column m = M of path i (paths with
    j_n >= |M|), on the T(n, M) basis strings of total M. Made from the prefixes, so a caller holds only the
    rows it asks for (all 21 blocks at n = 10 are 3.0 GB, the largest 641 MB)."""
    stop = magnetic_height(prefixes, n, big_m) if stop is None else stop
    any_prefix = next(iter(prefixes.values()))[1]
    dtype, device = any_prefix.dtype, any_prefix.device
    out = torch.zeros(max(0, stop - start), trinomial(n, big_m), dtype=dtype, device=device)
    for l, j, first in magnetic_groups(prefixes, n, big_m):
        x = prefixes[j][1]
        lo, hi = max(start, first), min(stop, first + x.shape[0])
        if lo >= hi:
            continue
        old, column = segment_offsets(n - 1, j), 0
        for m, length, coefficient in segment_pieces(n - 1, j, l, big_m):
            if coefficient != 0.0:  # the same product as grow_spherical's, written in place
                a, b = old[m]
                piece = x[lo - first : hi - first, a:b]
                out[lo - start : hi - start, column : column + length].copy_(piece).mul_(coefficient)
            column += length
    return out


def spherical_orthogonality_error(
    n: int, dtype: torch.dtype = torch.float64, device: str = "cpu", tile_rows: int = 1024
) -> float:
    """max |Q^T Q - I| of all path vectors in the spherical basis, exactly: Q^T Q is block-diagonal by M and
    block M (`magnetic_block`) must be square. Its Gram is formed tile by tile over the upper triangle, the
    rows of each tile cut from the prefixes when needed: alive are the prefixes and two panels of
    `tile_rows` rows (73 MB each at n = 10), never a whole block, and the symmetric half is not computed."""
    prefixes = spherical_prefixes(n, dtype, device)
    worst = 0.0
    for big_m in range(-n, n + 1):
        size = magnetic_height(prefixes, n, big_m)
        if size != trinomial(n, big_m):
            return math.inf  # a missing or extra path: the change of basis is not square
        for i0 in range(0, size, tile_rows):
            left = magnetic_block(prefixes, n, big_m, i0, min(size, i0 + tile_rows))
            for j0 in range(i0, size, tile_rows):
                right = left if j0 == i0 else magnetic_block(prefixes, n, big_m, j0, min(size, j0 + tile_rows))
                gram = left @ right.T
                if j0 == i0:
                    gram.diagonal().sub_(1)
                worst = max(worst, gram.abs().max().item())
    return worst


def cartesian_orthogonality_probe(
    n: int, probes: torch.Tensor, cg_source: str = "e3nn", max_chunk_entries: int = 2**25
) -> float:
    """max |Q Q^T R - R| for unit probe columns R (3^n x k), in two streamed passes over the path matrices:
    an orthogonal Q returns every probe unchanged; a missing, repeated or skewed path does not."""
    dtype = probes.dtype
    projections = [
        torch.einsum("prc,rk->pck", x, probes)
        for _, _, x in cartesian_path_matrices(n, cg_source, dtype, probes.device, max_chunk_entries)
    ]
    back = torch.zeros_like(probes)
    for z, (_, _, x) in zip(
        projections, cartesian_path_matrices(n, cg_source, dtype, probes.device, max_chunk_entries)
    ):
        back += torch.einsum("prc,pck->rk", x, z)
    return (back - probes).abs().max().item()
