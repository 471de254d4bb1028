"""Hostile training input: adversarial contract files through the real training CLI.

`run_training_input_faults(workdir)` generates a small synthetic history (4,000
declarations over two years), derives one set of contract files per adversarial case,
runs ``python -m training validate / backtest / train`` in-process (the real typer app,
through click's test runner) and checks that the outcome is the one docs/data-contract.md
prescribes: the run stops with exit code 2 and a message naming the file, or exactly the
bad rows are rejected (file, row, column, reason), counted, recorded with the run, and
everything else goes on without them. Nothing is ever trained on silently repaired data.

One `CheckResult` per case; `make reliability` prints them with the service's checks, and
`python -m reliability.training_input` prints them alone. The cases are in
`training_input_cases`, the files and runs they use in `training_input_files`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reliability.checks import CheckResult
from reliability.training_input_cases import (
    check_bad_file_corpus,
    check_duplicate_seizure,
    check_far_future_declaration,
    check_far_future_seizure,
    check_malformed_over_limit,
    check_malformed_under_limit,
    check_seizure_after_data_end,
    check_seizure_before_declaration,
    check_seizure_before_exporter_history,
)
from reliability.training_input_files import create_experiment, generate_history


def run_training_input_faults(workdir: Path) -> list[CheckResult]:
    """Every adversarial training-input case on a small generated history under `workdir`."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    create_experiment(tracking_uri, workdir / "mlartifacts")
    history = generate_history(workdir / "history")
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("duplicated seizure id (identical copy)", lambda: check_duplicate_seizure(history, workdir, True)),
        (
            "duplicated seizure id (conflicting rows)",
            lambda: check_duplicate_seizure(history, workdir, False),
        ),
        ("seizure before its declaration", lambda: check_seizure_before_declaration(history, workdir)),
        (
            "seizure before the exporter's first declaration",
            lambda: check_seizure_before_exporter_history(history, workdir),
        ),
        ("declaration filed in 2199", lambda: check_far_future_declaration(history, workdir, tracking_uri)),
        ("seizure dated 2199", lambda: check_far_future_seizure(history, workdir)),
        ("seizure after the data's end", lambda: check_seizure_after_data_end(history, workdir)),
        ("10% malformed rows", lambda: check_malformed_over_limit(history, workdir, tracking_uri)),
        ("0.5% malformed rows", lambda: check_malformed_under_limit(history, workdir, tracking_uri)),
        ("bad-file corpus through train", lambda: check_bad_file_corpus(history, workdir, tracking_uri)),
    ]
    return [_guarded(f"training input: {name}", check) for name, check in checks]


def _guarded(test: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; a check that crashes is a failed row, not a crashed table."""
    try:
        return check()
    except Exception as exc:  # the row must say what broke, whatever it was
        result = CheckResult(test, "(the check itself raised)")
        result.require(False, f"{type(exc).__name__}: {exc}")
        return result


def main(argv: list[str] | None = None) -> int:
    """`python -m reliability.training_input`: print the table; 1 if any check failed."""
    import argparse
    import tempfile

    from reliability.checks import print_table

    argparse.ArgumentParser(prog="python -m reliability.training_input", description=main.__doc__).parse_args(
        argv
    )
    with tempfile.TemporaryDirectory(prefix="input-faults-") as scratch:
        results = run_training_input_faults(Path(scratch))
    print_table(results)
    failed = [r.test for r in results if not r.passed]
    print(
        f"{len(results) - len(failed)}/{len(results)} passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
