"""Contract fuzzing: schemathesis generates requests from the service's own OpenAPI document
(/docs.json) for every operation, with each role's token and without one; no 5xx, and every
answer must match the document.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from reliability.checks import CheckResult
from reliability.deployment import Deployment, serving

_SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
#: Credentials the contract is fuzzed with: each role's token, then none at all.
FUZZ_CREDENTIALS: tuple[str | None, ...] = ("scorer", "analyst", "auditor", None)
#: Answers that count as rejecting schema-violating data: schemathesis' defaults, plus 413
#: (the guard's documented answer to a batch above `maxItems`).
NEGATIVE_DATA_STATUSES = ("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429")
#: Operation (path prefix) on which each role must have been granted something.
ROLE_OPERATIONS = {"scorer": ("/score",), "analyst": ("/history/", "/outcomes"), "auditor": ("/audit/",)}
_TOKEN_VARIABLE = "DIVERSION_FUZZ_TOKEN"


@dataclass(frozen=True)
class FuzzSettings:
    """How much schemathesis generates per operation and credential; the seed makes runs repeatable."""

    max_examples: int = 50
    seed: int = 20261123
    phases: tuple[str, ...] = ("examples", "coverage", "fuzzing", "stateful")
    request_timeout: float = 60.0


@dataclass
class FuzzRun:
    """One `schemathesis run` against the service's /docs.json with one credential."""

    credential: str  # a role, or "no token"
    exit_code: int
    seconds: float
    requests: int
    statuses: dict[int, int]
    server_errors: list[str]  # "POST /score -> 500"
    findings: list[str]  # schemathesis check failures: "ST101 Server error: POST /score"
    errors: list[str]  # operations schemathesis could not test
    operations_total: int
    operations_tested: int
    granted: list[str]  # "POST /score" answered 2xx
    granted_without_role: list[str]  # 2xx on an operation this credential may not call
    slowest_seconds: float
    slowest_request: str
    log_path: Path


def _fuzz_config(folder: Path, with_token: bool) -> Path:
    """schemathesis.toml for one run; the token comes from the environment, never the command line."""
    statuses = ", ".join(f'"{status}"' for status in NEGATIVE_DATA_STATUSES)
    lines = []
    if with_token:
        lines.append(f'headers = {{ Authorization = "Bearer ${{{_TOKEN_VARIABLE}}}" }}')
    lines += ["", "[checks.negative_data_rejection]", f"expected-statuses = [{statuses}]", ""]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


def run_schemathesis(
    base: str, folder: Path, role: str | None, token: str | None, settings: FuzzSettings
) -> FuzzRun:
    """`schemathesis run {base}/docs.json` with every check, one credential; its JSON and HAR reports read back."""
    import orjson

    from serving.auth import route_access
    from serving.middleware import OPENAPI_PATH

    credential = role or "no token"
    folder.mkdir(parents=True, exist_ok=True)
    config = _fuzz_config(folder, with_token=token is not None)
    report, har, log_path = folder / "report.json", folder / "requests.har", folder / "schemathesis.log"
    command = [
        str(_SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{base}{OPENAPI_PATH}",
        "--checks",
        "all",
        "--max-examples",
        str(settings.max_examples),
        "--seed",
        str(settings.seed),
        "--phases",
        ",".join(settings.phases),
        "--continue-on-failure",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        str(settings.request_timeout),
        "--max-response-time",
        str(settings.request_timeout),
        "--no-color",
        "--report",
        "json,har",
        "--report-json-path",
        str(report),
        "--report-har-path",
        str(har),
    ]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SCHEMATHESIS_")}
    if token is not None:
        environment[_TOKEN_VARIABLE] = token
    started = time.perf_counter()
    with log_path.open("wb") as log:
        completed = subprocess.run(
            command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT, timeout=3600
        )
    seconds = time.perf_counter() - started

    document = orjson.loads(report.read_bytes()) if report.exists() else {}
    entries = orjson.loads(har.read_bytes())["log"]["entries"] if har.exists() else []
    statuses: dict[int, int] = {}
    server_errors, granted, granted_without_role = [], set(), set()
    slowest_seconds, slowest_request = 0.0, ""
    for entry in entries:
        status = int(entry["response"]["status"])
        method = entry["request"]["method"]
        path = httpx.URL(entry["request"]["url"]).path
        statuses[status] = statuses.get(status, 0) + 1
        label = f"{method} {path}"
        if status >= 500:
            server_errors.append(f"{label} -> {status}")
        if 200 <= status < 300:
            granted.add(label)
            needs_token, needed_role = route_access(path)
            if needs_token and (role is None or (needed_role is not None and needed_role != role)):
                granted_without_role.add(f"{label} -> {status}")
        if float(entry.get("time", 0.0)) / 1000 > slowest_seconds:
            slowest_seconds, slowest_request = float(entry["time"]) / 1000, label
    findings = [
        f"{failure.get('code')} {failure.get('title')}: {', '.join(failure.get('operations', []))}"
        for failure in document.get("failures", [])
    ]
    errors = [f"{error.get('title')} x{error.get('count')}" for error in document.get("errors", [])]
    operations = document.get("operations", {})
    return FuzzRun(
        credential=credential,
        exit_code=completed.returncode,
        seconds=seconds,
        requests=len(entries),
        statuses=dict(sorted(statuses.items())),
        server_errors=server_errors,
        findings=findings,
        errors=errors,
        operations_total=int(operations.get("total", 0)),
        operations_tested=int(operations.get("tested", 0)),
        granted=sorted(granted),
        granted_without_role=sorted(granted_without_role),
        slowest_seconds=slowest_seconds,
        slowest_request=slowest_request,
        log_path=log_path,
    )


def run_contract_fuzz(
    deployment: Deployment,
    settings: FuzzSettings = FuzzSettings(),  # noqa: B008 - frozen
    credentials: tuple[str | None, ...] = FUZZ_CREDENTIALS,
) -> list[FuzzRun]:
    """One service on fresh stores, fuzzed once per credential (in order; scorer first fills the audit trail)."""
    fuzzed = deployment.with_stores("fuzz")
    with serving(fuzzed.env, fuzzed.folder / "service.log") as service:
        return [
            run_schemathesis(
                service.base,
                fuzzed.folder / (role or "no-token"),
                role,
                deployment.tokens[role] if role else None,
                settings,
            )
            for role in credentials
        ]


def check_contract_fuzz(runs: list[FuzzRun], min_requests: int = 1000) -> CheckResult:
    """No 5xx, no schemathesis finding, every operation tested, roles enforced, enough requests."""
    result = CheckResult(
        "fuzz: OpenAPI contract (schemathesis)",
        "requests generated from /docs.json for every operation, with each role's token and none",
    )
    total = sum(run.requests for run in runs)
    result.require(total >= min_requests, f"{total} requests, fewer than {min_requests}")
    for run in runs:
        who = run.credential
        result.require(
            not run.server_errors, f"{who}: {len(run.server_errors)} 5xx, e.g. {run.server_errors[:3]}"
        )
        result.require(
            not run.findings, f"{who}: schemathesis findings {run.findings[:5]} (see {run.log_path})"
        )
        result.require(
            not run.errors, f"{who}: operations not testable: {run.errors[:3]} (see {run.log_path})"
        )
        result.require(
            run.operations_total > 0 and run.operations_tested == run.operations_total,
            f"{who}: {run.operations_tested}/{run.operations_total} operations tested",
        )
        result.require(
            not run.granted_without_role,
            f"{who}: answered 2xx without the role: {run.granted_without_role[:3]}",
        )
        for prefix in ROLE_OPERATIONS.get(who, ()):
            result.require(
                any(operation.split(" ", 1)[1].startswith(prefix.rstrip("/")) for operation in run.granted),
                f"{who}: no 2xx on {prefix} (token refused?)",
            )
        if run.exit_code != 0 and not (run.findings or run.errors):
            result.problems.append(f"{who}: schemathesis exited {run.exit_code} (see {run.log_path})")
    statuses: dict[int, int] = {}
    for run in runs:
        for status, count in run.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    per_credential = ", ".join(f"{run.credential} {run.requests:,}" for run in runs)
    slowest = max(runs, key=lambda run: run.slowest_seconds, default=None)
    result.figures = (
        f"{total:,} requests ({per_credential}), {max((r.operations_total for r in runs), default=0)} operations; "
        f"5xx {sum(len(r.server_errors) for r in runs)}, schemathesis findings "
        f"{sum(len(r.findings) for r in runs)}; statuses "
        + ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items()))
        + (f"; slowest {slowest.slowest_request} {slowest.slowest_seconds:.1f} s" if slowest else "")
    )
    return result
