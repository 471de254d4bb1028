"""Risk officers' command line: `python -m serving.rules_cli backtest --rule R-... --start ... --end ...`.

The same backtest as `POST /rules/{id}/backtest`, run against the stores named by the
service's settings (`DIVERSION_RULES_DB`, `DIVERSION_HISTORY_*`, `MLFLOW_TRACKING_URI`),
without a running service. With `--no-model` the model is not loaded (no RED/YELLOW counts).
"""

from __future__ import annotations

import datetime as dt
import json
import os

import typer

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


def _aware(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@app.command()
def backtest(
    rule: str = typer.Option(..., help="Rule id (R-...)."),
    start: str = typer.Option(..., help="Window start, ISO 8601 (filing time, UTC)."),
    end: str = typer.Option(..., help="Window end (exclusive), ISO 8601."),
    version: int | None = typer.Option(None, help="Rule version; default: the latest."),
    no_model: bool = typer.Option(False, "--no-model", help="Do not load the registered model."),
) -> None:
    """Run a rule version over a window of the history, point in time; print the answer as JSON."""
    from features.reference import load_reference
    from serving.rules_api import rule_version_set, run_backtest
    from serving.rules_endpoints import _history_tables
    from serving.rules_store import RulesStore
    from serving.settings import ServiceSettings

    settings = ServiceSettings.from_env()
    store = RulesStore(settings.rules_db)
    at = dt.datetime.now(dt.UTC)
    scorer = None
    if not no_model:
        from serving.engine import load_model

        scorer = load_model(settings).scorer
    declarations, seizures, inspections = _history_tables(settings)
    result = run_backtest(
        rule_version_set(store, rule, version, at),
        declarations,
        seizures,
        inspections,
        load_reference(),
        _aware(start),
        _aware(end),
        at,
        scorer=scorer,
    )
    store.close()
    typer.echo(json.dumps(result, indent=2))


@app.command("effectiveness")
def effectiveness_report(stale_days: int = typer.Option(30, help="Stale after this many days.")) -> None:
    """Per rule and watchlist entry: hits, inspected, found, precision, stale (JSON)."""
    from serving.audit import AuditStore
    from serving.rules_api import audited_rule_decisions, effectiveness, recorded_outcomes, with_never_hit
    from serving.rules_store import RulesStore
    from serving.settings import ServiceSettings

    settings = ServiceSettings.from_env()
    audit = AuditStore(settings.audit_db, schema=settings.audit_schema)
    store = RulesStore(settings.rules_db)
    inspected, _, found = recorded_outcomes(settings.history_db)
    report = effectiveness(
        audited_rule_decisions(audit), inspected, found, dt.datetime.now(dt.UTC), stale_days
    )
    typer.echo(json.dumps(with_never_hit(report, store), indent=2, default=str))
    audit.close()
    store.close()


if __name__ == "__main__":
    app()
