"""The fields data stage: simulated PDE trajectories (pde-fields) and a user's own .npy/.npz fields (fields-file),
written as versioned float64 arrays with a manifest; noise is drawn when a run reads a trajectory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.core.errors import ConfigError, DataError
from components.core.fields import FieldDataset
from components.core.pdes import JET, PDES
from components.di_sindy.derivatives import jets
from pipelines.datasets import check_spec, prepare, verify


def prepared(root, pde="kdv", **options):
    prepare(f"fields/{pde}", {"source": "pde-fields", "pde": pde, "trajectories": 3, **options}, root)
    return FieldDataset(root, f"fields/{pde}")


def test_pde_fields_are_reproducible_with_a_manifest(tmp_path):
    first = prepared(tmp_path / "a")
    second = prepared(tmp_path / "b")
    for name in ("x", "t", "train", "test", "manifest"):
        suffix = "json" if name == "manifest" else "npy"
        assert (tmp_path / "a/fields/kdv" / f"{name}.{suffix}").read_bytes() == (
            tmp_path / "b/fields/kdv" / f"{name}.{suffix}"
        ).read_bytes()
    manifest = first.manifest
    assert manifest["kind"] == "fields" and manifest["source"] == "pde-fields" and manifest["generator_version"] == 1
    assert manifest["grid"] == {"n_x": 64, "n_t": 101, "length": 20.0, "dt": pytest.approx(0.01), "periodic": True}
    assert manifest["pde"]["rhs"] == {"u*u_x": -1.0, "u_xxx": -1.0}
    assert manifest["splits"]["train"]["shape"] == [2, 101, 64] and manifest["splits"]["test"]["shape"] == [1, 101, 64]
    assert verify(tmp_path / "a") == ["fields/kdv"]
    assert np.allclose(first.x, -10 + 20 * np.arange(64) / 64)
    assert second.count("train") == 2


def test_splits_hold_distinct_initial_conditions(tmp_path):
    data = prepared(tmp_path, trajectories=4, test_trajectories=2)
    everything = np.concatenate([data.arrays["train"], data.arrays["test"]])
    assert data.count("train") == 2 and data.count("test") == 2
    starts = everything[:, 0]
    assert all(not np.allclose(starts[i], starts[j]) for i in range(4) for j in range(i + 1, 4))
    bigger = prepared(tmp_path / "more", trajectories=5, test_trajectories=2)  # trajectory i depends on (seed, i)
    assert np.array_equal(bigger.arrays["train"][:2], data.arrays["train"])


@pytest.mark.parametrize(
    "pde, scale, shape, limit",
    [
        ("kdv", "smoke", (101, 64), 1e-2),  # central-difference u_t at dt 0.01 dominates (3.6e-3)
        ("burgers", "smoke", (201, 128), 1e-3),
        ("ks", "smoke", (401, 256), 1e-3),
        ("mkdv", "smoke", (101, 64), 5e-2),
    ],
)
def test_simulated_fields_satisfy_their_equation(tmp_path, pde, scale, shape, limit):
    """The ETDRK4 fields at the spec's resolution obey u_t = rhs (the sign conventions of di_sindy.md §3.3)."""
    data = prepared(tmp_path, pde=pde, trajectories=1, test_trajectories=0, scale=scale)
    u = data.trajectory("train", 0)
    assert u.shape == shape
    d = jets(u, data.dt, data.length)
    rhs = sum(c * np.prod([d[JET[i]] ** p for i, p in enumerate(m)], axis=0) for m, c in PDES[pde].rhs.items())
    residual = np.linalg.norm(d["u_t"] - rhs) / np.linalg.norm(d["u_t"])
    assert residual < limit
    wrong_sign = sum(-c * np.prod([d[JET[i]] ** p for i, p in enumerate(m)], axis=0) for m, c in PDES[pde].rhs.items())
    assert np.linalg.norm(d["u_t"] - wrong_sign) / np.linalg.norm(d["u_t"]) > 1


def test_noise_is_drawn_at_read_time(tmp_path):
    data = prepared(tmp_path)
    stored = (tmp_path / "fields/kdv/train.npy").read_bytes()
    clean = data.trajectory("train", 0)
    noisy = data.trajectory("train", 0, noise=0.01, seed=3)
    assert np.array_equal(clean, data.arrays["train"][0])
    assert (noisy - clean).std() == pytest.approx(0.01 * clean.std(), rel=0.02)  # relative to std(u)
    assert np.array_equal(noisy, data.trajectory("train", 0, noise=0.01, seed=3))
    other_seed = data.trajectory("train", 0, noise=0.01, seed=4) - clean
    other_trial = data.trajectory("train", 1, noise=0.01, seed=3) - data.arrays["train"][1]
    for other in (other_seed, other_trial):  # independent draws per seed and per trajectory
        assert abs(np.corrcoef((noisy - clean).ravel(), other.ravel())[0, 1]) < 0.05
    assert (tmp_path / "fields/kdv/train.npy").read_bytes() == stored


def test_a_users_npz_and_npy_become_fields(tmp_path):
    x = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    t = 0.1 * np.arange(10)
    u = np.stack([np.sin(x[None] - t[:, None] * (i + 1)) for i in range(3)])
    np.savez(tmp_path / "mine.npz", u=u, x=x, t=t)
    prepare(
        "fields/mine", {"source": "fields-file", "path": str(tmp_path / "mine.npz"), "test_trajectories": 1}, tmp_path
    )
    data = FieldDataset(tmp_path, "fields/mine")
    assert data.count("train") == 2 and data.count("test") == 1
    assert data.length == pytest.approx(2 * np.pi) and data.dt == pytest.approx(0.1)
    assert np.array_equal(data.arrays["test"][0], u[2]) and data.pde == {"name": "unknown"}
    np.save(tmp_path / "single.npy", u[0])
    spec = {"source": "fields-file", "path": str(tmp_path / "single.npy"), "length": 6.0, "dt": 0.5, "pde": "kdv"}
    prepare("fields/single", spec, tmp_path)
    single = FieldDataset(tmp_path, "fields/single")
    assert single.arrays["train"].shape == (1, 10, 32) and single.dt == 0.5 and single.pde["name"] == "kdv"
    assert json.loads((tmp_path / "fields/single/manifest.json").read_text())["grid"]["length"] == pytest.approx(6.0)


def test_bad_fields_are_one_line_errors(tmp_path):
    x = np.linspace(0, 1, 8, endpoint=False)
    cases = {
        "nou.npz": ({"v": np.zeros((4, 8))}, DataError, "no array 'u'"),
        "uneven.npz": ({"u": np.zeros((4, 8)), "x": x**2, "t": np.arange(4.0)}, DataError, "uniform"),
        "nan.npz": ({"u": np.full((4, 8), np.nan), "x": x, "t": np.arange(4.0)}, DataError, "non-finite"),
        "short.npz": ({"u": np.zeros((4, 8)), "x": x[:5], "t": np.arange(4.0)}, DataError, "x 5 points"),
        "nox.npz": ({"u": np.zeros((4, 8))}, ConfigError, "option length"),
    }
    for name, (arrays, error, words) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(error, match=words):
            prepare("fields/bad", {"source": "fields-file", "path": str(tmp_path / name)}, tmp_path)
    with pytest.raises(DataError, match="no file"):
        prepare("fields/bad", {"source": "fields-file", "path": str(tmp_path / "absent.npz")}, tmp_path)
    with pytest.raises(ConfigError, match="option pde of source pde-fields must be one of"):
        check_spec("fields/x", {"source": "pde-fields", "pde": "kdvv"})
    with pytest.raises(ConfigError, match="unknown option 'modes'"):
        check_spec("fields/x", {"source": "pde-fields", "pde": "kdv", "modes": 3})
    with pytest.raises(ConfigError, match="test_trajectories"):
        prepare(
            "fields/kdv", {"source": "pde-fields", "pde": "kdv", "trajectories": 1, "test_trajectories": 1}, tmp_path
        )
    assert not (tmp_path / "fields/bad").exists() and not (tmp_path / "fields/kdv").exists()


def test_a_changed_array_is_caught_when_read(tmp_path):
    prepared(tmp_path)
    path = tmp_path / "fields/kdv/train.npy"
    array = np.load(path)
    array[0, 5, 5] += 1e-9
    path.chmod(0o644)
    np.save(path, array)
    with pytest.raises(DataError, match="sha256"):
        FieldDataset(tmp_path, "fields/kdv")
