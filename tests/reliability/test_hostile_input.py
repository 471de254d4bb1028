"""Hostile input against one running service: 4xx (or 200 for odd but valid data), never 5xx, nothing leaked."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.deployment import Deployment, ServiceProcess, prepare_deployment, serving
from reliability.hostile_input import HOSTILE_CASES, HostileCase, check_hostile_case, check_log_hygiene

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path) -> Deployment:
    config, _ = trained
    return prepare_deployment(
        tmp_path_factory.mktemp("reliability-hostile"),
        config.tracking_uri,
        small_history / "declarations.parquet",
        small_history / "seizures.parquet",
    )


@pytest.fixture(scope="module")
def service(deployment: Deployment):
    with serving(deployment.env, deployment.folder / "hostile.log") as running:
        yield running


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=[case.name for case in HOSTILE_CASES])
def test_hostile_request_is_refused_or_stored_never_a_server_error(
    deployment: Deployment, service: ServiceProcess, case: HostileCase
) -> None:
    result = check_hostile_case(deployment, service.base, case)
    assert result.passed, f"{result.figures}: {result.problems}"


def test_sql_text_is_data_and_the_audit_table_survives(
    deployment: Deployment, service: ServiceProcess
) -> None:
    (case,) = [c for c in HOSTILE_CASES if c.name == "SQL in every text field"]
    result = check_hostile_case(deployment, service.base, case)
    assert result.passed, result.problems
    assert "stored verbatim" in result.figures


def test_no_token_and_no_declaration_in_the_log(deployment: Deployment, service: ServiceProcess) -> None:
    # Runs after the hostile cases of this module: their declarations carry the marker.
    result = check_log_hygiene(deployment, service.log_path)
    assert result.passed, result.problems
    assert service.log_path.stat().st_size > 0
