"""Hostile training input through the real CLI (`reliability.training_input`, part of `make reliability`).

One run of every case on a 4,000-declaration history (about 20 s); each case checks its
own exact outcome (exit codes, reject rows, columns and reasons, what the MLflow run
records, scores against a history without the bad rows), and these tests fail on any
problem it reports.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from reliability.checks import CheckResult
from reliability.training_input import run_training_input_faults

pytestmark = pytest.mark.slow

CASES = [
    "training input: duplicated seizure id (identical copy)",
    "training input: duplicated seizure id (conflicting rows)",
    "training input: seizure before its declaration",
    "training input: seizure before the exporter's first declaration",
    "training input: declaration filed in 2199",
    "training input: seizure dated 2199",
    "training input: seizure after the data's end",
    "training input: 10% malformed rows",
    "training input: 0.5% malformed rows",
    "training input: bad-file corpus through train",
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("input-faults")


@pytest.fixture(scope="module")
def results(scratch: Path) -> dict[str, CheckResult]:
    """All cases, run from an empty current directory (to see that nothing lands there)."""
    (scratch / "cwd").mkdir()
    previous = Path.cwd()
    os.chdir(scratch / "cwd")
    try:
        rows = run_training_input_faults(scratch / "work")
    finally:
        os.chdir(previous)
    return {row.test: row for row in rows}


def test_one_row_per_case(results: dict[str, CheckResult]) -> None:
    assert list(results) == CASES
    assert all(row.fault and row.figures for row in results.values())


@pytest.mark.parametrize("case", CASES)
def test_case_behaves_as_the_contract_says(results: dict[str, CheckResult], case: str) -> None:
    row = results[case]
    assert row.passed, "\n".join(row.problems)


def test_figures_report_what_happened(results: dict[str, CheckResult]) -> None:
    assert re.search(
        r"validate exit 2, backtest exit 2; 2 of \d+ seizure rows rejected",
        results["training input: duplicated seizure id (identical copy)"].figures,
    )
    assert "identical copies" in results["training input: duplicated seizure id (identical copy)"].figures
    assert "they differ in seized_at" in (
        results["training input: duplicated seizure id (conflicting rows)"].figures
    )
    future = results["training input: declaration filed in 2199"].figures
    assert "train exit 0; 1 declaration rows rejected" in future and "in the future" in future
    over = results["training input: 10% malformed rows"].figures
    assert "validate exit 2, train exit 2; 400 of 4000 rows rejected; 0 model versions registered" in over
    under = results["training input: 0.5% malformed rows"].figures
    assert "train exit 0" in under and "20 of 4000 rows rejected, the MLflow run records 20" in under
    assert "identical to the history without them" in under


def test_mlflow_artifacts_stay_in_the_workdir(results: dict[str, CheckResult], scratch: Path) -> None:
    assert list((scratch / "cwd").iterdir()) == []  # no ./mlruns, no ./outputs
    assert any((scratch / "work" / "mlartifacts").iterdir())
