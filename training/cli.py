"""Command-line interface for data scientists and auditors (`python -m training --help`).

Each command parses its options and delegates to a function in the library; heavy
imports happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Diversion-risk training pipeline.")


@app.command()
def generate(
    rows: int = typer.Option(200_000, help="Number of export declarations."),
    years: float = typer.Option(3.0, help="Years of history."),
    seed: int = typer.Option(42, help="Random seed; the same seed gives byte-identical files."),
    out: Path = typer.Option(Path("data/synthetic"), help="Output folder."),
    format: str = typer.Option("parquet", help="csv or parquet."),
    drift: bool = typer.Option(False, help="Add a new diversion route mid-period (drift scenario)."),
    preset: str = typer.Option(
        "default", help="How diverters behave: default, or adversarial (they imitate legitimate traders)."
    ),
) -> None:
    """Write a synthetic export history (declarations, seizures, ground truth) in the contract."""
    from training.synthetic import write_history

    write_history(out_dir=out, rows=rows, years=years, seed=seed, fmt=format, drift=drift, preset=preset)


@app.command()
def validate(
    declarations: Path = typer.Option(..., help="Declarations file (CSV or Parquet)."),
    seizures: Path = typer.Option(..., help="Seizures file (CSV or Parquet)."),
    inspections: Path | None = typer.Option(None, help="Optional inspections file."),
    rejects_dir: Path = typer.Option(Path("outputs/rejects"), help="Where rejected rows are written."),
    max_reject_share: float = typer.Option(0.01, help="Stop when more than this share of rows is rejected."),
) -> None:
    """Validate contract files; write rejects; stop with a clear error above the rejected share."""
    from features.validation import ContractError, load_contract_tables

    try:
        load_contract_tables(
            declarations,
            seizures,
            inspections,
            rejects_dir=rejects_dir,
            max_reject_share=max_reject_share,
            verbose=True,
        )
    except ContractError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


@app.command()
def profile(
    declarations: Path = typer.Option(..., help="Declarations file."),
    seizures: Path = typer.Option(..., help="Seizures file."),
) -> None:
    """Print row counts, date range, positive (seized) rate and counts per typology."""
    from training.profile import profile_history

    profile_history(declarations, seizures)


@app.command()
def train(
    config: Path | None = typer.Option(
        None, help="TOML file with training settings (see training/config.py)."
    ),
    declarations: Path | None = typer.Option(None, help="Declarations file (CSV or Parquet)."),
    seizures: Path | None = typer.Option(None, help="Seizures file (CSV or Parquet)."),
    inspections: Path | None = typer.Option(None, help="Optional inspections file."),
    seed: int | None = typer.Option(None, help="Random seed."),
    max_reject_share: float | None = typer.Option(
        None, help="Stop when more than this share of a table's rows is rejected (default 0.01)."
    ),
    trials: int | None = typer.Option(
        None, help="Fits in the seeded hyperparameter search on the validation window (default 6)."
    ),
    engine: str | None = typer.Option(
        None, help="local (one process, the default) or dask (features and the final fit on a Dask cluster)."
    ),
    scheduler: str | None = typer.Option(
        None, help="Dask scheduler address (tcp://host:8786) for --engine dask; none: a LocalCluster."
    ),
    workers: int | None = typer.Option(
        None, help="Worker processes of the LocalCluster started for --engine dask without --scheduler."
    ),
) -> None:
    """Fit, evaluate against baselines, log to MLflow, register, and promote by alias."""
    from features.validation import ContractError
    from training.config import TrainingConfig
    from training.distributed import ClusterFault
    from training.pipeline import train as run

    settings = TrainingConfig.load(
        config,
        declarations=declarations,
        seizures=seizures,
        inspections=inspections,
        seed=seed,
        max_reject_share=max_reject_share,
        trials=trials,
        engine=engine,
        dask_scheduler=scheduler or None,
        dask_workers=workers,
    )
    try:
        run(settings)
    except (ContractError, ValueError, ClusterFault) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


@app.command()
def backtest(
    declarations: Path = typer.Option(..., help="Declarations file (CSV or Parquet)."),
    seizures: Path = typer.Option(..., help="Seizures file (CSV or Parquet)."),
    train_until: str = typer.Option(..., help="Train on what was known strictly before this date."),
    test_from: str = typer.Option(..., help="First filing date of the test window (inclusive)."),
    test_to: str = typer.Option(..., help="End of the test window (exclusive)."),
    out: Path = typer.Option(..., help="Output folder for scores.csv and metrics.json."),
    seed: int | None = typer.Option(None, help="Random seed (default 42)."),
    max_reject_share: float | None = typer.Option(
        None, help="Stop when more than this share of a table's rows is rejected (default 0.01)."
    ),
    config: Path | None = typer.Option(
        None, help="TOML file with training settings (see training/config.py), as for train."
    ),
    trials: int | None = typer.Option(
        None, help="Fits in the seeded hyperparameter search on the validation window (default 6)."
    ),
    drop_family: list[str] = typer.Option(
        [], help="Leave a feature family out of the model (ablation; repeatable): e.g. network."
    ),
) -> None:
    """Train as of --train-until and score [--test-from, --test-to) with point-in-time features."""
    import pandas as pd

    from features.definitions import columns_without
    from features.reference import load_reference
    from features.validation import ContractError, load_contract_tables
    from training.backtest import build_features, fit_and_evaluate, write_backtest
    from training.config import TrainingConfig

    settings = TrainingConfig.load(
        config,
        declarations=declarations,
        seizures=seizures,
        seed=seed,
        max_reject_share=max_reject_share,
        trials=trials,
    )
    try:
        bounds = [pd.Timestamp(v) for v in (train_until, test_from, test_to)]
        tables = load_contract_tables(
            declarations,
            seizures,
            None,
            rejects_dir=out / "rejects",
            max_reject_share=settings.max_reject_share,
        )
        typer.echo(f"contract: {tables.report.summary()}")
        frame, seized = tables.declarations, tables.seizures
        columns = columns_without(drop_family) if drop_family else None
        features = build_features(frame, seized, load_reference())
        result = fit_and_evaluate(frame, seized, features, settings, *bounds, columns=columns)
    except (ContractError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    write_backtest(result, frame, out, contract=tables.report.as_dict())
    m = result.metrics
    typer.echo(
        f"scored {int(m['declarations']):,} declarations ({int(m['positives'])} diverted): "
        f"P@1% {m['precision_at_1pct']:.3f} P@2% {m['precision_at_2pct']:.3f} P@5% {m['precision_at_5pct']:.3f}"
        f" -> {out}/scores.csv, {out}/metrics.json"
    )


@app.command()
def simulate(
    declarations: Path = typer.Option(Path("data/synthetic/declarations.parquet")),
    seizures: Path = typer.Option(Path("data/synthetic/seizures.parquet")),
    config: Path | None = typer.Option(None, help="TOML file with simulation settings."),
) -> None:
    """Week-by-week inspection-budget simulation of selection strategies (see docs/simulation.md)."""
    from training.simulation_report import run_simulation_cli

    run_simulation_cli(declarations, seizures, config)


@app.command()
def monitor(
    declarations: Path = typer.Option(Path("data/synthetic/declarations.parquet")),
    seizures: Path = typer.Option(Path("data/synthetic/seizures.parquet")),
    recent_days: int = typer.Option(
        90, help="Compare the last N days of declarations with the training window."
    ),
) -> None:
    """Drift report: PSI per feature, score and channel-rate shift against the training window."""
    from training.monitor import run_monitor_cli

    run_monitor_cli(declarations, seizures, recent_days)


audit_app = typer.Typer(
    no_args_is_help=True,
    help="Auditor tools: model review reports (decision replay: python -m serving audit replay).",
)
app.add_typer(audit_app, name="audit")


@audit_app.command("model")
def audit_model(version: str = typer.Option(..., help="Registered model version.")) -> None:
    """Write the self-contained HTML model review report and log it to the model's MLflow run."""
    from training.audit_report import model_report_cli

    model_report_cli(version)


@app.command("mlflow-server")
def mlflow_server(
    backend_store_uri: str = typer.Option(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow", help="PostgreSQL URL (created when missing)."
    ),
    artifacts: Path = typer.Option(Path("mlartifacts"), help="Where the server stores artifacts it proxies."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(5000, help="Port."),
    allowed_hosts: str | None = typer.Option(
        None, help="Comma-separated Host headers to accept (behind a proxy)."
    ),
) -> None:
    """Shared MLflow tracking server: PostgreSQL backend store, artifacts proxied (`--serve-artifacts`)."""
    from training.tracking_server import TrackingServer, serve

    raise typer.Exit(
        code=serve(TrackingServer(backend_store_uri, artifacts, host, port, allowed_hosts=allowed_hosts))
    )
