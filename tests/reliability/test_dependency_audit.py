"""Dependency audit: pip-audit on the locked set; a pass only when advisory data covered every package."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from packaging.version import Version

import reliability.runner as runner
from reliability.advisories.osv_mirror import Snapshot, affects, serve
from reliability.checks import CheckResult, print_table
from reliability.dependency_audit import (
    ADVISORY_SNAPSHOT,
    LOCK_FILE,
    NOT_IN_SNAPSHOT,
    DependencyAudit,
    check_dependency_audit,
    locked_packages,
    read_pip_audit_report,
    run_dependency_audit,
    run_pip_audit,
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
    monkeypatch.setattr(runner, "run_dependency_audit", lambda lock, folder: unreachable)
    assert runner.run_reliability(only=("dependency-audit",)) == 1
    clean = [read_pip_audit_report(_report({"name": "a", "version": "1", "vulns": []}), "pypi", 1, 0.1)]
    monkeypatch.setattr(runner, "run_dependency_audit", lambda lock, folder: clean)
    assert runner.run_reliability(only=("dependency-audit",)) == 0


def test_unverified_rows_print_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    row = CheckResult("dependency audit (pip-audit)", "pip-audit")
    row.unverified = "advisory data unreachable: pypi: 0/141"
    print_table([row])
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


# --- the offline path: vendored PyPA snapshot served by a loopback OSV mirror ---------------------------


def _record(vid: str, name: str, events: list[dict] | None = None, versions: list[str] | None = None) -> dict:
    affected: dict = {"package": {"ecosystem": "PyPI", "name": name}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        affected["versions"] = versions
    return {
        "id": vid,
        "modified": "2024-01-01T00:00:00Z",
        "summary": f"{vid} summary",
        "affected": [affected],
    }


def _snapshot(tmp_path: Path, covered: dict[str, str], vulns: list[dict]) -> Path:
    path = tmp_path / "snapshot.json"
    header = {
        "built": "2026-12-01",
        "sources": [{"repo": "pypa/advisory-database", "used": True}],
        "newest_record_modified": "2024-01-01T00:00:00Z",
        "covered_packages": {name: {"locked_version": v} for name, v in covered.items()},
        "not_covered": {},
    }
    path.write_text(json.dumps({"header": header, "vulns": vulns}))
    return path


def test_mirror_says_affected_only_inside_an_ecosystem_range() -> None:
    record = _record("PYSEC-T-1", "demo", [{"introduced": "1.2"}, {"fixed": "1.4.1"}])
    assert affects(record, "demo", Version("1.2"))  # introduced is inclusive
    assert affects(record, "demo", Version("1.4.0"))
    assert not affects(record, "demo", Version("1.1.9"))  # before introduced
    assert not affects(record, "demo", Version("1.4.1"))  # fixed is exclusive
    assert not affects(record, "demo", Version("2.0"))
    assert not affects(record, "other", Version("1.3"))  # another package
    last = _record("PYSEC-T-2", "demo", [{"introduced": "0"}, {"last_affected": "3.8.4"}])
    assert affects(last, "demo", Version("3.8.4")) and not affects(last, "demo", Version("3.8.5"))
    # two branches, events out of order (as PYSEC-2023-192 for urllib3 has them)
    branches = _record(
        "PYSEC-T-3",
        "demo",
        [{"introduced": "2.0.0"}, {"fixed": "2.0.6"}, {"introduced": "0"}, {"fixed": "1.26.17"}],
    )
    assert affects(branches, "demo", Version("1.26.16")) and affects(branches, "demo", Version("2.0.5"))
    assert not affects(branches, "demo", Version("1.26.17")) and not affects(
        branches, "demo", Version("2.0.6")
    )
    unfixed = _record("PYSEC-T-4", "demo", [{"introduced": "0"}])
    assert affects(unfixed, "demo", Version("99.0"))
    assert not affects({**unfixed, "withdrawn": "2023-11-08T00:00:00Z"}, "demo", Version("99.0"))


def test_mirror_honours_an_explicit_versions_list() -> None:
    record = _record("PYSEC-T-5", "demo", versions=["0.9", "1.0.0", "1.0.2"])
    assert affects(record, "demo", Version("1.0"))  # 1.0 == 1.0.0 under PEP 440
    assert affects(record, "demo", Version("1.0.2"))
    assert not affects(record, "demo", Version("1.0.1"))
    assert not affects(record, "demo", Version("2.0"))


def test_mirror_answers_osv_queries_over_loopback_and_refuses_uncovered_packages(tmp_path: Path) -> None:
    path = _snapshot(
        tmp_path,
        {"demo": "1.3", "clean": "1.0"},
        [_record("PYSEC-T-1", "demo", [{"introduced": "1.2"}, {"fixed": "1.4.1"}])],
    )
    with serve(Snapshot.load(path)) as (url, log):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/query")

        def ask(name: str, version: str) -> httpx.Response:
            query = {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
            return httpx.post(url, content=json.dumps(query), timeout=5)

        inside = ask("Demo", "1.3")
        assert inside.status_code == 200 and [v["id"] for v in inside.json()["vulns"]] == ["PYSEC-T-1"]
        assert ask("demo", "1.4.1").json() == {}  # outside the range: the OSV answer for "nothing"
        assert ask("clean", "1.0").json() == {}  # covered, no advisory at all
        refused = ask("not-in-snapshot", "1.0")
        assert refused.status_code == 404 and "not covered" in refused.json()["message"]
        assert ask("demo", "not a version").status_code == 400
    assert log.answered == {"demo": "1.4.1", "clean": "1.0"}
    assert "not-in-snapshot" in log.refused


def test_the_vendored_snapshot_covers_every_locked_package_with_provenance() -> None:
    snapshot = Snapshot.load(ADVISORY_SNAPSHOT)
    header = snapshot.header
    assert header["built"] == "2026-12-01"
    assert set(locked_packages(REPO_LOCK)) <= snapshot.covered, "extend the snapshot for new locked packages"
    assert not header["not_covered"]
    records = [r for recs in snapshot.by_package.values() for r in recs]
    assert records and all(
        r["database_specific"]["source"]["repo"] == "pypa/advisory-database" for r in records
    )
    for name, recs in snapshot.by_package.items():
        assert name in snapshot.covered
        assert len(recs) == header["covered_packages"][name]["records"]
        assert all(r["database_specific"]["source"]["path"] == f"vulns/{name}/{r['id']}.yaml" for r in recs)
    # a known advisory answers for an old version and not for the locked one
    assert [r["id"] for r in snapshot.query("requests", "2.30.0")] == ["PYSEC-2023-74"]
    assert snapshot.query("requests", locked_packages(REPO_LOCK)["requests"]) == []
    assert snapshot.query("not-in-snapshot", "1.0") is None


def test_a_vulnerable_pin_fails_the_row_with_its_advisory_id(tmp_path: Path) -> None:
    """Real pip-audit subprocess against the real snapshot, served on 127.0.0.1; no online service asked."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("requests==2.30.0\nidna==3.20\n")
    audits = run_dependency_audit(lock, tmp_path / "audit", services=())
    assert len(audits) == 1 and audits[0].error is None, audits
    assert audits[0].audited == audits[0].packages == 2
    result = check_dependency_audit(audits, lock)
    assert result.verdict == "FAIL", result
    problems = "; ".join(result.problems)
    assert "requests 2.30.0: PYSEC-2023-74 (fixed in 2.31.0)" in problems
    assert "offline PyPA advisory snapshot of 2026-12-01 (pip-audit via loopback OSV mirror)" in problems
    lock.write_text("requests==2.34.2\nidna==3.20\n")  # the same packages at the locked versions
    clean = check_dependency_audit(run_dependency_audit(lock, tmp_path / "clean", services=()), lock)
    assert clean.verdict == "PASS", clean
    assert clean.figures.startswith(
        "2/2 locked packages checked against the offline PyPA advisory snapshot of 2026-12-01 "
        "(pip-audit via loopback OSV mirror)"
    )
    assert "0 known vulnerabilities" in clean.figures and "newest advisory record" in clean.figures


def test_a_package_the_snapshot_does_not_cover_is_never_reported_clean(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("requests==2.34.2\nnot-in-snapshot==1.0\n")
    audits = run_dependency_audit(lock, tmp_path / "audit", services=())
    (audit,) = audits
    assert audit.audited == 1 and audit.packages == 2
    assert audit.unaudited["not-in-snapshot"].startswith(NOT_IN_SNAPSHOT)
    result = check_dependency_audit(audits, lock)
    assert result.verdict == "UNVERIFIED" and not result.passed
    assert f"1 x '{NOT_IN_SNAPSHOT}'" in result.unverified
    assert result.figures.startswith("1 of 2 locked packages could be checked")
    # and pip-audit pointed straight at the mirror with that package gets no clean report either
    with serve(Snapshot.load(ADVISORY_SNAPSHOT)) as (url, log):
        direct = run_pip_audit(lock, "osv", tmp_path / "direct", osv_url=url)
    assert direct.error is not None and not direct.audited
    assert "not-in-snapshot" in log.refused
