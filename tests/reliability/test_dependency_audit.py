"""Dependency audit: pip-audit on the locked set; a pass only when advisory data covered every package."""

from __future__ import annotations

from pathlib import Path

import pytest

import serving.reliability as reliability
from serving.reliability import (
    LOCK_FILE,
    CheckResult,
    DependencyAudit,
    check_dependency_audit,
    locked_packages,
    read_pip_audit_report,
    run_dependency_audit,
)

REPO_LOCK = Path(__file__).resolve().parents[2] / LOCK_FILE


def _report(*dependencies: dict) -> dict:
    return {"dependencies": list(dependencies), "fixes": []}


def test_locked_packages_reads_every_pin_of_the_lock_file(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("a2wsgi==1.10.10\nPyYAML==6.0.3  # comment\n\n-e .\nzipp==4.1.2\n")
    assert locked_packages(lock) == {"a2wsgi": "1.10.10", "pyyaml": "6.0.3", "zipp": "4.1.2"}
    pins = locked_packages(REPO_LOCK)
    assert {"schemathesis", "pip-audit", "bentoml", "mlflow"} <= set(pins)


def test_every_package_audited_and_clean_is_a_pass() -> None:
    audit = read_pip_audit_report(
        _report({"name": "a", "version": "1", "vulns": []}, {"name": "b", "version": "2", "vulns": []}),
        "osv",
        2,
        1.0,
    )
    result = check_dependency_audit([audit])
    assert result.verdict == "PASS", result
    assert "2/2 locked packages checked against osv" in result.figures


def test_a_known_vulnerability_fails_the_row_with_its_id_and_fix() -> None:
    vulnerable = {"name": "a", "version": "1", "vulns": [{"id": "PYSEC-1", "fix_versions": ["1.1"]}]}
    audit = read_pip_audit_report(
        _report(vulnerable, {"name": "b", "version": "2", "vulns": []}), "pypi", 2, 1.0
    )
    result = check_dependency_audit([audit])
    assert result.verdict == "FAIL"
    assert "a 1: PYSEC-1 (fixed in 1.1)" in "; ".join(result.problems)


def test_packages_the_service_could_not_find_make_the_row_unverified_never_a_pass() -> None:
    # What pip-audit reports here: exit code 0 and "No known vulnerabilities found", every package skipped.
    skipped = [
        {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} (1.0)"}
        for name in ("a", "b")
    ]
    unreachable = DependencyAudit("osv", 2, 0, {}, [], "api.osv.dev does not resolve", 0.1)
    result = check_dependency_audit([read_pip_audit_report(_report(*skipped), "pypi", 2, 1.0), unreachable])
    assert result.verdict == "UNVERIFIED" and not result.passed
    assert result.unverified.startswith("advisory data unreachable")
    assert (
        "pypi: 0/2 packages checked" in result.unverified
        and "api.osv.dev does not resolve" in result.unverified
    )
    partial = read_pip_audit_report(
        _report({"name": "a", "version": "1", "vulns": []}, skipped[1]), "pypi", 2, 1.0
    )
    assert check_dependency_audit([partial]).verdict == "UNVERIFIED"


def test_an_unverified_row_makes_the_reliability_run_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable = [DependencyAudit("pypi", 2, 0, {}, [], "no route", 0.1)]
    monkeypatch.setattr(reliability, "run_dependency_audit", lambda lock, folder: unreachable)
    assert reliability.run_reliability(only=("dependency-audit",)) == 1
    clean = [read_pip_audit_report(_report({"name": "a", "version": "1", "vulns": []}), "pypi", 1, 0.1)]
    monkeypatch.setattr(reliability, "run_dependency_audit", lambda lock, folder: clean)
    assert reliability.run_reliability(only=("dependency-audit",)) == 0


def test_unverified_rows_print_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    row = CheckResult("dependency audit (pip-audit)", "pip-audit")
    row.unverified = "advisory data unreachable: pypi: 0/141"
    reliability.print_table([row])
    printed = capsys.readouterr().out
    assert "UNVERIFIED" in printed and "PASS" not in printed
    assert "advisory data unreachable" in printed


@pytest.mark.slow
def test_pip_audit_of_the_lock_file_says_pass_only_with_advisory_data_for_every_package(
    tmp_path: Path,
) -> None:
    audits = run_dependency_audit(REPO_LOCK, tmp_path)
    result = check_dependency_audit(audits, REPO_LOCK)
    pins = len(locked_packages(REPO_LOCK))
    assert all(audit.packages == pins for audit in audits)
    covered = any(a.error is None and a.audited == pins for a in audits)
    found = [v for a in audits for v in a.vulnerabilities]
    if found:
        assert result.verdict == "FAIL"
    elif covered:
        assert result.verdict == "PASS", result
    else:
        assert result.verdict == "UNVERIFIED" and "advisory data unreachable" in result.unverified
