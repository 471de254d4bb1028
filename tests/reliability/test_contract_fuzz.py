"""The published contract (/docs.json) and schemathesis fuzzing against it: no 5xx, every answer as documented."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import httpx
import pytest

from reliability.contract_fuzz import (
    FUZZ_CREDENTIALS,
    FuzzRun,
    FuzzSettings,
    check_contract_fuzz,
    run_contract_fuzz,
)
from reliability.deployment import Deployment, prepare_deployment, serving
from serving.middleware import complete_contract

#: Reduced for the test suite (seconds, not minutes); `make reliability` uses every phase.
TEST_FUZZ = FuzzSettings(max_examples=12, phases=("examples", "fuzzing"))
PROTECTED_ROLES = {
    "/score": "scorer",
    "/history/declarations": "analyst",
    "/history/seizures": "analyst",
    "/outcomes": "analyst",
    "/audit/decisions/{declaration_id}": "auditor",
    "/audit/replay/{declaration_id}": "auditor",
    "/audit/challenger-report": "auditor",
    "/model": None,
    "/metrics": "monitor",
}
OPEN = ("/livez", "/readyz", "/healthz")
GUARDED_POSTS = ("/score", "/history/declarations", "/history/seizures", "/outcomes")


# --- the document, without a service ---------------------------------------------------------


def test_pydantic_2020_12_constructs_are_rewritten_in_openapi_3_0_form() -> None:
    document = {
        "openapi": "3.0.2",
        "paths": {},
        "components": {
            "schemas": {
                "Row": {
                    "type": "object",
                    "properties": {
                        "quantity": {"type": "number", "exclusiveMinimum": 0},
                        "broker": {
                            "anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}],
                            "default": None,
                        },
                        "terms": {"anyOf": [{"enum": ["LC", "CAD"], "type": "string"}, {"type": "null"}]},
                        "ref": {"anyOf": [{"$ref": "#/components/schemas/Other"}, {"type": "null"}]},
                        "bounded": {"type": "number", "minimum": 5, "exclusiveMinimum": 0},
                    },
                }
            }
        },
    }
    completed = complete_contract(document)
    row = completed["components"]["schemas"]["Row"]["properties"]
    assert row["quantity"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert row["broker"] == {"type": "string", "maxLength": 64, "default": None, "nullable": True}
    assert row["terms"]["nullable"] is True and row["terms"]["enum"] == ["LC", "CAD", None]
    assert row["ref"] == {"allOf": [{"$ref": "#/components/schemas/Other"}], "nullable": True}
    assert row["bounded"] == {"type": "number", "minimum": 5}
    assert document["components"]["schemas"]["Row"]["properties"]["quantity"] == {
        "type": "number",
        "exclusiveMinimum": 0,
    }, "the input document must not change"


def test_check_contract_fuzz_fails_on_5xx_findings_role_leaks_untested_operations_and_too_few_requests() -> (
    None
):
    clean = FuzzRun(
        credential="scorer",
        exit_code=0,
        seconds=1.0,
        requests=1200,
        statuses={200: 600, 403: 600},
        server_errors=[],
        findings=[],
        errors=[],
        operations_total=11,
        operations_tested=11,
        granted=["POST /score"],
        granted_without_role=[],
        slowest_seconds=0.2,
        slowest_request="POST /score",
        log_path=Path("schemathesis.log"),
    )
    assert check_contract_fuzz([clean]).passed
    broken = {
        "a 5xx": dataclasses.replace(clean, server_errors=["POST /score -> 500"], exit_code=1),
        "a schemathesis finding": dataclasses.replace(
            clean, findings=["ST103 Undocumented status code: POST /score"], exit_code=1
        ),
        "an untestable operation": dataclasses.replace(clean, errors=["Schema Error x1"], exit_code=1),
        "an untested operation": dataclasses.replace(clean, operations_tested=10),
        "a 2xx without the role": dataclasses.replace(clean, granted_without_role=["POST /outcomes -> 200"]),
        "a token that never worked": dataclasses.replace(clean, granted=[]),
        "a silent non-zero exit": dataclasses.replace(clean, exit_code=2),
        "too few requests": dataclasses.replace(clean, requests=999),
    }
    for what, run in broken.items():
        result = check_contract_fuzz([run])
        assert not result.passed, f"{what} passed: {result.figures}"


# --- the document as served, and the guard's answers --------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, trained, small_history: Path) -> Deployment:
    config, _ = trained
    return prepare_deployment(
        tmp_path_factory.mktemp("reliability-fuzz"),
        config.tracking_uri,
        small_history / "declarations.parquet",
        small_history / "seizures.parquet",
    )


@pytest.fixture(scope="module")
def service(deployment: Deployment):
    contract = deployment.with_stores("contract")
    with serving(contract.env, contract.folder / "service.log") as running:
        yield running, contract


def _walk(node: object):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.integration
def test_served_document_is_openapi_3_0_and_documents_tokens_and_every_error_answer(service) -> None:
    running, _ = service
    document = httpx.get(f"{running.base}/docs.json", timeout=30).json()
    assert document["openapi"].startswith("3.0")
    for node in _walk(document):
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node.get("exclusiveMinimum"), bool
        ), node
        assert node.get("type") != "null", node
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "API token issued with `python -m serving.auth`; roles scorer, analyst, auditor, monitor",
    }
    for path, role in PROTECTED_ROLES.items():
        for operation in document["paths"][path].values():
            assert operation["security"] == [{"bearerAuth": []}], path
            assert {"401", "403"} <= set(operation["responses"]), path
            if role:
                assert role in operation["responses"]["403"]["description"], path
    for path in OPEN:
        assert document["paths"][path]["get"]["security"] == [], path
    for path in GUARDED_POSTS:
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True, path
        assert {"413", "415", "422", "503"} <= set(operation["responses"]), path
    assert "409" in document["paths"]["/score"]["post"]["responses"]
    assert {"404", "503"} <= set(document["paths"]["/audit/decisions/{declaration_id}"]["get"]["responses"])
    # what /score answers about targeting rules is documented (schemathesis checks answers against it)
    scored = document["components"]["schemas"]["DeclarationScore"]
    assert {"rules", "rule_set_version"} <= set(scored["required"])
    fired = document["components"]["schemas"]["FiredRule"]["properties"]
    assert {"rule_id", "version", "action", "watchlist_entries"} <= set(fired)
    country = document["components"]["schemas"]["Declaration"]["properties"]["consignee_country"]
    assert "NG" in country["enum"] and "00" not in country["enum"]


@pytest.mark.integration
def test_repeated_declaration_id_in_one_request_is_a_409_naming_both_lines_and_nothing_is_audited(
    service, deployment: Deployment
) -> None:
    running, contract = service
    twice = f"REPEATED-{uuid.uuid4().hex[:8]}"
    declarations = [dict(deployment.records[i], declaration_id=twice) for i in (0, 1)]
    store = contract.open_audit_store()
    try:
        before = store.count()
        response = httpx.post(
            f"{running.base}/score",
            json={"declarations": [deployment.records[2], *declarations]},
            headers=deployment.headers("scorer"),
            timeout=60,
        )
        assert response.status_code == 409, response.text
        (error,) = response.json()["errors"]
        assert error["declaration_id"] == twice and error["field"] == "declaration_id"
        assert "[1, 2]" in error["message"]
        assert store.count() == before
    finally:
        store.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("declared_value_usd", False),
        ("gross_weight_kg", "12.5"),
        ("quantity", True),
        ("declared_at", 1714555800),
    ],
)
def test_values_of_the_wrong_json_type_are_422_not_coerced(
    service, deployment: Deployment, field: str, value: object
) -> None:
    running, _ = service
    declaration = dict(deployment.records[3], declaration_id=f"TYPE-{uuid.uuid4().hex[:8]}", **{field: value})
    response = httpx.post(
        f"{running.base}/score",
        json={"declarations": [declaration]},
        headers=deployment.headers("scorer"),
        timeout=60,
    )
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


# --- schemathesis against the running service ------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_runs(deployment: Deployment, service) -> list[FuzzRun]:
    return run_contract_fuzz(deployment, TEST_FUZZ)


@pytest.mark.integration
@pytest.mark.slow
def test_fuzzing_every_operation_with_each_credential_finds_no_5xx_and_no_answer_off_the_contract(
    fuzz_runs: list[FuzzRun],
) -> None:
    result = check_contract_fuzz(fuzz_runs, min_requests=300)
    assert result.passed, f"{result.figures}: {result.problems}"
    assert [run.credential for run in fuzz_runs] == [role or "no token" for role in FUZZ_CREDENTIALS]
    for run in fuzz_runs:
        assert run.exit_code == 0, run.log_path.read_text()[-3000:]
        assert run.operations_tested == run.operations_total >= 11
        assert not any(status >= 500 for status in run.statuses)
    no_token = fuzz_runs[-1]
    assert no_token.statuses.get(401, 0) > 0
    assert all(label.split(" ", 1)[1] in (*OPEN, "/docs.json") for label in no_token.granted), (
        no_token.granted
    )


@pytest.mark.integration
@pytest.mark.slow
def test_fuzz_runs_are_repeatable_with_the_fixed_seed(
    deployment: Deployment, fuzz_runs: list[FuzzRun]
) -> None:
    (again,) = run_contract_fuzz(deployment, TEST_FUZZ, credentials=(None,))
    assert again.requests == fuzz_runs[-1].requests
    assert again.statuses == fuzz_runs[-1].statuses
