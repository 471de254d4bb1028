"""Command-line entry points around the service (the service itself runs under `bentoml serve`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Diversion-risk scoring service tools.")


@app.command()
def demo(
    declarations: Path = typer.Option(Path("data/synthetic/declarations.parquet")),
    seizures: Path = typer.Option(Path("data/synthetic/seizures.parquet")),
    new: int = typer.Option(2000, help="How many of the latest declarations to score as new."),
    top: int = typer.Option(12, help="How many of the riskiest to show."),
) -> None:
    """Start the service, score new declarations, print the riskiest with reasons, stop."""
    from serving.demo import run_demo

    run_demo(declarations, seizures, new=new, top=top)


@app.command("export-outcomes")
def export_outcomes(
    out: Path = typer.Option(Path("outputs/outcomes"), help="Folder for the contract CSV files."),
) -> None:
    """Write the service's history (base + appended) and inspection outcomes as contract files for `make train`."""
    from features.reference import load_reference
    from serving.history_store import HistoryStore
    from serving.settings import ServiceSettings

    settings = ServiceSettings.from_env()
    store = HistoryStore.open(
        settings.history_db, settings.history_declarations, settings.history_seizures, load_reference()
    )
    counts = store.export_contract(out)
    typer.echo(
        ", ".join(f"{n:,} {name}" for name, n in counts.items())
        + f" -> {out}/; retrain with: make train DECLARATIONS={out}/declarations.csv "
        f"SEIZURES={out}/seizures.csv INSPECTIONS={out}/inspections.csv"
    )


audit_app = typer.Typer(no_args_is_help=True, help="Auditor tools: replay recorded decisions.")
app.add_typer(audit_app, name="audit")


@audit_app.command("replay")
def audit_replay(
    declaration_id: str = typer.Option(..., help="The declaration whose decisions to replay."),
) -> None:
    """Re-score recorded decisions with the recorded model version and the history as of each decision."""
    from serving.replay import replay_cli

    raise typer.Exit(code=replay_cli(declaration_id))
