"""Mutants of uba (the unified budget-aware schedule): see tests/mutants/harness.py."""

from tests.mutants.harness import Mutant

MUTANTS = [
    Mutant(
        name="phi-numerator-dropped",
        kind="contribution",
        guards="the UBA shape's phi term: eta(T/2) = 2/(2+phi)",
        file="components/core/schedules.py",
        find="return 2.0 * u / (2.0 * phi + (2.0 - phi) * u)",
        replace="return 2.0 * u / (2.0 + (2.0 - phi) * u)",
    ),
]
