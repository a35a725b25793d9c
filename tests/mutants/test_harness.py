"""The mutation harness itself (tests/mutants/harness.py), on a toy tree, and every component's table: it exists,
it is big enough, it names both kinds of mutant, and none is stale (the full `make mutants` run is not part
of `make test`; a mutant whose text the code no longer has is caught here, at once)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from components.registry import REGISTRY
from tests.mutants.harness import Mutant, confirm_baseline, load_table, slugs_with_tables, staleness, try_mutant

ROOT = Path(__file__).resolve().parents[2]
MIN_MUTANTS = 5
USED = ("components/", "pipelines/datasets/")  # the science, and the prepare code that writes its data


@pytest.mark.parametrize("slug", sorted(REGISTRY))
def test_every_component_has_a_fresh_table(slug):
    assert slug in slugs_with_tables(), f"tests/mutants/{slug}.py is missing"
    mutants = load_table(slug)
    assert len(mutants) >= MIN_MUTANTS
    assert {m.kind for m in mutants} == {"contribution", "bug"}
    stale = {m.name: why for m in mutants if (why := staleness(m, ROOT))}
    assert not stale, f"stale mutants of {slug} (the code moved; move the mutant with it): {stale}"
    for m in mutants:
        assert m.file.startswith(USED), f"{slug}/{m.name} changes {m.file}, outside what components use {USED}"
        for killer in m.killers:
            assert (ROOT / killer.split("::")[0]).is_file(), f"{slug}/{m.name}: no test file for {killer}"


@pytest.fixture
def toy(tmp_path) -> Path:
    """components/toy/calc.py and its tests: one that checks the value, one that always fails."""
    files = {
        "components/__init__.py": "",
        "components/toy/__init__.py": "",
        "components/toy/calc.py": "def double(x):\n    return 2 * x\n",
        "tests/components/test_toy.py": """
            from components.toy.calc import double

            def test_double_is_twice():
                assert double(3) == 6

            def test_double_returns_an_int():
                double(1).bit_length()
        """,
        "tests/components/test_broken.py": "def test_always_fails():\n    assert False\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def toy_mutant(find: str, replace: str, **extra) -> Mutant:
    return Mutant("m", "bug", "toy", "components/toy/calc.py", find, replace, **extra)


def test_outcomes_are_told_apart(toy):
    killed = try_mutant("toy", toy_mutant("2 * x", "3 * x"), toy, timeout=120)
    assert (killed.status, killed.test) == ("killed", "tests/components/test_toy.py::test_double_is_twice")
    assert "AssertionError" in killed.detail

    survived = try_mutant("toy", toy_mutant("2 * x", "x + x"), toy, timeout=120)
    assert survived.status == "survived"

    crashed = try_mutant("toy", toy_mutant("2 * x", "2.0 * x"), toy, timeout=120)  # AttributeError, no assertion
    assert crashed.status == "crashed" and "AttributeError" in crashed.detail

    stale = try_mutant("toy", toy_mutant("4 * x", "5 * x"), toy, timeout=120)
    assert stale.status == "stale" and "occurs 0 times" in stale.detail

    hangs = toy_mutant("    return 2 * x", "    while True:\n        pass")
    assert try_mutant("toy", hangs, toy, timeout=3).status == "timeout"

    assert (toy / "components/toy/calc.py").read_text() == "def double(x):\n    return 2 * x\n"  # restored


def test_a_killer_that_fails_unmutated_proves_nothing(toy):
    hinted = toy_mutant("2 * x", "x + x", killers=("tests/components/test_broken.py::test_always_fails",))
    outcome = try_mutant("toy", hinted, toy, timeout=120)
    assert outcome.status == "killed"
    confirm_baseline([outcome], toy, timeout=120)
    assert outcome.status == "baseline-fails"
