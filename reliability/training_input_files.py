"""Files and runs for the adversarial training-input checks (`reliability.training_input`).

A small generated history, one folder of contract files per case, and the real training
CLI (`python -m training validate / backtest / train`) run in-process through click's test
runner, with helpers that read what a run left behind (exit code, output, rejects, MLflow).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reliability.checks import CheckResult

#: Size of the generated history: big enough to train on, small enough for seconds per run.
HISTORY_ROWS = 4_000
HISTORY_SEED = 5
#: The contract's default limit on the share of rejected rows per table.
MAX_REJECT_SHARE = 0.01
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
MODEL_NAME = "diversion-risk"
EXPERIMENT = "diversion-risk"

#: Malformed values cycled over the broken rows: (column, value, expected reason in the rejects).
MALFORMED_VALUES: tuple[tuple[str, str, str], ...] = (
    ("quantity", "ten", "not a number: 'ten'"),
    ("declared_at", "05/01/2024", "not an ISO 8601 date or timestamp: '05/01/2024'"),
    ("hs_code", "3004A", "not an HS code of exactly 6 or 8 digits: '3004A'"),
    ("transport_mode", "BOAT", "not one of SEA, AIR, COURIER, POST, ROAD, RAIL: 'BOAT'"),
    ("destination_country", "XX", "not an ISO 3166-1 alpha-2 country code"),
    ("exporter_id", "", "missing value (column is required)"),
    ("gross_weight_kg", "-3", "must be >= 0: '-3'"),
)


@dataclass(frozen=True)
class History:
    """The clean generated history as text frames (the way the cells sit in a CSV)."""

    declarations: pd.DataFrame
    seizures: pd.DataFrame

    @property
    def declared_at(self) -> pd.Series:
        return pd.to_datetime(self.declarations["declared_at"], format="ISO8601")


@dataclass(frozen=True)
class Case:
    """One adversarial file set on disk."""

    name: str
    folder: Path
    declarations: Path
    seizures: Path


@dataclass(frozen=True)
class Run:
    """The outcome of one CLI invocation."""

    exit_code: int
    output: str
    exception: BaseException | None

    def describe(self) -> str:
        if self.exception is not None and not isinstance(self.exception, SystemExit):
            return f"exit {self.exit_code} ({type(self.exception).__name__}: {self.exception})"
        return f"exit {self.exit_code}"


# --------------------------------------------------------------------------- files and runs


def generate_history(folder: Path, rows: int = HISTORY_ROWS, seed: int = HISTORY_SEED) -> History:
    """A clean synthetic history written as CSV to `folder` and read back as text."""
    from training.synthetic import generate_history as generate

    folder.mkdir(parents=True, exist_ok=True)
    declarations, seizures, _ = generate(rows=rows, years=2.0, seed=seed)
    declarations.to_csv(folder / "declarations.csv", index=False, date_format=DATE_FORMAT)
    seizures.to_csv(folder / "seizures.csv", index=False, date_format=DATE_FORMAT)
    return History(read_contract_csv(folder / "declarations.csv"), read_contract_csv(folder / "seizures.csv"))


def read_contract_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def write_case(workdir: Path, name: str, declarations: pd.DataFrame, seizures: pd.DataFrame) -> Case:
    """Write one case's declarations and seizures as CSV into ``workdir/name``."""
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    declarations.to_csv(folder / "declarations.csv", index=False)
    seizures.to_csv(folder / "seizures.csv", index=False)
    return Case(name, folder, folder / "declarations.csv", folder / "seizures.csv")


def run_cli(args: list[str]) -> Run:
    """``python -m training <args>`` in this process."""
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(app, args)
    return Run(result.exit_code, result.output, result.exception)


def validate(case: Case) -> tuple[Run, dict[str, pd.DataFrame]]:
    """`validate` on a case; the rejects files it wrote, by table."""
    rejects_dir = case.folder / "validate-rejects"
    run = run_cli(
        [
            "validate",
            "--declarations",
            str(case.declarations),
            "--seizures",
            str(case.seizures),
            "--rejects-dir",
            str(rejects_dir),
        ]
    )
    rejects = {
        table: pd.read_csv(path, dtype={"row": "int64"}, keep_default_na=False)
        for table in ("declarations", "seizures")
        if (path := rejects_dir / f"{table}_rejects.csv").is_file()
    }
    return run, rejects


def write_config(case: Case, tracking_uri: str | None = None) -> Path:
    """The case's training settings: one LightGBM thread (on a few thousand rows a second
    thread only adds contention on a shared machine: ~0.5 s against ~3-8 s per fit under
    load) and, for `train`, a private MLflow store and outputs folder."""
    lines = ["[booster]", "num_threads = 1"]
    if tracking_uri is not None:
        outputs = case.folder / "outputs"
        lines = [
            f"tracking_uri = {json.dumps(tracking_uri)}",
            f"output_dir = {json.dumps(str(outputs))}",
            *lines,
        ]
    path = case.folder / ("train.toml" if tracking_uri else "settings.toml")
    path.write_text("\n".join(lines) + "\n")
    return path


def backtest(case: Case, bounds: tuple[str, str, str], out_name: str = "backtest") -> tuple[Run, Path]:
    """`backtest` on a case with (train_until, test_from, test_to); the output folder."""
    out = case.folder / out_name
    train_until, test_from, test_to = bounds
    run = run_cli(
        [
            "backtest",
            "--config",
            str(write_config(case)),
            "--declarations",
            str(case.declarations),
            "--seizures",
            str(case.seizures),
            "--train-until",
            train_until,
            "--test-from",
            test_from,
            "--test-to",
            test_to,
            "--out",
            str(out),
        ]
    )
    return run, out


@contextlib.contextmanager
def restored_tracking_uri() -> Iterator[None]:
    """`train` points the process-wide MLflow client at its store; put it back afterwards."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def train(case: Case, tracking_uri: str, declarations: Path | None = None) -> Run:
    """`train --config` on a case, into a private MLflow store."""
    config = write_config(case, tracking_uri)
    with restored_tracking_uri():
        return run_cli(
            [
                "train",
                "--config",
                str(config),
                "--declarations",
                str(declarations or case.declarations),
                "--seizures",
                str(case.seizures),
            ]
        )


def model_versions(tracking_uri: str) -> list:
    """Registered versions of the model in the private store (none before the first train)."""
    from mlflow.tracking import MlflowClient

    return list(MlflowClient(tracking_uri).search_model_versions(f"name='{MODEL_NAME}'"))


def backtest_bounds(history: History) -> tuple[str, str, str]:
    """Train until 60 % into the history; test the 60 days after."""
    at = history.declared_at
    train_until = (at.min() + 0.6 * (at.max() - at.min())).floor("D")
    return (
        str(train_until.date()),
        str(train_until.date()),
        str((train_until + pd.Timedelta(days=60)).date()),
    )


def shifted(timestamp: str, days: int) -> str:
    return (pd.Timestamp(timestamp) + pd.Timedelta(days=days)).strftime(DATE_FORMAT)


def expect_stop(rejected: int, rows: int) -> bool:
    return rejected / rows > MAX_REJECT_SHARE


def reject_lines(rejects: dict[str, pd.DataFrame], table: str) -> pd.DataFrame:
    return rejects.get(table, pd.DataFrame(columns=["file", "row", "column", "reason"]))


def first_line(lines: pd.DataFrame) -> str:
    """The first reject line, short, for the table's figures."""
    if lines.empty:
        return "no reject lines"
    first = lines.iloc[0]
    reason = str(first["reason"])
    return f"row {first['row']} {first['column']}: {reason if len(reason) <= 100 else reason[:97] + '...'}"


def check_exit(result: CheckResult, what: str, run: Run, expected: int) -> None:
    result.require(
        run.exit_code == expected,
        f"{what}: expected exit {expected}, got {run.describe()}: {run.output.strip()[-300:]}",
    )
    if expected == 2:
        result.require("error:" in run.output, f"{what}: no 'error:' line in the output")
    result.require("Traceback" not in run.output, f"{what}: a traceback in the output")


def same_scores(first: Path, second: Path) -> bool:
    return (first / "scores.csv").read_bytes() == (second / "scores.csv").read_bytes()


def clean_files(workdir: Path, history: History) -> tuple[Path, Path]:
    case = clean_case(workdir, history)
    return case.declarations, case.seizures


def clean_case(workdir: Path, history: History) -> Case:
    folder = workdir / "clean"
    if (folder / "declarations.csv").is_file():
        return Case("clean", folder, folder / "declarations.csv", folder / "seizures.csv")
    return write_case(workdir, "clean", history.declarations, history.seizures)


def create_experiment(tracking_uri: str, artifacts: Path) -> None:
    """The training experiment with its artifacts under `artifacts` (the default would be
    ``./mlruns`` under whatever the current directory is)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())


def latest_run(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(
        experiments,
        filter_string="tags.mlflow.runName LIKE 'train-%'",  # the training run, not a search trial's child run
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]


def rejects_artifact(tracking_uri: str, run_id: str, folder: Path) -> pd.DataFrame | None:
    """The declarations reject lines logged with a run (None when the run has none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(run_id, "contract")}
    if "contract/declarations_rejects.csv" not in logged:
        return None
    path = client.download_artifacts(run_id, "contract/declarations_rejects.csv", str(folder))
    return pd.read_csv(path, dtype={"row": "int64"}, keep_default_na=False)


def run_windows(tracking_uri: str, run_id: str, folder: Path) -> dict[str, str]:
    """The time windows a training run recorded in its lineage.json."""
    from mlflow.tracking import MlflowClient

    path = MlflowClient(tracking_uri).download_artifacts(run_id, "lineage.json", str(folder))
    return json.loads(Path(path).read_text())["windows"]
