"""Hostile training input (issue 7): adversarial contract files through the real CLI.

`run_training_input_faults(workdir)` generates a small synthetic history (4,000
declarations over two years), derives one set of contract files per adversarial case,
runs ``python -m training validate / backtest / train`` in-process (the real typer app,
through click's test runner) and checks that the outcome is the one docs/data-contract.md
prescribes: the run stops with exit code 2 and a message naming the file, or exactly the
bad rows are rejected (file, row, column, reason), counted, recorded with the run, and
everything else goes on without them. Nothing is ever trained on silently repaired data.

One `CheckResult` per case; `make reliability` prints them with the service's checks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from serving.reliability import CheckResult

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
    return History(_read_text(folder / "declarations.csv"), _read_text(folder / "seizures.csv"))


def _read_text(path: Path) -> pd.DataFrame:
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
def _restored_tracking_uri() -> Iterator[None]:
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
    with _restored_tracking_uri():
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


def _shifted(timestamp: str, days: int) -> str:
    return (pd.Timestamp(timestamp) + pd.Timedelta(days=days)).strftime(DATE_FORMAT)


def _expect_stop(rejected: int, rows: int) -> bool:
    return rejected / rows > MAX_REJECT_SHARE


def _lines(rejects: dict[str, pd.DataFrame], table: str) -> pd.DataFrame:
    return rejects.get(table, pd.DataFrame(columns=["file", "row", "column", "reason"]))


def _first_line(lines: pd.DataFrame) -> str:
    """The first reject line, short, for the table's figures."""
    if lines.empty:
        return "no reject lines"
    first = lines.iloc[0]
    reason = str(first["reason"])
    return f"row {first['row']} {first['column']}: {reason if len(reason) <= 100 else reason[:97] + '...'}"


def _check_exit(result: CheckResult, what: str, run: Run, expected: int) -> None:
    result.require(
        run.exit_code == expected,
        f"{what}: expected exit {expected}, got {run.describe()}: {run.output.strip()[-300:]}",
    )
    if expected == 2:
        result.require("error:" in run.output, f"{what}: no 'error:' line in the output")
    result.require("Traceback" not in run.output, f"{what}: a traceback in the output")


# --------------------------------------------------------------------------- the cases


def check_duplicate_seizure(history: History, workdir: Path, identical: bool) -> CheckResult:
    """A seizure id on two rows: every row with it is rejected, the reason says whether the
    rows are identical copies or conflict, and with a small seizures table (one row is ~1 %)
    the run stops. Never de-duplicated or resolved silently."""
    kind = "identical copy" if identical else "conflicting rows"
    result = CheckResult(
        f"training input: duplicated seizure id ({kind})",
        "seizure row 6 appended again" if identical else "seizure row 8 given the id of row 6",
    )
    seizures = history.seizures.copy()
    if identical:
        seizures = pd.concat([seizures, seizures.iloc[[5]]], ignore_index=True)
        rows, verdict = [6, len(seizures)], "identical copies"
    else:
        seizures.loc[7, "seizure_id"] = seizures.loc[5, "seizure_id"]
        rows, verdict = [6, 8], "they differ in seized_at"
    name = "duplicate-seizure-identical" if identical else "duplicate-seizure-conflicting"
    case = write_case(workdir, name, history.declarations, seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "seizures")
    stop = _expect_stop(len(rows), len(seizures))
    _check_exit(result, "validate", run, 2 if stop else 0)
    result.require(lines["row"].tolist() == rows, f"rejected rows {lines['row'].tolist()}, expected {rows}")
    result.require((lines["column"] == "seizure_id").all(), "reject column is not seizure_id")
    result.require(
        lines["reason"].str.startswith("duplicate id: ").all() & lines["reason"].str.contains(verdict).all(),
        f"reasons do not say 'duplicate id ... {verdict}': {lines['reason'].tolist()[:1]}",
    )
    if stop:
        result.require(
            f"{len(rows)} of {len(seizures)} rows rejected" in run.output, "stop message lacks the counts"
        )
    backtest_run, _ = backtest(case, backtest_bounds(history))
    _check_exit(result, "backtest", backtest_run, 2 if stop else 0)
    result.figures = (
        f"validate {run.describe()}, backtest {backtest_run.describe()}; "
        f"{len(lines)} of {len(seizures)} seizure rows rejected; {_first_line(lines)}"
    )
    return result


def check_seizure_before_declaration(history: History, workdir: Path) -> CheckResult:
    """A seizure dated 30 days before the declaration it names: rejected with the reason."""
    result = CheckResult(
        "training input: seizure before its declaration",
        "a linked seizure dated 30 days before the declaration it names",
    )
    seizures = history.seizures.copy()
    index = int(np.flatnonzero(seizures["declaration_id"].to_numpy() != "")[3])
    named = seizures.loc[index, "declaration_id"]
    filed = history.declarations.loc[history.declarations["declaration_id"] == named, "declared_at"].iloc[0]
    seizures.loc[index, "seized_at"] = _shifted(filed, -30)
    case = write_case(workdir, "seizure-before-declaration", history.declarations, seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "seizures")
    stop = _expect_stop(1, len(seizures))
    _check_exit(result, "validate", run, 2 if stop else 0)
    expected = [(index + 1, "seized_at")]
    result.require(
        list(zip(lines["row"], lines["column"], strict=True)) == expected,
        f"reject lines {lines[['row', 'column']].values.tolist()}, expected {expected}",
    )
    result.require(
        lines["reason"]
        .str.startswith(f"dated before the filing day of the declaration it names ('{named}'")
        .all(),
        f"reason: {lines['reason'].tolist()}",
    )
    backtest_run, out = backtest(case, backtest_bounds(history))
    _check_exit(result, "backtest", backtest_run, 2 if stop else 0)
    if not stop and backtest_run.exit_code == 0:
        contract = json.loads((out / "metrics.json").read_text()).get("contract", {})
        recorded = contract.get("tables", {}).get("seizures", {}).get("rows_rejected")
        result.require(recorded == 1, f"metrics.json records {recorded} rejected seizure rows, expected 1")
    result.figures = (
        f"validate {run.describe()}, backtest {backtest_run.describe()}; "
        f"{len(lines)} of {len(seizures)} seizure rows rejected; {_first_line(lines)}"
    )
    return result


def check_seizure_before_exporter_history(history: History, workdir: Path) -> CheckResult:
    """A seizure naming only an exporter, dated before its first declaration: a legitimate
    record (history may start after the exporter's first shipment); kept, and it counts in
    that exporter's history from its `seized_at` on, labelling no declaration."""
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features

    result = CheckResult(
        "training input: seizure before the exporter's first declaration",
        "an exporter-only seizure dated 90 days before that exporter's first declaration",
    )
    declarations = history.declarations
    exporter = declarations["exporter_id"].iloc[len(declarations) // 2]
    first = declarations.loc[declarations["exporter_id"] == exporter, "declared_at"].min()
    seizures = history.seizures.copy()
    extra = {column: "" for column in seizures.columns} | {
        "seizure_id": "SZ-BEFORE-FIRST",
        "seized_at": _shifted(first, -90),
        "exporter_id": exporter,
        "country": "IN",
        "substance": "tramadol",
    }
    seizures = pd.concat([seizures, pd.DataFrame([extra])], ignore_index=True)
    case = write_case(workdir, "seizure-before-exporter", declarations, seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "seizures")
    _check_exit(result, "validate", run, 0)
    result.require(lines.empty, f"the seizure was rejected: {_first_line(lines)}")
    tables = load_contract_tables(case.declarations, case.seizures)
    features = build_features(tables.declarations, tables.seizures, load_reference())
    mine = (tables.declarations["exporter_id"] == exporter).to_numpy()
    counted = features.loc[mine, "exporter_prior_seizures"].min()
    baseline = load_contract_tables(*_clean_files(workdir, history))
    base_features = build_features(baseline.declarations, baseline.seizures, load_reference())
    before = base_features.loc[mine, "exporter_prior_seizures"].min()
    result.require(
        counted == before + 1,
        f"exporter_prior_seizures at its first declaration {counted}, expected {before + 1}",
    )
    result.figures = (
        f"validate {run.describe()}; {len(lines)} seizure rows rejected; the exporter's seizure count "
        f"at its first declaration {before:g} -> {counted:g}"
    )
    return result


def check_far_future_declaration(history: History, workdir: Path, tracking_uri: str) -> CheckResult:
    """A declaration filed in 2199: rejected as in the future; `train` goes on without it and
    its windows end at the real data's end (before: the windows followed 2199 and training
    failed with a scikit-learn error on an empty test window)."""
    result = CheckResult(
        "training input: declaration filed in 2199", "declared_at 2199-01-01T10:00:00 on one row"
    )
    declarations = history.declarations.copy()
    index = len(declarations) // 2
    declarations.loc[index, "declared_at"] = "2199-01-01T10:00:00"
    case = write_case(workdir, "declaration-2199", declarations, history.seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "declarations")
    _check_exit(result, "validate", run, 0)
    result.require(
        list(zip(lines["row"], lines["column"], strict=True)) == [(index + 1, "declared_at")],
        f"reject lines {lines[['row', 'column']].values.tolist()}",
    )
    result.require(
        lines["reason"].str.startswith("in the future").all(), f"reason: {lines['reason'].tolist()}"
    )
    trained = train(case, tracking_uri)
    _check_exit(result, "train", trained, 0)
    figures = (
        f"validate {run.describe()}, train {trained.describe()}; "
        f"{len(lines)} declaration rows rejected; {_first_line(lines)}"
    )
    if trained.exit_code == 0:
        run_data = _latest_run(tracking_uri)
        rejected = run_data.data.metrics.get("contract_declarations_rows_rejected")
        result.require(rejected == 1, f"run records {rejected} rejected declarations")
        windows = _run_windows(tracking_uri, run_data.info.run_id, case.folder / "artifacts")
        test_to = pd.Timestamp(windows["test_to"])
        result.require(test_to <= history.declared_at.max(), f"test window ends {test_to}, after the data")
        figures += f"; test window ends {test_to.date()}"
    result.figures = figures
    return result


def check_far_future_seizure(history: History, workdir: Path) -> CheckResult:
    """A seizure dated 2199: rejected as in the future."""
    result = CheckResult("training input: seizure dated 2199", "seized_at 2199-01-01 on one row")
    seizures = history.seizures.copy()
    seizures.loc[1, "seized_at"] = "2199-01-01"
    case = write_case(workdir, "seizure-2199", history.declarations, seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "seizures")
    stop = _expect_stop(1, len(seizures))
    _check_exit(result, "validate", run, 2 if stop else 0)
    result.require(
        list(zip(lines["row"], lines["column"], strict=True)) == [(2, "seized_at")]
        and lines["reason"].str.startswith("in the future").all(),
        f"reject lines {lines.values.tolist()}",
    )
    result.figures = f"validate {run.describe()}; {len(lines)} seizure rows rejected; {_first_line(lines)}"
    return result


def check_seizure_after_data_end(history: History, workdir: Path) -> CheckResult:
    """A seizure dated after the last declaration (but not in the future) is a late-reported
    outcome: kept, and it changes nothing a model trained or tested before it could see."""
    result = CheckResult(
        "training input: seizure after the data's end",
        "a seizure naming the last declaration, dated 30 days after it",
    )
    declarations = history.declarations
    last = declarations.iloc[int(history.declared_at.to_numpy().argmax())]
    seizures = history.seizures.copy()
    extra = {column: "" for column in seizures.columns} | {
        "seizure_id": "SZ-AFTER-END",
        "seized_at": _shifted(last["declared_at"], 30),
        "declaration_id": last["declaration_id"],
        "country": "NG",
        "substance": "tramadol",
    }
    seizures = pd.concat([seizures, pd.DataFrame([extra])], ignore_index=True)
    case = write_case(workdir, "seizure-after-end", declarations, seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "seizures")
    _check_exit(result, "validate", run, 0)
    result.require(lines.empty, f"the seizure was rejected: {_first_line(lines)}")
    bounds = backtest_bounds(history)
    late_run, late_out = backtest(case, bounds)
    clean_run, clean_out = backtest(_clean_case(workdir, history), bounds)
    _check_exit(result, "backtest", late_run, 0)
    _check_exit(result, "backtest (clean)", clean_run, 0)
    same = late_run.exit_code == clean_run.exit_code == 0 and _same_scores(late_out, clean_out)
    result.require(same, "backtest scores differ from the clean history's")
    result.figures = (
        f"validate {run.describe()}, backtest {late_run.describe()}; {len(lines)} seizure rows rejected; "
        f"backtest scores {'identical to' if same else 'DIFFERENT from'} the clean history's"
    )
    return result


def _malformed(history: History, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Declarations with `share` of the rows broken (one malformed cell each, kinds cycled);
    and the expected reject lines (row, column, reason)."""
    declarations = history.declarations.copy()
    rng = np.random.default_rng(seed)
    broken = np.sort(rng.choice(len(declarations), round(share * len(declarations)), replace=False))
    expected = []
    for k, column_value in enumerate(MALFORMED_VALUES):  # a loop over fault kinds, not rows
        column, value, reason = column_value
        rows = broken[k :: len(MALFORMED_VALUES)]
        declarations.loc[rows, column] = value
        expected.append(pd.DataFrame({"row": rows + 1, "column": column, "reason": reason}))
    return declarations, pd.concat(expected, ignore_index=True).sort_values("row", ignore_index=True)


def _matches(lines: pd.DataFrame, expected: pd.DataFrame) -> bool:
    if len(lines) != len(expected):
        return False
    got = lines.sort_values("row", ignore_index=True)
    reasons_ok = [want in have for have, want in zip(got["reason"], expected["reason"], strict=True)]
    return (
        got["row"].tolist() == expected["row"].tolist()
        and got["column"].tolist() == expected["column"].tolist()
        and all(reasons_ok)
    )


def check_malformed_over_limit(history: History, workdir: Path, tracking_uri: str) -> CheckResult:
    """10 % malformed declaration rows: every one is in the rejects file with its reason,
    and `validate` and `train` stop with exit 2; no model is trained or registered."""
    result = CheckResult(
        "training input: 10% malformed rows",
        f"{round(0.10 * len(history.declarations))} declaration rows, one bad cell each "
        f"({len(MALFORMED_VALUES)} kinds)",
    )
    declarations, expected = _malformed(history, 0.10, seed=1)
    case = write_case(workdir, "malformed-10pct", declarations, history.seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "declarations")
    _check_exit(result, "validate", run, 2)
    result.require(_matches(lines, expected), f"rejects differ from the {len(expected)} broken cells")
    share = f"{len(expected)} of {len(declarations)} rows rejected (10.00%)"
    result.require(share in run.output, f"stop message lacks '{share}'")
    versions_before = len(model_versions(tracking_uri))
    trained = train(case, tracking_uri)
    _check_exit(result, "train", trained, 2)
    result.require(share in trained.output, "train's message lacks the counts")
    result.require(len(model_versions(tracking_uri)) == versions_before, "a model version was registered")
    registered = len(model_versions(tracking_uri)) - versions_before
    result.figures = (
        f"validate {run.describe()}, train {trained.describe()}; {len(lines)} of {len(declarations)} rows "
        f"rejected; {registered} model versions registered"
    )
    return result


def check_malformed_under_limit(history: History, workdir: Path, tracking_uri: str) -> CheckResult:
    """0.5 % malformed declaration rows: rejected and reported, training goes on with the
    remaining rows only (bit-identical to a history without them) and the MLflow run records
    the count and the reject lines."""
    result = CheckResult(
        "training input: 0.5% malformed rows",
        f"{round(0.005 * len(history.declarations))} declaration rows, one bad cell each",
    )
    declarations, expected = _malformed(history, 0.005, seed=2)
    case = write_case(workdir, "malformed-0.5pct", declarations, history.seizures)
    run, rejects = validate(case)
    lines = _lines(rejects, "declarations")
    _check_exit(result, "validate", run, 0)
    result.require(_matches(lines, expected), f"rejects differ from the broken cells: {_first_line(lines)}")

    versions_before = len(model_versions(tracking_uri))
    trained = train(case, tracking_uri)
    _check_exit(result, "train", trained, 0)
    logged = None
    if trained.exit_code == 0:
        result.require(
            len(model_versions(tracking_uri)) == versions_before + 1, "no model version registered"
        )
        latest = _latest_run(tracking_uri)
        logged = latest.data.metrics.get("contract_declarations_rows_rejected")
        result.require(
            logged == len(expected), f"run records {logged} rejected rows, expected {len(expected)}"
        )
        recorded = _rejects_artifact(tracking_uri, latest.info.run_id, case.folder / "artifacts")
        result.require(
            recorded is not None and _matches(recorded, expected),
            "the run's contract/declarations_rejects.csv is missing or differs from the broken cells",
        )

    # Trained on exactly the valid rows: the same as a history without the broken rows.
    bounds = backtest_bounds(history)
    bad_run, bad_out = backtest(case, bounds)
    kept = declarations.drop(index=expected["row"].to_numpy() - 1)
    without = write_case(workdir, "malformed-0.5pct-removed", kept, history.seizures)
    kept_run, kept_out = backtest(without, bounds)
    _check_exit(result, "backtest", bad_run, 0)
    _check_exit(result, "backtest (rows removed)", kept_run, 0)
    same = bad_run.exit_code == kept_run.exit_code == 0 and _same_scores(bad_out, kept_out)
    result.require(same, "scores differ from a backtest on the history without the broken rows")
    recorded = "nothing" if logged is None else f"{logged:g}"
    result.figures = (
        f"validate {run.describe()}, train {trained.describe()}, backtest {bad_run.describe()}; "
        f"{len(lines)} of {len(declarations)} rows rejected, the MLflow run records {recorded}; "
        f"backtest scores {'identical to' if same else 'DIFFERENT from'} the history without them"
    )
    return result


def check_bad_file_corpus(history: History, workdir: Path, tracking_uri: str) -> CheckResult:
    """Unusable files from the contract's bad-file corpus: `train` stops with exit 2 and a
    message naming the file and the problem; nothing is registered."""
    result = CheckResult(
        "training input: bad-file corpus through train",
        "empty, header-only, non-UTF-8, missing column, broken CSV, unsupported extension",
    )
    clean = _clean_case(workdir, history)
    folder = workdir / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    text = clean.declarations.read_bytes()
    header = text.split(b"\n", 1)[0] + b"\n"
    files = {
        "empty.csv": (b"", "file is empty"),
        "header-only.csv": (header, "no rows"),
        "latin1.csv": (header + b"\xe9" + text[len(header) :], "not valid UTF-8 at byte offset"),
        "no-quantity.csv": (
            history.declarations.drop(columns="quantity").to_csv(index=False).encode(),
            "required column(s) quantity missing",
        ),
        "broken.csv": (
            header + b"a,b\n" + b",".join([b"x"] * (header.count(b",") + 3)) + b"\n",
            "not a readable CSV",
        ),
        "declarations.xlsx": (b"PK\x03\x04", "unsupported file extension"),
    }
    versions_before = len(model_versions(tracking_uri))
    stopped = 0
    for name, (content, message) in files.items():
        path = folder / name
        path.write_bytes(content)
        run = train(clean, tracking_uri, declarations=path)
        ok = (
            run.exit_code == 2
            and message in run.output
            and name in run.output
            and "Traceback" not in run.output
        )
        stopped += ok
        result.require(
            ok, f"{name}: expected exit 2 with '{message}', got {run.describe()}: {run.output[-200:]}"
        )
    result.require(len(model_versions(tracking_uri)) == versions_before, "a model version was registered")
    result.figures = (
        f"{stopped}/{len(files)} stopped with exit 2 and a message naming the file; no model registered"
    )
    return result


def _same_scores(first: Path, second: Path) -> bool:
    return (first / "scores.csv").read_bytes() == (second / "scores.csv").read_bytes()


def _clean_files(workdir: Path, history: History) -> tuple[Path, Path]:
    case = _clean_case(workdir, history)
    return case.declarations, case.seizures


def _clean_case(workdir: Path, history: History) -> Case:
    folder = workdir / "clean"
    if (folder / "declarations.csv").is_file():
        return Case("clean", folder, folder / "declarations.csv", folder / "seizures.csv")
    return write_case(workdir, "clean", history.declarations, history.seizures)


def _create_experiment(tracking_uri: str, artifacts: Path) -> None:
    """The training experiment with its artifacts under `artifacts` (the default would be
    ``./mlruns`` under whatever the current directory is)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())


def _latest_run(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)[0]


def _rejects_artifact(tracking_uri: str, run_id: str, folder: Path) -> pd.DataFrame | None:
    """The declarations reject lines logged with a run (None when the run has none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(run_id, "contract")}
    if "contract/declarations_rejects.csv" not in logged:
        return None
    path = client.download_artifacts(run_id, "contract/declarations_rejects.csv", str(folder))
    return pd.read_csv(path, dtype={"row": "int64"}, keep_default_na=False)


def _run_windows(tracking_uri: str, run_id: str, folder: Path) -> dict[str, str]:
    """The time windows a training run recorded in its lineage.json."""
    from mlflow.tracking import MlflowClient

    path = MlflowClient(tracking_uri).download_artifacts(run_id, "lineage.json", str(folder))
    return json.loads(Path(path).read_text())["windows"]


# --------------------------------------------------------------------------- entry point


def run_training_input_faults(workdir: Path) -> list[CheckResult]:
    """Every adversarial training-input case on a small generated history under `workdir`."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    _create_experiment(tracking_uri, workdir / "mlartifacts")
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


def main() -> int:
    """`python -m training.input_faults`: print the table; 1 if any check failed."""
    import tempfile

    from serving.reliability import print_table

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
