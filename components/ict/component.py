"""ICT (Shao, Li, Lin, Cui, arXiv 2412.18263): irreducible Cartesian tensor decomposition matrices and bases
of equivariant spaces from path matrices. Pure compute: no data, no training, `strategy` is ignored."""

from __future__ import annotations

import hashlib
import math
import resource
import time
from collections.abc import Sequence

import torch

from components.core.contract import RunContext
from components.core.errors import RunError
from components.core.files import atomic_write_json, atomic_write_text
from components.ict import checks, stream
from components.ict.cg import vector_permutation
from components.ict.config import Config
from components.ict.hom import EquivariantLinear, Space
from components.ict.paths import (
    cartesian_paths,
    check_count_identities,
    end_dimension,
    multiplicities,
    num_paths,
    path_index,
)

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        watch = self

        class Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[name] = watch.seconds.get(name, 0.0) + time.perf_counter() - self.start

        return Stage()


def run_checks(cfg: Config, generator: torch.Generator) -> dict[str, float]:
    """ict.md §6 checks 1-7 at small rank (whatever check_ranks allows), from the naive reference."""
    out: dict[str, float] = {}
    if cfg.check_ranks == 0:
        return out
    for key, value in checks.all_rank_errors(cfg.check_ranks, cfg.cg_source, generator).items():
        out[f"checks/{key}"] = value
    if cfg.check_ranks >= 2:
        out["checks/n2_ground_truth_err"] = checks.rank2_ground_truth_error(cfg.cg_source)
    if cfg.check_ranks >= 3:
        out.update({f"checks/{k}": v for k, v in checks.end_basis_errors(3, cfg.cg_source).items()})
    if cfg.check_ranks >= 4:
        out.update({f"checks/{k}": v for k, v in checks.top_path_errors(4, generator, cfg.cg_source).items()})
        out["checks/iso_vs_e3nn_err"] = checks.isotypic_vs_e3nn_error(4, cfg.cg_source)
        out["checks/casimir_err"] = checks.casimir_error(4, cfg.cg_source)
    matches = [checks.e3nn_multiplicities(n) == multiplicities(n) for n in range(1, min(cfg.check_ranks, 4) + 1)]
    out["checks/multiplicities_match_e3nn"] = float(all(matches))
    return out


def checksum_metrics(weights: list[int], sums: list[stream.Checksum], n: int, kind: str) -> dict[str, float]:
    """Each streamed matrix is an orthogonal projector: trace = ||.||_F^2 = its rank; the whole family sums
    to the identity, so the sums of all entries add up to 3^n in any orthonormal basis."""
    mult = multiplicities(n)
    rank = [(2 * l + 1) * (mult[l] if kind == "isotypic" else 1) for l in weights]
    return {
        f"{kind}/count": float(len(sums)),
        f"{kind}/entries": float(sum(s.entries for s in sums)),
        f"{kind}/max_trace_err": max(abs(s.trace - r) for s, r in zip(sums, rank)),
        f"{kind}/max_frobenius_err": max(abs(s.frobenius2 - r) for s, r in zip(sums, rank)),
        f"{kind}/identity_sum_err": abs(sum(2 * s.total - s.trace for s in sums) - 3**n),
        f"{kind}/sum_of_squares": sum(s.squares for s in sums),
    }  # content-sensitive, basis-dependent


def fingerprint(sums: list[stream.Checksum]) -> str:
    digest = hashlib.sha256()
    for s in sums:
        digest.update(torch.tensor(s.as_list(), dtype=torch.float64).numpy().tobytes())
    return digest.hexdigest()


def stream_projectors(cfg: Config, ctx: RunContext, watch: Stopwatch, kind: str) -> tuple[dict[str, float], dict]:
    dtype = DTYPES[cfg.dtype]
    make = stream.projector_matrices if kind == "projectors" else stream.isotypic_matrices
    total = num_paths(cfg.n) if kind == "projectors" else cfg.n + 1
    with watch(kind):
        matrices = ctx.progress(
            make(cfg.n, cfg.layout, cfg.cg_source, dtype, ctx.device, cfg.chunk_entries),
            total=total,
            desc=f"ict {kind} n={cfg.n} ({cfg.layout})",
        )
        if cfg.write and ctx.is_main:  # one writer when several ranks run the same work
            records, sums = stream.write_matrices(
                matrices, ctx.run_dir / kind, cfg.n, cfg.layout, kind, cfg.panel_entries
            )
            weights = [r["weight"] for r in records]
            labels = [r["label"] for r in records]
        else:
            weights, labels, sums = [], [], []
            for matrix in matrices:
                sums.append(stream.stream_matrix(matrix, cfg.panel_entries))
                weights.append(matrix.weight)
                labels.append(list(matrix.label) if isinstance(matrix.label, tuple) else matrix.label)
    metrics = checksum_metrics(weights, sums, cfg.n, kind)
    table = {
        "labels": labels,
        "weights": weights,
        "checksums": [s.as_list() for s in sums],
        "columns": ["entries", "total", "squares", "trace", "diagonal_squares"],
        "fingerprint": fingerprint(sums),
    }
    if ctx.is_main:
        atomic_write_json(ctx.run_dir / f"{kind}_checksums.json", table)
    return metrics, table


def path_matrices(cfg: Config, ctx: RunContext, watch: Stopwatch, generator: torch.Generator) -> dict[str, float]:
    dtype, n = DTYPES[cfg.dtype], cfg.n
    shard_dir = ctx.run_dir / "path_matrices"
    manifest: dict = {
        "n": n,
        "basis": "Cartesian x, y, z per slot",
        "row_order": "slot n most significant, C order",
        "dtype": cfg.dtype,
        "shards": {},
    }
    column_err, count = 0.0, 0
    with watch("path_mats"):
        handles: dict[int, tuple] = {}
        for l, paths, x in ctx.progress(
            stream.cartesian_path_matrices(n, cfg.cg_source, dtype, ctx.device, cfg.chunk_entries),
            desc=f"ict P_p n={n}",
        ):
            gram = torch.bmm(x.transpose(1, 2), x)
            gram.diagonal(dim1=1, dim2=2).sub_(1)
            column_err = max(column_err, gram.abs().max().item())
            count += len(paths)
            if cfg.write and ctx.is_main:
                if l not in handles:
                    shard_dir.mkdir(exist_ok=True)
                    handles[l] = (open(shard_dir / f"P_l{l}.f64", "wb"), hashlib.sha256(), [])
                data = x.detach().cpu().to(torch.float64).contiguous().numpy().tobytes()
                handles[l][0].write(data)
                handles[l][1].update(data)
                handles[l][2].extend(path_index(n)[p] for p in paths)
        for l, (handle, digest, order) in sorted(handles.items()):
            handle.close()
            manifest["shards"][str(l)] = {
                "file": f"P_l{l}.f64",
                "shape": [len(order), 3**n, 2 * l + 1],
                "sha256": digest.hexdigest(),
                "path_indices": order,
            }
    if cfg.write and ctx.is_main:
        atomic_write_json(shard_dir / "manifest.json", manifest)
    metrics = {"path_mats/count": float(count), "path_mats/column_orth_err": column_err}
    with watch("orthogonality"):
        probes = torch.randn(3**n, 4, generator=generator, dtype=torch.float64).to(dtype)
        probes = probes / probes.norm(dim=0)
        metrics["path_mats/orth_probe_err"] = stream.cartesian_orthogonality_probe(
            n, probes.to(ctx.device), cfg.cg_source, cfg.chunk_entries
        )
        if cfg.orthogonality and n <= 7:
            mats = stream.all_cartesian_path_matrices(n, cg_source=cfg.cg_source, dtype=dtype)
            q = torch.cat([m for _, m in mats], 1)
            gram = q.T @ q
            gram.diagonal().sub_(1)
            metrics["orth_err"] = gram.abs().max().item()
    return metrics


def end_basis(cfg: Config, ctx: RunContext, watch: Stopwatch) -> dict[str, float]:
    """The End basis in factored form: pairs (p, q) with equal end weight, B_pq = P_p P_q^T (p == q kept)."""
    n = cfg.n
    with watch("end_basis"):
        by_weight: dict[int, list[int]] = {}
        for i, p in enumerate(cartesian_paths(n)):
            by_weight.setdefault(p[-1], []).append(i)
        pairs = torch.cat(
            [torch.cartesian_prod(torch.tensor(v), torch.tensor(v)) for _, v in sorted(by_weight.items())]
        )
        metrics = {
            "end/count": float(pairs.shape[0]),
            "end/expected_count": float(end_dimension(n)),
            "end/projector_pairs": float((pairs[:, 0] == pairs[:, 1]).sum().item()),
        }
        if cfg.write and ctx.is_main:
            import numpy as np

            np.save(ctx.run_dir / "end_basis_pairs.npy", pairs.numpy().astype(np.int32))
        if n <= 5:  # materialise and Gram the whole basis (n = 5: 603 matrices of 243 x 243)
            found = checks.end_basis_errors(n, cfg.cg_source)
            metrics.update(
                {
                    "end/gram_diag_err": found["end_gram_diag_err"],
                    "end/gram_offdiag": found["end_gram_offdiag"],
                    "end/rank": found["end_rank"],
                }
            )
            if "commutant_dim" in found:
                metrics["end/commutant_dim"] = found["commutant_dim"]
    return metrics


def algo4_layer(cfg: Config, ctx: RunContext, watch: Stopwatch, generator: torch.Generator) -> dict[str, float]:
    n, dtype = cfg.n, DTYPES[cfg.dtype]
    with watch("layer_build"):
        layer = EquivariantLinear(Space.cartesian(n), Space.cartesian(n), cfg.cg_source, dtype, generator)
    x = torch.randn(cfg.layer_batch, 3**n, generator=generator, dtype=torch.float64).to(dtype)
    with watch("layer_forward"), torch.no_grad():
        y = layer(x)
    rotation = checks.random_rotations(1, generator)[0]
    power = Space.cartesian(n).representation(rotation).to(dtype)
    with torch.no_grad():
        equiv = (layer(x @ power.T) - y @ power.T).abs().max().item()
    metrics = {
        "layer/num_weights": float(layer.num_weights),
        "layer/expected_weights": float(end_dimension(n)),
        "layer/equiv_err": equiv,
        "layer/output_norm": float(y.double().norm()),
    }
    if n <= 4:
        from components.ict import reference

        mats = dict(reference.path_matrices(n, cfg.cg_source))
        expected = sum(
            layer.mix[g][qi, pi].detach() * (mats[tuple(q.weights)] @ mats[tuple(p.weights)].T)
            for g, (ins, outs) in enumerate(zip(layer.paths_in, layer.paths_out))
            for qi, q in enumerate(outs)
            for pi, p in enumerate(ins)
        )
        metrics["layer/vs_basis_err"] = (layer.as_matrix().double() - expected).abs().max().item()
    return metrics


def summary_table(cfg: Config, metrics: dict[str, float], seconds: dict[str, float], rss: float) -> str:
    mult = multiplicities(cfg.n)
    lines = [
        f"# ict: n = {cfg.n}, mode {cfg.mode}, layout {cfg.layout}, {cfg.dtype}, CG {cfg.cg_source}",
        "",
        f"paths {num_paths(cfg.n)}, multiplicities m_0..m_n = {', '.join(map(str, mult))}, "
        f"dim End = {end_dimension(cfg.n)}",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    lines += [f"| {stage} | {value:.3f} |" for stage, value in seconds.items()]
    lines += ["", f"peak resident memory: {rss:.0f} MB", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.6g} |" for key, value in sorted(metrics.items())]
    return "\n".join(lines) + "\n"


class ICT:
    name = "ict"
    Config = Config
    presets = {
        "test": {"n": 3, "check_ranks": 3, "write": True, "timings": False},  # seconds: plumbing, files, checks to n=3
        "smoke": {"n": 6, "check_ranks": 5, "write": True},  # ict.md §6: checks for n = 1..5, n = 6 timed and written
        "paper": {},  # the Config defaults: every D_p at n = 9 (spherical blocks, checksums), checks n = 1..5
    }
    datasets = ()

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        if vector_permutation() != (0, 1, 2):  # ict.md §3.1: D^1(R) == R, or conjugate (done in cg.py)
            ctx.log({"d1_permuted": 1.0}, step=0)
        generator = torch.Generator().manual_seed(ctx.seed)
        watch = Stopwatch()
        n = cfg.n
        check_count_identities(n)
        mult = multiplicities(n)
        metrics: dict[str, float] = {
            "n": float(n),
            "num_paths": float(num_paths(n)),
            "dim_end": float(end_dimension(n)),
        }
        metrics.update({f"multiplicity/l{l}": float(m) for l, m in enumerate(mult)})
        if ctx.is_main:
            atomic_write_json(
                ctx.run_dir / "paths.json",
                {
                    "n": n,
                    "order": "depth-first, j+1 before j before j-1",
                    "multiplicities": list(mult),
                    "paths": [list(p) for p in cartesian_paths(n)],
                },
            )
        with watch("checks"):
            metrics.update(run_checks(cfg, generator))
        if cfg.mode in ("projectors", "isotypic"):
            found, _ = stream_projectors(cfg, ctx, watch, cfg.mode)
            metrics.update(found)
        elif cfg.mode == "path_mats":
            metrics.update(path_matrices(cfg, ctx, watch, generator))
        elif cfg.mode == "end_basis":
            metrics.update(end_basis(cfg, ctx, watch))
        else:
            metrics.update(algo4_layer(cfg, ctx, watch, generator))
        if cfg.orthogonality and cfg.mode != "path_mats":
            with watch("orthogonality"):
                if cfg.layout == "spherical" or cfg.mode in ("end_basis", "algo4_layer"):
                    # Gram tiles cut from the depth n-1 prefixes: n = 10 peaks at 1.0 GB, not 6.1
                    metrics["orth_err"] = stream.spherical_orthogonality_error(n, DTYPES[cfg.dtype], ctx.device)
                elif n <= 7:
                    q = torch.cat(
                        [
                            m
                            for _, m in stream.all_cartesian_path_matrices(
                                n, cg_source=cfg.cg_source, dtype=DTYPES[cfg.dtype]
                            )
                        ],
                        1,
                    )
                    gram = q.T @ q
                    gram.diagonal().sub_(1)
                    metrics["orth_err"] = gram.abs().max().item()
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise RunError(f"non-finite results: {', '.join(bad)} (a path is missing or the basis is not square)")
        rss = peak_rss_mb()
        main_stage = {
            "projectors": "projectors",
            "isotypic": "isotypic",
            "path_mats": "path_mats",
            "end_basis": "end_basis",
            "algo4_layer": "layer_forward",
        }[cfg.mode]
        timing = {f"seconds/{k}": v for k, v in watch.seconds.items()}
        timing.update({"seconds": watch.seconds.get(main_stage, 0.0), "peak_rss_mb": rss})
        if ctx.is_main:
            atomic_write_json(ctx.run_dir / "timings.json", timing)
            atomic_write_text(ctx.run_dir / "summary.md", summary_table(cfg, metrics, watch.seconds, rss))
        ctx.log({**metrics, **(timing if cfg.timings else {})}, step=0)
        if cfg.timings:
            metrics.update(timing)
        return metrics

    def random_step(self, cfg: Config) -> float | None:
        return None  # nothing trains


component = ICT()
