"""Reliability under faults and hostile input: `python -m reliability` (`make reliability`).

Starts the real service (`bentoml serve`) on loopback against a registered model and
checks these groups, one table row per check:

1. crash: `kill -9` of the service's process group under load; every acknowledged
   decision must be in the audit store, the store must be intact, and the service must
   be ready again (recovery time measured against the 10 s target) — with the audit
   store on SQLite, and again on PostgreSQL in a fresh database;
2. broken dependencies: a truncated model artifact (in a copy of the MLflow store) and an
   unreachable audit database must leave the service up, not ready, refusing to score,
   and saying why in its log;
3. hostile input: oversized, deeply nested, non-finite, mistyped and tricky requests must
   get a 4xx (or a 200 for input that is merely odd data), never a 5xx, and neither
   tokens nor declarations may appear in the log;
4. contract fuzzing: schemathesis generates requests from the service's own OpenAPI
   document (/docs.json) for every operation, with each role's token and without one;
   no 5xx, and every answer must match the document (all schemathesis checks);
5. load: 50 concurrent clients for 60 s of mixed single and 100-row scoring with the
   audit trail on: no errors, one audit row per acknowledged declaration, p50/p99;
6. dependency audit: pip-audit on the locked set (requirements.lock); a row whose
   advisory data cannot be reached says so (UNVERIFIED), it never passes;
7. training input: adversarial contract files through the training CLI.

One module per group: `crash` (1, 2), `hostile_input` (3), `contract_fuzz` (4), `load` (5),
`dependency_audit` (6), `training_input` (7); `deployment` starts the service, `checks`
holds the table row and the table. Nothing is trained here: the service groups need the
model registered by `make train` and its data. `python -m reliability --only fuzz load`
runs some groups (`--help` lists them).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from reliability.checks import CheckResult, print_table
from reliability.contract_fuzz import FUZZ_CREDENTIALS, FuzzSettings, check_contract_fuzz, run_contract_fuzz
from reliability.crash import (
    check_crash_durability,
    check_crash_recovery,
    check_truncated_model,
    check_unreachable_audit_db,
    run_crash,
    run_postgres_crash,
)
from reliability.dependency_audit import LOCK_FILE, check_dependency_audit, run_dependency_audit
from reliability.deployment import Deployment, prepare_deployment
from reliability.hostile_input import run_hostile
from reliability.load import check_load, run_load


def _guarded(group: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """Run one group of checks; a group that raises is a failed row, not a crashed table."""
    try:
        return check()
    except Exception as exc:  # the row must say what broke, whatever it was
        result = CheckResult(group, "(the check itself raised)")
        result.problems.append(f"{type(exc).__name__}: {exc}")
        return [result]


def _training_input_rows(folder: Path) -> list[CheckResult]:
    """The rows of `reliability.training_input` (adversarial training files)."""
    from reliability.training_input import run_training_input_faults

    return run_training_input_faults(folder)


def _crash_rows(deployment: Deployment) -> list[CheckResult]:
    run = run_crash(deployment.with_stores("crash"))
    return [check_crash_durability(run), check_crash_recovery(run)]


def _postgres_crash_rows(deployment: Deployment) -> list[CheckResult]:
    try:
        run = run_postgres_crash(deployment)
    except ConnectionError as exc:  # no server: both rows fail, saying so
        rows = [
            CheckResult(
                "crash (PostgreSQL): acknowledged = audited", "kill -9 under 4 clients, audit on PostgreSQL"
            ),
            CheckResult("crash (PostgreSQL): recovery time", "restart after kill -9"),
        ]
        for row in rows:
            row.problems.append(str(exc))
        return rows
    return [check_crash_durability(run), check_crash_recovery(run)]


#: Groups of checks, in the order they run (`--only` picks some).
GROUPS = (
    "crash",
    "crash-postgres",
    "broken-dependencies",
    "hostile",
    "fuzz",
    "load",
    "dependency-audit",
    "training-input",
)
_SERVICE_GROUPS = frozenset(GROUPS) - {"dependency-audit", "training-input"}


def run_reliability(
    tracking_uri: str = "sqlite:///mlflow.db",
    declarations: Path = Path("data/synthetic/declarations.parquet"),
    seizures: Path = Path("data/synthetic/seizures.parquet"),
    only: tuple[str, ...] = GROUPS,
    fuzz: FuzzSettings = FuzzSettings(),  # noqa: B008 - frozen
    load_clients: int = 50,
    load_seconds: float = 60.0,
) -> int:
    """Run the selected groups against the registered @champion; print the table; 1 unless every row passed."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_uri.startswith("sqlite:///"):
        tracking_uri = f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve()}"
    selected = [group for group in GROUPS if group in only]
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="reliability-") as scratch:
        folder = Path(scratch)
        deployment = None
        if _SERVICE_GROUPS.intersection(selected):
            print("preparing history, tokens and stores ...", flush=True)
            deployment = prepare_deployment(
                folder / "main", tracking_uri, declarations.resolve(), seizures.resolve()
            )
        groups: dict[str, tuple[str, Callable[[], list[CheckResult]]]] = {
            "crash": ("kill -9 under load, audit on SQLite", lambda: _crash_rows(deployment)),
            "crash-postgres": (
                "kill -9 under load, audit on PostgreSQL",
                lambda: _postgres_crash_rows(deployment),
            ),
            "broken-dependencies": (
                "broken model artifact, unreachable audit database",
                lambda: [check_truncated_model(deployment), check_unreachable_audit_db(deployment)],
            ),
            "hostile": ("hostile input", lambda: run_hostile(deployment)),
            "fuzz": (
                f"schemathesis on /docs.json, {len(FUZZ_CREDENTIALS)} credentials",
                lambda: [check_contract_fuzz(run_contract_fuzz(deployment, fuzz))],
            ),
            "load": (
                f"{load_clients} clients for {load_seconds:.0f} s",
                lambda: [check_load(run_load(deployment, clients=load_clients, duration=load_seconds))],
            ),
            "dependency-audit": (
                "pip-audit on requirements.lock",
                lambda: [check_dependency_audit(run_dependency_audit(LOCK_FILE, folder / "pip-audit"))],
            ),
            "training-input": (
                "adversarial training input",
                lambda: _training_input_rows(folder / "training-input"),
            ),
        }
        for number, group in enumerate(selected, start=1):
            what, check = groups[group]
            print(f"{number}/{len(selected)} {group}: {what} ...", flush=True)
            results += _guarded(group, check)
    print_table(results)
    failed = [r.test for r in results if r.problems]
    unverified = [r.test for r in results if not r.problems and r.unverified is not None]
    print(
        f"{len(results) - len(failed) - len(unverified)}/{len(results)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; unverified: {', '.join(unverified)}" if unverified else "")
    )
    return 0 if results and not failed and not unverified else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m reliability [--only GROUP ...]`: the reliability table; 1 unless every row passed."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reliability", description=main.__doc__)
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), help="groups to run")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--declarations", type=Path, default=Path("data/synthetic/declarations.parquet"))
    parser.add_argument("--seizures", type=Path, default=Path("data/synthetic/seizures.parquet"))
    args = parser.parse_args(argv)
    return run_reliability(args.tracking_uri, args.declarations, args.seizures, only=tuple(args.only))
