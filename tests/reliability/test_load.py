"""Load: concurrent single and batch scoring with the audit trail on; no error, one audit row per acknowledged declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.deployment import Deployment, prepare_deployment
from reliability.load import LoadRun, check_load, run_load


def _run(**changes: object) -> LoadRun:
    values: dict = {
        "clients": 50,
        "duration": 60.0,
        "batch_rows": 100,
        "seconds": 60.0,
        "single_latencies_ms": [10.0] * 99 + [200.0],
        "batch_latencies_ms": [80.0] * 25,
        "acknowledged_declarations": 100 + 25 * 100,
        "errors": [],
        "audit_rows": 100 + 25 * 100,
    }
    values.update(changes)
    return LoadRun(**values)


def test_check_load_passes_only_without_errors_and_with_one_audit_row_per_acknowledged_declaration() -> None:
    assert check_load(_run()).passed
    assert "p50 10 ms" in check_load(_run()).figures
    assert not check_load(_run(errors=["HTTP 503: not ready"])).passed
    assert not check_load(_run(audit_rows=2599)).passed  # an acknowledged decision missing
    assert not check_load(_run(audit_rows=2601)).passed  # a decision recorded but never acknowledged
    assert not check_load(
        _run(single_latencies_ms=[], batch_latencies_ms=[], acknowledged_declarations=0, audit_rows=0)
    ).passed


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path) -> Deployment:
    config, _ = trained
    return prepare_deployment(
        tmp_path_factory.mktemp("reliability-load"),
        config.tracking_uri,
        small_history / "declarations.parquet",
        small_history / "seizures.parquet",
    )


@pytest.mark.integration
@pytest.mark.slow
def test_concurrent_single_and_batch_scoring_is_error_free_and_fully_audited(deployment: Deployment) -> None:
    # Reduced for the test suite (two test workers share two cores); `make reliability` runs 50 clients for 60 s.
    run = run_load(deployment, clients=12, duration=8.0, batch_rows=20, batch_every=4)
    result = check_load(run)
    assert result.passed, f"{result.figures}: {result.problems}"
    assert run.single_latencies_ms and run.batch_latencies_ms
    assert run.acknowledged_declarations == len(run.single_latencies_ms) + 20 * len(run.batch_latencies_ms)
    assert run.audit_rows == run.acknowledged_declarations
