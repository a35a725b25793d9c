"""ICT at speed: every per-path decomposition matrix (and path matrices, isotypic projectors) by rank n, with
wall time and peak resident memory, beside the naive reference and, when it is installed beside, the
official code (ShihaoShao-GH/ICT-decomposition-and-equivariant-bases, `ICT_decomp.py`, run read-only).

Each case runs in a fresh Python process (peak RSS is per case; imports are not timed). Cases:
  naive       components/ict/reference.py: one einsum per path, every dense D_p kept (n <= 6)
  official    ICT_decomposition(n) from --official DIR, its default float32 (and float64 with --official-fp64);
              skipped when its dense list would not fit in the memory available now
  path_mats   batched Cartesian path matrices, streamed by end weight (nothing written)
  projectors  every D_p, upper triangles materialised panel by panel and reduced to checksums, per layout:
              spherical (blocks by total M, rank one), cartesian (column-support blocks), dense (3^n x 3^n)
  isotypic    every Pi_l (spherical blocks)
  orthogonality  the exact check max|Q^T Q - I| of the run's `orth_err` (spherical M-blocks): `streamed` (Gram
              tiles of one block's upper triangle, rows cut from the depth n-1 prefixes; what the run does)
              beside `all-blocks` (the test oracle reference.spherical_orthogonality_error, every block kept:
              the check before it streamed)
With --repeats N the cases of one rank take turns N times and each row is the fastest of its N.

    python benchmarks/ict.py --ranks 5 6 7 8 9 --threads 2 --official /tmp/ict_official
    python benchmarks/ict.py --ranks 7 --official /tmp/ict_official --repeats 3   # the side-by-side at n = 7
    python benchmarks/ict.py --ranks 8 9 10 --kinds orthogonality --threads 1     # the check, streamed or not

To install the official code beside without copying it into the project:
    git clone https://github.com/ShihaoShao-GH/ICT-decomposition-and-equivariant-bases /tmp/ict_official
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAPER = {6: "1 s", 7: "3 s", 8: "11 s", 9: "4 min 32 s"}  # README / ADS abstract, 28-core Xeon Gold 6330
KINDS = ["naive", "official", "path_mats", "projectors", "isotypic", "orthogonality"]


def child(case: dict) -> dict:
    """Run one case in this process and report seconds, peak RSS and what it checked."""
    import resource

    import torch

    torch.set_num_threads(case["threads"])
    sys.path.insert(0, str(ROOT))
    import e3nn.o3  # noqa: F401  (imported before the clock starts, on both sides)

    from components.ict import reference, stream

    n, kind = case["n"], case["kind"]
    info: dict = {"rss_before_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind == "official":
        sys.path.insert(0, case["official"])
        if case.get("fp64"):
            torch.set_default_dtype(torch.float64)
        import ICT_decomp  # its tqdm bar is off: TQDM_DISABLE=1 in this process's environment

        paths, decomps = ICT_decomp.ICT_decomposition(n)
        info["count"] = len(decomps)
        elapsed = time.perf_counter() - start
        if n <= 6:  # parity: their D_p against ours, same depth-first order
            ours = reference.decomposition_matrices(n)
            info["max_diff_vs_ours"] = max((d.double() - o).abs().max().item() for d, (_, o) in zip(decomps, ours))
    elif kind == "naive":
        decomps = reference.decomposition_matrices(n)
        info["count"] = len(decomps)
        elapsed = time.perf_counter() - start
    elif kind == "path_mats":
        count = 0
        for _, paths, _ in stream.cartesian_path_matrices(n):
            count += len(paths)
        info["count"] = count
        elapsed = time.perf_counter() - start
    elif kind in ("projectors", "isotypic"):
        make = stream.projector_matrices if kind == "projectors" else stream.isotypic_matrices
        entries, worst = 0, 0.0
        count = 0
        for matrix in make(n, case["layout"]):
            found = stream.stream_matrix(matrix, case["panel"])
            entries += found.entries
            rank = found.trace  # checked below against the rank it must have
            expected = 2 * matrix.weight + 1 if kind == "projectors" else round(rank)
            worst = max(worst, abs(found.frobenius2 - expected), abs(found.trace - expected))
            count += 1
        elapsed = time.perf_counter() - start
        info.update(count=count, entries=entries, max_frobenius_trace_err=worst)
    elif kind == "orthogonality":
        streamed = case["layout"] == "streamed"
        check = stream.spherical_orthogonality_error if streamed else reference.spherical_orthogonality_error
        info["orth_err"] = check(n)
        elapsed = time.perf_counter() - start
    else:
        raise SystemExit(f"unknown case {kind}")
    info["seconds"] = elapsed
    info["cpu_seconds"] = time.process_time() - cpu_start  # less sensitive than wall time to a shared machine
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info


def print_row(case: dict, best: dict) -> None:
    if "error" in best:
        print(
            f"{case['n']:>2} | {case['kind']:<13} | {case['layout']:<10} | {'failed':>9} | {'':>8} | {'':>9} | "
            f"{best['error']}"
        )
        return
    note = []
    if "max_frobenius_trace_err" in best:
        note.append(f"max |tr-r|,|F^2-r| {best['max_frobenius_trace_err']:.1e}")
    if "orth_err" in best:
        note.append(
            f"orth_err {best['orth_err']!r}; CPU {best['cpu_seconds']:.1f} s; {best['rss_before_mb']:.0f} MB before"
        )
    if "max_diff_vs_ours" in best:
        note.append(f"max |D_official - D_ours| {best['max_diff_vs_ours']:.1e}")
    if case["kind"] == "projectors" and case["layout"] == "spherical" and case["n"] in PAPER:
        note.append(f"paper (28 cores): {PAPER[case['n']]}")
    entries = f"{best['entries']:.3g}" if "entries" in best else ""
    print(
        f"{case['n']:>2} | {case['kind']:<13} | {case['layout']:<10} | {best['seconds']:>9.2f} | "
        f"{best['peak_rss_mb']:>8.0f} | {entries:>9} | {'; '.join(note)}",
        flush=True,
    )


def run_case(case: dict, timeout: float) -> dict:
    env = dict(os.environ, TQDM_DISABLE="1")
    if case["threads"] > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # spinning OpenMP workers stall when the 2 cores are shared
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(case)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        reason = "killed (out of memory?)" if done.returncode < 0 else (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": reason[:80]}
    return json.loads(lines[-1])


def official_bytes(n: int, fp64: bool) -> int:
    from math import comb

    paths = sum(comb(n, k) * comb(n - k, k) for k in range(n // 2 + 1))  # central trinomial
    return paths * 9**n * (8 if fp64 else 4)


def available_bytes() -> int:
    import psutil

    return psutil.virtual_memory().available


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs per case; the table shows the fastest")
    parser.add_argument("--official", type=str, default=None, help="a folder holding the official ICT_decomp.py")
    parser.add_argument("--official-fp64", action="store_true", help="also time the official code in float64")
    parser.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS, help="cases to run (default: all)")
    parser.add_argument("--panel", type=int, default=2**18)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--summary", type=Path, help="append make bench's rows (JSON lines) to this file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    cases = []
    for n in args.ranks:
        if n <= 6:
            cases.append({"kind": "naive", "layout": "-"})
        if args.official:
            cases.append({"kind": "official", "layout": "fp32", "official": args.official})
            if args.official_fp64:
                cases.append({"kind": "official", "layout": "fp64", "official": args.official, "fp64": True})
        cases.append({"kind": "path_mats", "layout": "cartesian"})
        cases.append({"kind": "projectors", "layout": "spherical"})
        if n <= 8:
            cases.append({"kind": "projectors", "layout": "cartesian"})
        if n <= 8:
            cases.append({"kind": "projectors", "layout": "dense"})
        cases.append({"kind": "isotypic", "layout": "spherical"})
        cases.append({"kind": "orthogonality", "layout": "streamed"})
        cases.append({"kind": "orthogonality", "layout": "all-blocks"})
        cases = [case for case in cases if case["kind"] in args.kinds]
        for case in cases:
            case.setdefault("n", n)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(
        f"{os.cpu_count()} CPUs, torch threads {args.threads}, load average {load:.1f} at start; "
        f"float64 unless noted; best of {args.repeats}"
    )
    header = f"{'n':>2} | {'mode':<13} | {'layout':<10} | {'seconds':>9} | {'peak MB':>8} | {'entries':>9} | note"
    print(header)
    print("-" * len(header))
    results = []
    for n in args.ranks:
        group = []
        for case in cases:
            if case["n"] != n:
                continue
            case = {**case, "threads": args.threads, "panel": args.panel}
            if case["kind"] == "official":
                need, have = official_bytes(n, case.get("fp64", False)), available_bytes()
                if need > 0.8 * have:
                    print(
                        f"{n:>2} | {'official':<13} | {case['layout']:<10} | {'skipped':>9} | {'':>8} | {'':>9} | "
                        f"keeps {need / 1e9:.1f} GB of dense D_p, {have / 1e9:.1f} GB available"
                    )
                    continue
            group.append(case)
        best: list[dict | None] = [None] * len(group)
        for _ in range(args.repeats):  # the cases of one rank take turns, so a change of load hits them all alike
            for index, case in enumerate(group):
                if best[index] is not None and "error" in best[index]:
                    continue
                found = run_case(case, args.timeout)
                if "error" in found or best[index] is None or found["seconds"] < best[index]["seconds"]:
                    best[index] = found
        for case, found in zip(group, best):
            results.append((case, found))
            print_row(case, found)
    for n in args.ranks:
        official = [r for c, r in results if c["n"] == n and c["kind"] == "official" and "seconds" in r]
        ours = {c["layout"]: r for c, r in results if c["n"] == n and c["kind"] == "projectors" and "seconds" in r}
        for o in official:
            ratios = ", ".join(f"{layout} {o['seconds'] / r['seconds']:.1f}x" for layout, r in ours.items())
            print(f"n={n}: official {o['seconds']:.2f} s / ours -> {ratios}")
        check = {c["layout"]: r for c, r in results if c["n"] == n and c["kind"] == "orthogonality" and "seconds" in r}
        if len(check) == 2:
            old, new = check["all-blocks"], check["streamed"]
            print(
                f"n={n}: orthogonality check, all-blocks / streamed: {old['seconds'] / new['seconds']:.2f}x time, "
                f"{old['cpu_seconds'] / new['cpu_seconds']:.2f}x CPU time, "
                f"{old['peak_rss_mb'] / new['peak_rss_mb']:.2f}x peak RSS ({old['peak_rss_mb']:.0f} -> "
                f"{new['peak_rss_mb']:.0f} MB); orth_err equal: {old['orth_err'] == new['orth_err']}"
            )
        if "streamed" in check and args.summary:
            from summary import add_row  # benchmarks/summary.py, beside this script

            new = check["streamed"]
            before = f" (all-blocks {check['all-blocks']['peak_rss_mb']:.0f} MB)" if "all-blocks" in check else ""
            add_row(
                args.summary,
                f"ICT n = {n}: the orthogonality check's peak memory",
                f"{new['peak_rss_mb']:.0f} MB{before}, {new['seconds']:.0f} s",
                "<= 1.5 GB",
                new["peak_rss_mb"] <= 1536,
            )


if __name__ == "__main__":
    main()
