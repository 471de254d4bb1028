"""Faults: kill -9 under load loses no acknowledged decision; broken dependencies mean not ready, never a score."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.crash import (
    RECOVERY_TARGET_SECONDS,
    CrashRun,
    check_crash_durability,
    check_crash_recovery,
    check_truncated_model,
    check_unreachable_audit_db,
    postgres_unreachable,
    run_crash,
    run_postgres_crash,
)
from reliability.deployment import Deployment, prepare_deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path) -> Deployment:
    config, _ = trained
    return prepare_deployment(
        tmp_path_factory.mktemp("reliability-faults"),
        config.tracking_uri,
        small_history / "declarations.parquet",
        small_history / "seizures.parquet",
    )


@pytest.fixture(scope="module")
def crash(deployment: Deployment) -> CrashRun:
    return run_crash(deployment, clients=4, duration=10.0)


def test_kill_9_under_load_loses_no_acknowledged_decision(crash: CrashRun) -> None:
    result = check_crash_durability(crash)
    assert crash.acknowledged_before_kill > 0
    assert crash.lost == []
    assert crash.integrity == "ok"
    assert crash.ready_again and crash.acknowledged_after_restart > 0
    assert result.passed, result.problems


def test_recovery_after_kill_9_within_target(crash: CrashRun) -> None:
    result = check_crash_recovery(crash)
    assert crash.recovery_seconds is not None, crash.restart_error
    # CI runs two test workers on two cores: bound hangs here; `make reliability` checks the 10 s target
    assert crash.recovery_seconds <= 3 * RECOVERY_TARGET_SECONDS, result.problems


def test_truncated_model_artifact_means_not_ready_and_checksum_mismatch_logged(
    deployment: Deployment, trained
) -> None:
    config, _ = trained
    result = check_truncated_model(deployment, config.registered_model)
    assert result.passed, result.problems
    assert "checksum mismatch" in result.figures


def test_truncation_touches_only_the_copy(deployment: Deployment, trained) -> None:
    """The original registered model still loads after the broken-model check ran on a copy."""
    from serving.engine import load_model
    from serving.settings import ServiceSettings

    config, outcome = trained
    check_truncated_model(deployment, config.registered_model)
    loaded = load_model(ServiceSettings(tracking_uri=config.tracking_uri, model_name=config.registered_model))
    assert loaded.version == outcome.model_version


def test_unreachable_audit_database_means_not_ready_with_a_clear_log_line(deployment: Deployment) -> None:
    result = check_unreachable_audit_db(deployment)
    assert result.passed, result.problems


@pytest.mark.postgres
def test_kill_9_with_the_audit_store_on_postgresql_loses_nothing_and_recovers(deployment: Deployment) -> None:
    unreachable = postgres_unreachable()
    if unreachable:
        pytest.skip(f"PostgreSQL not reachable: {unreachable}")
    run = run_postgres_crash(deployment, clients=4, duration=10.0)
    result = check_crash_durability(run)
    assert run.backend == "PostgreSQL"
    assert run.acknowledged_before_kill > 0 and run.acknowledged_after_restart > 0
    assert run.lost == [] and run.integrity == "ok"
    assert run.audit_rows >= len(run.acknowledged)
    assert result.passed, result.problems
    assert result.test == "crash (PostgreSQL): acknowledged = audited"
    assert run.recovery_seconds is not None, run.restart_error
    assert run.recovery_seconds <= 3 * RECOVERY_TARGET_SECONDS, check_crash_recovery(run).problems
