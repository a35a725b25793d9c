"""ict.md §6 checks 1-7, the fast path's parity with the naive reference, the streamed files, Hom bases and the
Algorithm-4 layer. Each test says which wrong implementation it catches."""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import pytest
import torch

from cluster.runner import execute, plan_run
from components.core.config import resolve_config
from components.core.errors import ConfigError
from components.ict import checks, reference, stream
from components.ict.cg import real_cg, real_to_complex, vector_cg, vector_permutation, wigner_d
from components.ict.component import component
from components.ict.hom import EquivariantLinear, Space, hom_basis, hom_dimension
from components.ict.hom import multiplicities as space_mult
from components.ict.paths import cartesian_paths, central_trinomial, end_dimension, multiplicities, num_paths, trinomial

# ict.md §3.2's table: m_0..m_n, #paths, sum m_l (2l+1), dim End.
TABLE = {
    2: ((1, 1, 1), 3, 9, 3),
    3: ((1, 3, 2, 1), 7, 27, 15),
    4: ((3, 6, 6, 3, 1), 19, 81, 91),
    5: ((6, 15, 15, 10, 4, 1), 51, 243, 603),
    6: ((15, 36, 40, 29, 15, 5, 1), 141, 729, 4213),
    7: ((36, 91, 105, 84, 49, 21, 6, 1), 393, 2187, 30537),
    8: ((91, 232, 280, 238, 154, 76, 28, 7, 1), 1107, 6561, 227475),
    9: ((232, 603, 750, 672, 468, 258, 111, 36, 8, 1), 3139, 19683, 1730787),
}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def rank_errors():
    """Checks 1-3 and the fast/naive parity for n = 1..5, computed once (about 3 s)."""
    return {n: checks.rank_errors(n, "e3nn", generator(n)) for n in range(1, 6)}


# Conventions -----------------------------------------------------------------------------------------------


def test_e3nn_vector_basis_is_cartesian():
    # ict.md §3.1: D^1(R) == R in e3nn 0.6.0; a permuted basis would silently mix x, y, z in every path matrix
    assert vector_permutation() == (0, 1, 2)
    for rotation in checks.random_rotations(3, generator()):
        assert (wigner_d(1, rotation, -1) - rotation).abs().max() < 1e-12


def test_spin_one_coupling_matches_sympy():
    # the fast path's closed-form Condon-Shortley <j m; 1 mu | J M>: a sign or a swapped m/M fails here
    from sympy.physics.wigner import clebsch_gordan

    worst = 0.0
    for j in range(6):
        for big_j in (j - 1, j, j + 1):
            for m, mu in itertools.product(range(-j, j + 1), (-1, 0, 1)):
                if big_j >= 0 and abs(m + mu) <= big_j:
                    exact = float(clebsch_gordan(j, 1, big_j, m, mu, m + mu))
                    worst = max(worst, abs(vector_cg(j, m, mu, big_j) - exact))
    assert worst < 1e-14


def test_sympy_real_cg_equals_e3nn():
    # cg_source=sympy: exact CS coefficients through the real basis change; a wrong Q_l (or a missing (-i)^l)
    # gives complex or different tensors
    from e3nn.o3._wigner import change_basis_real_to_complex

    for l in range(5):
        assert (real_to_complex(l) - change_basis_real_to_complex(l, dtype=torch.float64)).abs().max() < 1e-15
    for j in range(5):
        for j2 in (j + 1, j, j - 1):
            if j2 >= 0 and not (j == 0 and j2 != 1):
                assert (real_cg(1, j, j2, "sympy") - real_cg(1, j, j2, "e3nn")).abs().max() < 1e-14


# Paths and multiplicities (check 6, first half) ---------------------------------------------------------


@pytest.mark.parametrize("n", sorted(TABLE))
def test_multiplicities_match_the_table(n):
    mult, count, dim, end = TABLE[n]
    assert multiplicities(n) == mult and num_paths(n) == count == central_trinomial(n)
    assert sum(m * (2 * l + 1) for l, m in enumerate(mult)) == dim == 3**n and end_dimension(n) == end
    if n <= 6:  # the enumeration agrees with the walk count, in depth-first order starting with the top path
        paths = cartesian_paths(n)
        assert len(paths) == count and paths[0] == tuple(range(n + 1)) and len(set(paths)) == count


@pytest.mark.parametrize("n", [2, 3, 4])
def test_multiplicities_match_e3nn(n):
    assert checks.e3nn_multiplicities(n) == multiplicities(n)


# Checks 1-3 (n = 1..5) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_orthogonality(rank_errors, n):
    # check 1: a stub, a missing normalisation or a missing/duplicated path fails max|Q^T Q - I|, |Q Q^T - I|
    assert rank_errors[n]["orth_err"] < 1e-10


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_projector_algebra(rank_errors, n):
    # check 2: idempotent, trace 2j+1, sum to I, mutually orthogonal; a wrong recursion breaks at least one
    e = rank_errors[n]
    assert e["idem_err"] < 1e-10 and e["trace_err"] < 1e-9 and e["sum_err"] < 1e-10 and e["cross_err"] < 1e-10


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_equivariance(rank_errors, n):
    # check 3: 5 Haar rotations; a transposed CG or a basis other than x, y, z breaks both identities
    assert rank_errors[n]["equiv_err"] < 1e-10 and rank_errors[n]["path_equiv_err"] < 1e-9


def test_missing_normalisation_is_caught():
    # the check has teeth: chaining e3nn's unit-Frobenius CG without rescaling shrinks every column
    mats = reference.path_matrices(3)
    unnormalised = torch.cat([m * m[:, 0].norm() / math.prod(math.sqrt(2 * j + 1) for j in p[1:]) for p, m in mats], 1)
    assert (unnormalised.T @ unnormalised - torch.eye(27, dtype=torch.float64)).abs().max() > 0.1


# Check 4: n = 2 ground truth ---------------------------------------------------------------------------


def test_rank_two_is_trace_antisymmetric_symmetric_traceless():
    assert checks.rank2_ground_truth_error() < 1e-12


# Check 5: the top path is the natural-form ICT ----------------------------------------------------------


def test_top_path_is_symmetric_traceless():
    # a wrong coupling order at the top (or a path matrix that is not the weight-n part) breaks symmetry
    e = checks.top_path_errors(4, generator(5))
    assert e["top_sym_err"] < 1e-12 and e["top_trace_err"] < 1e-12
    assert e["nontop_sym_violation"] > 0.1  # a path ending at n - 1 is not symmetric, so the test can fail


# Check 6: isotypic projectors against e3nn ReducedTensorProducts ------------------------------------------


def test_isotypic_projectors_match_e3nn():
    # independent numerical construction; a missing path or a wrong weight assignment changes some Pi_l
    assert checks.isotypic_vs_e3nn_error(4) < 1e-10


# Check 7: End basis -------------------------------------------------------------------------------------


def test_end_basis_is_complete_and_orthogonal():
    e = checks.end_basis_errors(3)
    assert e["end_count"] == 15 == e["end_expected_count"] == e["commutant_dim"] == e["end_rank"]
    assert e["end_gram_diag_err"] < 1e-12 and e["end_gram_offdiag"] < 1e-12


def test_end_basis_keeps_the_projectors():
    # ict.md §8: the official equivariant_bases_end.py skips p == q and spans only 15 - 7 = 8 dimensions
    basis = reference.end_basis(3)
    diagonal = [b for (p, q), b in basis if p == q]
    assert len(diagonal) == num_paths(3) == 7 and len(basis) - len(diagonal) == 8 < reference.commutant_dimension(3)


# Slot order: D_p is the joint eigenspace of the nested Casimirs of slots 1..k ----------------------------


def test_path_projectors_equal_nested_casimir_projectors():
    # no CG involved: pins the slot order (new slot most significant) and every intermediate weight
    assert checks.casimir_error(4) < 1e-12


def test_reversed_slot_order_is_caught():
    # the check has teeth: building with the new slot least significant keeps Pi_l but changes individual D_p
    def reversed_paths(n):
        out = []

        def visit(path, m):
            if len(path) == n + 1:
                out.append((path, m))
                return
            for j2 in (1,) if path[-1] == 0 else (path[-1] + 1, path[-1], path[-1] - 1):
                if j2 >= 0:
                    c = real_cg(1, path[-1], j2) * math.sqrt(2 * j2 + 1)
                    visit(path + (j2,), torch.einsum("am,bmn->abn", m, c).reshape(-1, 2 * j2 + 1))

        visit((0,), torch.ones(1, 1, dtype=torch.float64))
        return out

    worst = max((reference.path_projector_from_casimirs(p) - m @ m.T).abs().max().item() for p, m in reversed_paths(3))
    assert worst > 0.1


# Fast path against the naive reference (n <= 5) ---------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_fast_path_matches_naive_reference(rank_errors, n):
    # batched Cartesian path matrices and every layout of the streamed D_p (spherical blocks go through the
    # Condon-Shortley construction, independent of e3nn) equal the naive P_p P_p^T
    e = rank_errors[n]
    assert e["fast_paths_err"] < 1e-13
    assert max(e["fast_spherical_err"], e["fast_cartesian_err"], e["fast_dense_err"]) < 1e-12


@pytest.mark.parametrize("layout", stream.LAYOUTS)
def test_fast_isotypic_matches_naive(layout):
    naive = reference.isotypic_projectors(4)
    found = {bm.label: stream.to_dense(bm, 4, layout) for bm in stream.isotypic_matrices(4, layout)}
    assert sorted(found) == sorted(naive)
    assert max((found[l] - naive[l]).abs().max().item() for l in naive) < 1e-12


def test_spherical_blocks_are_rank_one_per_magnetic_number():
    # the block structure the speed comes from: 2j+1 blocks, disjoint rows, each rank one
    for bm in stream.projector_matrices(5, "spherical"):
        assert len(bm.blocks) == 2 * bm.weight + 1
        rows = torch.cat([b.rows for b in bm.blocks])
        assert rows.unique().numel() == rows.numel() and all(b.factor.shape[1] == 1 for b in bm.blocks)


@pytest.mark.parametrize("layout", stream.LAYOUTS)
def test_stream_checksums_equal_the_dense_upper_triangle(layout):
    # small panels force several tiles per block: a panel that double-counts or skips the corner fails here
    n = 4
    naive = dict(reference.decomposition_matrices(n))
    for bm in stream.projector_matrices(n, layout):
        found = stream.stream_matrix(bm, panel_entries=1024)
        dense = stream.to_dense(bm, n, "dense") if layout == "spherical" else naive[bm.label]
        upper = dense[torch.ones_like(dense, dtype=torch.bool).triu()]
        nonzero_rows = sum(b.rows.numel() for b in bm.blocks)
        assert found.entries == sum(b.rows.numel() * (b.rows.numel() + 1) // 2 for b in bm.blocks) <= upper.numel()
        assert abs(found.total - upper.sum().item()) < 1e-12 and abs(found.squares - (upper**2).sum().item()) < 1e-12
        assert abs(found.trace - (2 * bm.weight + 1)) < 1e-12 and abs(found.frobenius2 - (2 * bm.weight + 1)) < 1e-12
        assert nonzero_rows <= 3**n


@pytest.mark.parametrize("layout", ["spherical", "dense"])
def test_written_stream_reads_back_with_matching_sha256(tmp_path, layout):
    n = 4
    naive = dict(reference.decomposition_matrices(n))
    records, _ = stream.write_matrices(
        stream.projector_matrices(n, layout), tmp_path, n, layout, "projectors", panel_entries=2048
    )
    manifest = json.loads((tmp_path / "projectors.json").read_text())
    for shard in manifest["shards"].values():
        assert hashlib.sha256((tmp_path / shard["values"]).read_bytes()).hexdigest() == shard["values_sha256"]
        assert hashlib.sha256((tmp_path / shard["rows"]).read_bytes()).hexdigest() == shard["rows_sha256"]
    assert len(records) == num_paths(n)
    for index, record in enumerate(records):
        assert (stream.read_matrix(tmp_path, "projectors", index) - naive[tuple(record["label"])]).abs().max() < 1e-12


def test_spherical_orthogonality_is_exact_and_square():
    assert stream.spherical_orthogonality_error(6) < 1e-12
    assert sum(trinomial(6, m) ** 2 for m in range(-6, 7)) == central_trinomial(12)  # sum of block sizes squared


def test_cartesian_orthogonality_probe():
    probes = torch.randn(3**5, 3, generator=generator(), dtype=torch.float64)
    assert stream.cartesian_orthogonality_probe(5, probes / probes.norm(dim=0)) < 1e-12


# Hom(S, S') and the Algorithm-4 layer -------------------------------------------------------------------


def o3_commutant_dimension(space_in: Space, space_out: Space) -> int:
    """dim {X : X D_in(g) = D_out(g) X} from three generic rotations and the inversion (row-major vec)."""
    rows = []
    elements = [(r, False) for r in checks.random_rotations(3, generator(7))]
    elements.append((torch.eye(3, dtype=torch.float64), True))
    for rotation, improper in elements:
        d_in, d_out = space_in.representation(rotation, improper), space_out.representation(rotation, improper)
        rows.append(
            torch.kron(torch.eye(space_out.dim, dtype=torch.float64), d_in.T.contiguous())
            - torch.kron(d_out, torch.eye(space_in.dim, dtype=torch.float64))
        )
    singular = torch.linalg.svdvals(torch.cat(rows))
    return int((singular < 1e-9).sum())


@pytest.mark.parametrize(
    "pair",
    [
        ("1o x 1o", "1o x 1o"),
        ("1o x 2e + 3o", "1o + 2o x 1e + 3o"),
        ("1o x 1o", "2e + 0e"),
        ("1o x 1o", "2o + 1o"),
        ("1o", "1e"),
        ("2e x 1o", "1o x 2e"),
    ],
)
def test_hom_basis_is_equivariant_orthogonal_and_complete(pair):
    # parity per space: the official equivariant_bases.py gives S' the parity of S, so (1o x 1o -> 2o + 1o)
    # and (1o -> 1e) would get elements that fail the inversion below; both must be empty here
    space_in, space_out = Space.parse(pair[0]), Space.parse(pair[1])
    basis = hom_basis(space_in, space_out)
    assert len(basis) == hom_dimension(space_in, space_out) == o3_commutant_dimension(space_in, space_out)
    for rotation in checks.random_rotations(2, generator(3)):
        for improper in (False, True):
            d_in, d_out = space_in.representation(rotation, improper), space_out.representation(rotation, improper)
            assert all((b @ d_in - d_out @ b).abs().max() < 1e-10 for _, b in basis)
    if basis:
        flat = torch.stack([b.reshape(-1) for _, b in basis])
        expected = torch.tensor([2 * p.weights[-1] + 1 for (p, _), _ in basis], dtype=torch.float64)
        assert (flat @ flat.T - torch.diag(expected)).abs().max() < 1e-12


def test_hom_of_cartesian_spaces_is_the_end_basis():
    assert space_mult(Space.cartesian(4)) == {(l, 1): m for l, m in enumerate(multiplicities(4)) if m}
    assert len(hom_basis(Space.cartesian(3), Space.cartesian(3))) == end_dimension(3)


def test_algo4_layer_spans_hom_with_one_weight_per_basis_element():
    # the layer equals sum_pq W[q, p] P'_q P_p^T, is O(3)-equivariant and has dim Hom weights
    space_in, space_out = Space.parse("1o x 1o + 2e"), Space.parse("1o x 1o x 1o + 1e")
    layer = EquivariantLinear(space_in, space_out, generator=generator(1))
    assert layer.num_weights == hom_dimension(space_in, space_out)
    from components.ict.hom import space_path_matrix

    expected = sum(
        layer.mix[g][qi, pi].detach() * space_path_matrix(space_out, q) @ space_path_matrix(space_in, p).T
        for g, (ins, outs) in enumerate(zip(layer.paths_in, layer.paths_out))
        for qi, q in enumerate(outs)
        for pi, p in enumerate(ins)
    )
    assert (layer.as_matrix() - expected).abs().max() < 1e-12
    x = torch.randn(4, space_in.dim, generator=generator(2), dtype=torch.float64)
    rotation = checks.random_rotations(1, generator(4))[0]
    for improper in (False, True):
        d_in, d_out = space_in.representation(rotation, improper), space_out.representation(rotation, improper)
        assert (layer(x @ d_in.T) - layer(x) @ d_out.T).abs().max() < 1e-10


# The component ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["test", "smoke", "paper"])
def test_every_preset_validates(preset, params):
    cfg = resolve_config(component, preset, params.get("ict"))
    assert isinstance(cfg, component.Config)


def test_paper_preset_is_the_papers_largest_rank(params):
    cfg = resolve_config(component, "paper", params.get("ict"))
    assert cfg.n == 9 and cfg.mode == "projectors" and cfg.dtype == "float64" and not cfg.write
    assert component.random_step(cfg) is None


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"n": 9, "write": True}, "write"),
        ({"mode": "algo4_layer", "n": 9}, "n"),
        ({"mode": "projectors", "layout": "dense", "n": 9}, "layout"),
        ({"mode": "spherical"}, "mode"),
    ],
)
def test_bad_config_names_the_key(params, overrides, key):
    with pytest.raises(ConfigError, match=key):
        resolve_config(component, "smoke", params.get("ict"), overrides)


def test_test_preset_is_deterministic_and_writes_its_files(params, tmp_path):
    request = plan_run("ict", params, preset="test", seed=1, data_dir=tmp_path)
    first = execute(request, run_root=tmp_path / "a", data_dir=tmp_path, show_progress=False)
    second = execute(request, run_root=tmp_path / "b", data_dir=tmp_path, show_progress=False)
    assert first.metrics == second.metrics
    assert first.metrics["projectors/count"] == num_paths(3) and first.metrics["projectors/max_frobenius_err"] < 1e-12
    assert (first.run_dir / "summary.md").is_file() and (first.run_dir / "projectors" / "projectors.json").is_file()
    assert (
        json.loads((first.run_dir / "projectors_checksums.json").read_text())["fingerprint"]
        == json.loads((second.run_dir / "projectors_checksums.json").read_text())["fingerprint"]
    )


@pytest.mark.parametrize("mode", ["path_mats", "isotypic", "end_basis", "algo4_layer"])
def test_every_mode_runs(params, tmp_path, mode):
    overrides = {"mode": mode, "n": 4, "check_ranks": 0}
    request = plan_run("ict", params, preset="test", overrides=overrides, data_dir=tmp_path)
    metrics = execute(request, run_root=tmp_path, data_dir=tmp_path, show_progress=False).metrics
    assert metrics["orth_err"] < 1e-12
    if mode == "path_mats":
        assert metrics["path_mats/count"] == 19 and metrics["path_mats/orth_probe_err"] < 1e-12
    if mode == "isotypic":
        assert metrics["isotypic/count"] == 5 and metrics["isotypic/max_frobenius_err"] < 1e-10
    if mode == "end_basis":
        assert metrics["end/count"] == 91 == metrics["end/rank"] and metrics["end/gram_offdiag"] < 1e-12
    if mode == "algo4_layer":
        assert metrics["layer/num_weights"] == 91 and metrics["layer/equiv_err"] < 1e-10
        assert metrics["layer/vs_basis_err"] < 1e-12


# Guards written for the mutation table (tests/mutants/ict.py) ---------------------------------------------


def test_algo4_layer_mixes_every_weight_block():
    # Algorithm 4 with several weights at once: z = Q^T x is cut into consecutive blocks z_l (m_l x (2l+1)), each
    # mixed by its own W_l; the layer must equal sum_pq W[q, p] P'_q P_p^T and stay equivariant
    from components.ict.hom import space_path_matrix

    space_in, space_out = Space.parse("1o x 1o x 1o + 1o"), Space.parse("1o x 1o x 1o + 2o x 1e")
    layer = EquivariantLinear(space_in, space_out, generator=generator(11))
    assert len(layer.keys) >= 3  # several blocks: an offset error between them cannot hide
    expected = sum(
        layer.mix[g][qi, pi].detach() * space_path_matrix(space_out, q) @ space_path_matrix(space_in, p).T
        for g, (ins, outs) in enumerate(zip(layer.paths_in, layer.paths_out))
        for qi, q in enumerate(outs)
        for pi, p in enumerate(ins)
    )
    assert (layer.as_matrix() - expected).abs().max() < 1e-12
    rotation = checks.random_rotations(1, generator(12))[0]
    x = torch.randn(3, space_in.dim, generator=generator(13), dtype=torch.float64)
    for improper in (False, True):
        d_in, d_out = space_in.representation(rotation, improper), space_out.representation(rotation, improper)
        assert (layer(x @ d_in.T) - layer(x) @ d_out.T).abs().max() < 1e-10

    # negative control: the same comparison fails for a forward pass that reads every block from offset 0
    def every_block_from_zero(inputs):
        z = inputs @ layer.q_in
        pieces = []
        for (l, _), ins, weight in zip(layer.keys, layer.paths_in, layer.mix):
            block = z[..., : len(ins) * (2 * l + 1)].unflatten(-1, (len(ins), 2 * l + 1))
            pieces.append(torch.einsum("oi,...ic->...oc", weight, block).flatten(-2))
        return torch.cat(pieces, -1) @ layer.q_out.T

    with torch.no_grad():
        wrong = every_block_from_zero(torch.eye(space_in.dim, dtype=torch.float64)).T
    assert (wrong - expected).abs().max() > 0.1


def test_small_chunks_give_the_same_path_matrices_and_projectors():
    # streaming in chunks (one path per chunk here) must give each chunk its own prefixes: the same P_p and D_p
    # as the naive reference; the chunk count shows the stream really was cut
    n = 4
    naive = dict(reference.path_matrices(n))
    chunks = list(stream.cartesian_path_matrices(n, max_chunk_entries=1))
    assert len(chunks) == num_paths(n)  # one path per chunk: a chunk reusing another's prefixes would show
    found = dict(stream.all_cartesian_path_matrices(n, max_chunk_entries=1))
    assert sorted(found) == sorted(naive)
    assert max((found[p] - m).abs().max().item() for p, m in naive.items()) < 1e-13
    dense = {p: m @ m.T for p, m in naive.items()}
    for layout in ("spherical", "dense"):
        for bm in stream.projector_matrices(n, layout, max_chunk_entries=1):
            assert (stream.to_dense(bm, n, layout) - dense[bm.label]).abs().max() < 1e-12
    # negative control: two paths with the same end weight have different P_p, so swapped prefixes are visible
    same_end = [p for p in naive if p[-1] == 1][:2]
    assert (naive[same_end[0]] - naive[same_end[1]]).abs().max() > 0.1


def test_run_draws_from_its_seed(params, tmp_path):
    # a run is a function of (config, seed): the same seed repeats the layer's weights and inputs, another seed
    # draws other ones (a seed ignored gives every seed the same numbers)
    overrides = {"mode": "algo4_layer", "n": 2, "check_ranks": 0}

    def output_norm(seed, name):
        request = plan_run("ict", params, preset="test", overrides=overrides, seed=seed, data_dir=tmp_path)
        return execute(request, run_root=tmp_path / name, data_dir=tmp_path, show_progress=False).metrics[
            "layer/output_norm"
        ]

    first, again, other = output_norm(1, "a"), output_norm(1, "b"), output_norm(2, "c")
    assert first == again
    assert abs(first - other) > 1e-6


def test_algo4_layer_weights_come_from_the_generator():
    # the layer's initial W_l are drawn from the generator it is given, not from the global RNG: with the global
    # RNG in the same state, generators of different seeds give different layers, equal seeds equal ones
    space = Space.cartesian(2)

    def weights(seed):
        torch.manual_seed(123)  # the global RNG in the same state for every build
        layer = EquivariantLinear(space, space, generator=generator(seed))
        torch.randn(1)  # and moved on afterwards: only the generator may decide the weights
        return torch.cat([w.detach().reshape(-1) for w in layer.mix])

    first, again, other = weights(5), weights(5), weights(6)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


def test_checksum_metrics_detect_a_family_that_does_not_sum_to_the_identity():
    # identity_sum_err = |sum of every entry of sum_p D_p - 3^n|, from the streamed upper triangles
    # (whole matrix = 2 upper - diagonal): ~0 for the complete family, and the exact missing amount otherwise
    from components.ict.component import checksum_metrics

    n = 3
    matrices = list(stream.projector_matrices(n, "dense"))
    sums = [stream.stream_matrix(bm, panel_entries=1024) for bm in matrices]
    complete = checksum_metrics([bm.weight for bm in matrices], sums, n, "projectors")
    assert complete["projectors/identity_sum_err"] < 1e-10
    assert complete["projectors/max_trace_err"] < 1e-12 and complete["projectors/max_frobenius_err"] < 1e-12
    # negative control: without the top path the family no longer sums to I, by exactly its entries' sum
    top = tuple(range(n + 1))
    keep = [i for i, bm in enumerate(matrices) if bm.label != top]
    missing = dict(reference.decomposition_matrices(n))[top].sum().item()
    incomplete = checksum_metrics([matrices[i].weight for i in keep], [sums[i] for i in keep], n, "projectors")
    assert missing > 1.0 and abs(incomplete["projectors/identity_sum_err"] - missing) < 1e-10


@pytest.mark.parametrize("tile_rows", [1024, 2])
def test_spherical_orthogonality_check_detects_a_skewed_path(monkeypatch, tile_rows):
    # the reported orth_err is max|Q^T Q - I| over all entries: exact for the real paths, and large when one path
    # column is tilted towards another of the same M while keeping unit norm (a norm-only check sees 0); the
    # last two rows of the largest block, so with 2-row tiles only the last diagonal tile can see it
    n = 4
    assert stream.spherical_orthogonality_error(n, tile_rows=tile_rows) < 1e-12
    original = stream.magnetic_block

    def skewed(prefixes, n, big_m, start=0, stop=None):
        block = original(prefixes, n, big_m)  # the whole block, tilted, then the rows asked for
        if big_m == 0:
            tilted = block[-2] + block[-1]
            block[-2] = tilted / tilted.norm()
        return block[start:stop]

    monkeypatch.setattr(stream, "magnetic_block", skewed)
    assert stream.spherical_orthogonality_error(n, tile_rows=tile_rows) > 0.5


@pytest.mark.parametrize("n", range(1, 8))
def test_streamed_orthogonality_check_equals_the_all_blocks_oracle(n):
    # the run's check cuts each M-block of Q from the depth n-1 prefixes and forms its Gram tile by tile over the
    # upper triangle; the oracle keeps every block, cut from the whole path vectors, and forms each Gram whole.
    # The blocks must be bitwise equal (same products); max|Q^T Q - I| equal up to the GEMM's rounding order
    oracle = reference.spherical_q_blocks(n)
    prefixes = stream.spherical_prefixes(n)
    assert sorted(oracle) == list(range(-n, n + 1))
    for big_m, block in oracle.items():
        assert torch.equal(stream.magnetic_block(prefixes, n, big_m), block)
        start, stop = block.shape[0] // 3, block.shape[0] // 2  # a slice is the same rows of the block
        assert torch.equal(stream.magnetic_block(prefixes, n, big_m, start, stop), block[start:stop])
    expected = reference.spherical_orthogonality_error(n)
    for tile_rows in (1024, 7 if n <= 5 else 100):  # one tile per block, and many (each cut anew: slow)
        found = stream.spherical_orthogonality_error(n, tile_rows=tile_rows)
        assert found < 1e-13 and abs(found - expected) < 1e-14


def test_orthogonality_check_refuses_a_non_square_basis(monkeypatch):
    # a path lost from the stream leaves block M with fewer rows than its T(n, M) columns: orth_err is inf
    original = stream.magnetic_height
    monkeypatch.setattr(stream, "magnetic_height", lambda prefixes, n, big_m: original(prefixes, n, big_m) - 1)
    assert stream.spherical_orthogonality_error(4) == math.inf


def test_paper_path_every_projector_of_rank_eight(params, tmp_path):
    # The paper preset end to end, shrunk only in the rank: n = 9 (the paper's largest) takes 25 s here (16 s
    # stream, 6 s exact orthogonality), past the ~20 s budget, so n = 8 (5.6 s), everything else the paper's.
    # The "input" is the rank-n Cartesian tensor, 3^8 = 6561 components; every one of the 1107 D_p is streamed.
    from tests.paper_path import run_paper_path

    n = 8
    result = run_paper_path("ict", params, {"n": n}, tmp_path / "data", tmp_path / "runs")
    metrics = result.metrics
    assert result.status == "completed" and all(math.isfinite(v) for v in metrics.values())
    assert metrics["n"] == n and metrics["num_paths"] == TABLE[n][1] == metrics["projectors/count"]
    assert metrics["dim_end"] == TABLE[n][3]
    # the family sums to the 3^n x 3^n identity and each D_p is an orthogonal projector of rank 2 j_n + 1
    assert metrics["projectors/identity_sum_err"] < 1e-8 and metrics["projectors/max_frobenius_err"] < 1e-10
    assert metrics["projectors/max_trace_err"] < 1e-10 and metrics["orth_err"] < 1e-12
    assert metrics["checks/orth_err"] < 1e-10 and "checks/iso_vs_e3nn_err" in metrics  # checks n = 1..5 ran
    saved = json.loads((result.run_dir / "paths.json").read_text())
    assert saved["n"] == n and len(saved["paths"]) == TABLE[n][1] and len(saved["paths"][0]) == n + 1
    table = json.loads((result.run_dir / "projectors_checksums.json").read_text())
    assert len(table["checksums"]) == TABLE[n][1] and (result.run_dir / "summary.md").is_file()
    assert sum(row[0] for row in table["checksums"]) == metrics["projectors/entries"] > 0
