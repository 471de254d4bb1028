"""Dependency audit: pip-audit on the locked set (requirements.lock) against known advisories.

A row whose advisory data cannot be reached says so (UNVERIFIED); it never passes. The
vendored snapshot in `reliability/advisories/` is served by a loopback OSV mirror when the
public services are unreachable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reliability.checks import CheckResult

LOCK_FILE = Path("requirements.lock")
#: Advisory services pip-audit asks, in order, until one answers for every locked package.
ADVISORY_SERVICES = ("pypi", "osv")
#: Advisories accepted after review, by id, with the reason (repeat it in README "Dependency audit").
ACCEPTED_VULNERABILITIES: dict[str, str] = {}
#: Vendored PyPA advisories for the locked packages (OSV records, provenance in its header): served to
#: pip-audit by a loopback OSV mirror when none of ADVISORY_SERVICES answered for every package.
ADVISORY_SNAPSHOT = Path(__file__).resolve().parent / "advisories" / "pypi-advisories.json"
#: Skip reason for a locked package the snapshot does not cover: never audited, never clean.
NOT_IN_SNAPSHOT = "Not covered by the offline advisory snapshot"


@dataclass
class DependencyAudit:
    """What one pip-audit run against one advisory service could say about the locked set."""

    service: str
    packages: int  # pinned in the lock file
    audited: int  # packages the service had advisory data for
    unaudited: dict[str, str]  # package -> why it could not be audited
    vulnerabilities: list[str]  # "name version: ID (fixed in ...)"
    error: str | None  # pip-audit could not run the audit at all
    seconds: float
    detail: str = ""  # where the advisory data came from and how old it is, when that needs saying


def locked_packages(lock: Path) -> dict[str, str]:
    """Normalised name (PEP 503) -> version of every `name==version` line of a lock file."""
    pins = {}
    for line in lock.read_text().splitlines():
        name, separator, version = line.split("#", 1)[0].strip().partition("==")
        if separator:
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return pins


def read_pip_audit_report(document: dict, service: str, packages: int, seconds: float) -> DependencyAudit:
    """A DependencyAudit from pip-audit's JSON report (`--format json`)."""
    unaudited, vulnerabilities, audited = {}, [], 0
    for dependency in document.get("dependencies", []):
        if "skip_reason" in dependency:
            unaudited[dependency["name"]] = dependency["skip_reason"]
            continue
        audited += 1
        for vulnerability in dependency.get("vulns", []):
            fixed = ", ".join(vulnerability.get("fix_versions", [])) or "no fixed version"
            vulnerabilities.append(
                f"{dependency['name']} {dependency.get('version')}: {vulnerability.get('id')} (fixed in {fixed})"
            )
    return DependencyAudit(service, packages, audited, unaudited, vulnerabilities, None, seconds)


def run_pip_audit(
    lock: Path,
    service: str,
    folder: Path,
    timeout: int = 15,
    osv_url: str | None = None,
    report_name: str | None = None,
) -> DependencyAudit:
    """`pip-audit -r LOCK --no-deps --disable-pip -s SERVICE`: the pinned set as locked, nothing installed.

    `osv_url` points `-s osv` at another OSV query endpoint (the loopback mirror of the vendored snapshot).
    """
    import orjson

    folder.mkdir(parents=True, exist_ok=True)
    report = folder / f"pip-audit-{report_name or service}.json"
    report.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(lock.resolve()),
        "--no-deps",
        "--disable-pip",
        "--vulnerability-service",
        service,
        "--format",
        "json",
        "--output",
        str(report),
        "--progress-spinner",
        "off",
        "--timeout",
        str(timeout),
    ]
    if osv_url is not None:
        command += ["--osv-url", osv_url]
    for vulnerability_id in ACCEPTED_VULNERABILITIES:
        command += ["--ignore-vuln", vulnerability_id]
    # a loopback mirror must be reached directly, whatever proxy the environment names
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    packages = len(locked_packages(lock))
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800, env=env)
    seconds = time.perf_counter() - started
    if report.exists() and report.stat().st_size:
        return read_pip_audit_report(orjson.loads(report.read_bytes()), service, packages, seconds)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"pip-audit exited {completed.returncode} without a report"
    unresolved = re.search(r"Failed to resolve '([^']+)'", reason)
    if unresolved:
        reason = f"{unresolved.group(1)} does not resolve (no route to the advisory service)"
    return DependencyAudit(service, packages, 0, {}, [], reason[:300], seconds)


def run_offline_audit(lock: Path, folder: Path, snapshot: Path = ADVISORY_SNAPSHOT) -> DependencyAudit:
    """pip-audit `-s osv` against a loopback OSV mirror of the vendored snapshot, for the covered packages.

    Locked packages the snapshot does not cover are not sent to pip-audit at all (the mirror would refuse
    them): they come back as unaudited, so the audit is incomplete and the row cannot pass.
    """
    from reliability.advisories.osv_mirror import Snapshot, serve

    data = Snapshot.load(snapshot)
    label = f"{data.label} (pip-audit via loopback OSV mirror)"
    detail = (
        f"snapshot built {data.header['built']} from stored copies of "
        f"{', '.join(s['repo'] for s in data.header['sources'] if s.get('used'))}; "
        f"newest advisory record in it modified {data.header['newest_record_modified'][:10]}"
    )
    pins = locked_packages(lock)
    uncovered = {
        name: f"{NOT_IN_SNAPSHOT}: {name} ({version})"
        for name, version in pins.items()
        if name not in data.covered
    }
    covered = {name: version for name, version in pins.items() if name not in uncovered}
    if not covered:
        return DependencyAudit(label, len(pins), 0, uncovered, [], None, 0.0, detail)
    folder.mkdir(parents=True, exist_ok=True)
    covered_lock = folder / "covered-by-snapshot.lock"
    covered_lock.write_text("".join(f"{name}=={version}\n" for name, version in covered.items()))
    with serve(data) as (url, log):
        audit = run_pip_audit(covered_lock, "osv", folder, osv_url=url, report_name="offline-snapshot")
    audit.service, audit.packages, audit.detail = label, len(pins), detail
    audit.unaudited.update(uncovered)
    if audit.error is None and (audit.audited != len(log.answered) or log.refused):
        # every package pip-audit calls audited must have been answered by the mirror, and nothing refused
        audit.error = (
            f"pip-audit reported {audit.audited} packages audited but the mirror answered "
            f"{len(log.answered)} and refused {sorted(log.refused)[:5]}"
        )
    return audit


def run_dependency_audit(
    lock: Path,
    folder: Path,
    services: tuple[str, ...] = ADVISORY_SERVICES,
    snapshot: Path | None = ADVISORY_SNAPSHOT,
) -> list[DependencyAudit]:
    """pip-audit against each service in turn, stopping at the first that covers every locked package;
    when none does, against the vendored advisory snapshot (`snapshot=None` to skip that)."""
    audits = []
    for service in services:
        audit = run_pip_audit(lock, service, folder)
        audits.append(audit)
        if audit.error is None and audit.audited == audit.packages:
            return audits
    if snapshot is not None:
        audits.append(run_offline_audit(lock, folder, snapshot))
    return audits


def _why_unaudited(audit: DependencyAudit) -> str:
    if audit.error is not None:
        return f"{audit.service}: {audit.error}"
    reasons: dict[str, int] = {}
    for reason in audit.unaudited.values():
        kind = reason.split(":", 1)[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    said = "; ".join(f"{count} x '{kind}'" for kind, count in reasons.items())
    return f"{audit.service}: {audit.audited}/{audit.packages} packages checked ({said})"


def check_dependency_audit(audits: list[DependencyAudit], lock: Path = LOCK_FILE) -> CheckResult:
    """PASS only when some advisory source covered every locked package and reported nothing unaccepted."""
    from importlib.metadata import version

    result = CheckResult(
        "dependency audit (pip-audit)",
        f"pip-audit {version('pip-audit')} -r {lock.name} --no-deps (the locked set) vs known advisories",
    )
    for audit in audits:
        result.require(
            not audit.vulnerabilities,
            f"{audit.service}: {len(audit.vulnerabilities)} known vulnerabilities: {audit.vulnerabilities[:5]}",
        )
    complete = [a for a in audits if a.error is None and a.packages and a.audited == a.packages]
    accepted = (
        f"; accepted advisories: {sorted(ACCEPTED_VULNERABILITIES)}" if ACCEPTED_VULNERABILITIES else ""
    )
    if complete:
        audit = complete[0]
        result.figures = (
            f"{audit.audited}/{audit.packages} locked packages checked against {audit.service} in "
            f"{audit.seconds:.0f} s: {len(audit.vulnerabilities)} known vulnerabilities{accepted}"
        )
        if audit.detail:
            result.figures += f" ({audit.detail})"
        before = audits[: audits.index(audit)]
        if before:
            result.figures += "; no verdict from " + " | ".join(_why_unaudited(a) for a in before)
        return result
    result.unverified = "advisory data unreachable: " + " | ".join(_why_unaudited(a) for a in audits)
    packages = audits[0].packages if audits else 0
    checked = max((a.audited for a in audits if a.error is None), default=0)
    result.figures = (
        f"{checked} of {packages} locked packages could be checked; no verdict on vulnerabilities"
    )
    return result
