"""The adversarial training-input cases: one `CheckResult` each (see docs/data-contract.md).

Duplicated and out-of-order seizures, far-future dates, malformed rows over and under the
rejected-share limit, and a corpus of bad files through `train`: the run stops with exit
code 2 and a message naming the file, or exactly the bad rows are rejected and everything
else goes on without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from reliability.checks import CheckResult
from reliability.training_input_files import (
    MALFORMED_VALUES,
    History,
    backtest,
    backtest_bounds,
    check_exit,
    clean_case,
    clean_files,
    expect_stop,
    first_line,
    latest_run,
    model_versions,
    reject_lines,
    rejects_artifact,
    run_windows,
    same_scores,
    shifted,
    train,
    validate,
    write_case,
)

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
    lines = reject_lines(rejects, "seizures")
    stop = expect_stop(len(rows), len(seizures))
    check_exit(result, "validate", run, 2 if stop else 0)
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
    check_exit(result, "backtest", backtest_run, 2 if stop else 0)
    result.figures = (
        f"validate {run.describe()}, backtest {backtest_run.describe()}; "
        f"{len(lines)} of {len(seizures)} seizure rows rejected; {first_line(lines)}"
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
    seizures.loc[index, "seized_at"] = shifted(filed, -30)
    case = write_case(workdir, "seizure-before-declaration", history.declarations, seizures)
    run, rejects = validate(case)
    lines = reject_lines(rejects, "seizures")
    stop = expect_stop(1, len(seizures))
    check_exit(result, "validate", run, 2 if stop else 0)
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
    check_exit(result, "backtest", backtest_run, 2 if stop else 0)
    if not stop and backtest_run.exit_code == 0:
        contract = json.loads((out / "metrics.json").read_text()).get("contract", {})
        recorded = contract.get("tables", {}).get("seizures", {}).get("rows_rejected")
        result.require(recorded == 1, f"metrics.json records {recorded} rejected seizure rows, expected 1")
    result.figures = (
        f"validate {run.describe()}, backtest {backtest_run.describe()}; "
        f"{len(lines)} of {len(seizures)} seizure rows rejected; {first_line(lines)}"
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
        "seized_at": shifted(first, -90),
        "exporter_id": exporter,
        "country": "IN",
        "substance": "tramadol",
    }
    seizures = pd.concat([seizures, pd.DataFrame([extra])], ignore_index=True)
    case = write_case(workdir, "seizure-before-exporter", declarations, seizures)
    run, rejects = validate(case)
    lines = reject_lines(rejects, "seizures")
    check_exit(result, "validate", run, 0)
    result.require(lines.empty, f"the seizure was rejected: {first_line(lines)}")
    tables = load_contract_tables(case.declarations, case.seizures)
    features = build_features(tables.declarations, tables.seizures, load_reference())
    mine = (tables.declarations["exporter_id"] == exporter).to_numpy()
    counted = features.loc[mine, "exporter_prior_seizures"].min()
    baseline = load_contract_tables(*clean_files(workdir, history))
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
    lines = reject_lines(rejects, "declarations")
    check_exit(result, "validate", run, 0)
    result.require(
        list(zip(lines["row"], lines["column"], strict=True)) == [(index + 1, "declared_at")],
        f"reject lines {lines[['row', 'column']].values.tolist()}",
    )
    result.require(
        lines["reason"].str.startswith("in the future").all(), f"reason: {lines['reason'].tolist()}"
    )
    trained = train(case, tracking_uri)
    check_exit(result, "train", trained, 0)
    figures = (
        f"validate {run.describe()}, train {trained.describe()}; "
        f"{len(lines)} declaration rows rejected; {first_line(lines)}"
    )
    if trained.exit_code == 0:
        run_data = latest_run(tracking_uri)
        rejected = run_data.data.metrics.get("contract_declarations_rows_rejected")
        result.require(rejected == 1, f"run records {rejected} rejected declarations")
        windows = run_windows(tracking_uri, run_data.info.run_id, case.folder / "artifacts")
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
    lines = reject_lines(rejects, "seizures")
    stop = expect_stop(1, len(seizures))
    check_exit(result, "validate", run, 2 if stop else 0)
    result.require(
        list(zip(lines["row"], lines["column"], strict=True)) == [(2, "seized_at")]
        and lines["reason"].str.startswith("in the future").all(),
        f"reject lines {lines.values.tolist()}",
    )
    result.figures = f"validate {run.describe()}; {len(lines)} seizure rows rejected; {first_line(lines)}"
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
        "seized_at": shifted(last["declared_at"], 30),
        "declaration_id": last["declaration_id"],
        "country": "NG",
        "substance": "tramadol",
    }
    seizures = pd.concat([seizures, pd.DataFrame([extra])], ignore_index=True)
    case = write_case(workdir, "seizure-after-end", declarations, seizures)
    run, rejects = validate(case)
    lines = reject_lines(rejects, "seizures")
    check_exit(result, "validate", run, 0)
    result.require(lines.empty, f"the seizure was rejected: {first_line(lines)}")
    bounds = backtest_bounds(history)
    late_run, late_out = backtest(case, bounds)
    clean_run, clean_out = backtest(clean_case(workdir, history), bounds)
    check_exit(result, "backtest", late_run, 0)
    check_exit(result, "backtest (clean)", clean_run, 0)
    same = late_run.exit_code == clean_run.exit_code == 0 and same_scores(late_out, clean_out)
    result.require(same, "backtest scores differ from the clean history's")
    result.figures = (
        f"validate {run.describe()}, backtest {late_run.describe()}; {len(lines)} seizure rows rejected; "
        f"backtest scores {'identical to' if same else 'DIFFERENT from'} the clean history's"
    )
    return result


def malformed(history: History, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def matches(lines: pd.DataFrame, expected: pd.DataFrame) -> bool:
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
    declarations, expected = malformed(history, 0.10, seed=1)
    case = write_case(workdir, "malformed-10pct", declarations, history.seizures)
    run, rejects = validate(case)
    lines = reject_lines(rejects, "declarations")
    check_exit(result, "validate", run, 2)
    result.require(matches(lines, expected), f"rejects differ from the {len(expected)} broken cells")
    share = f"{len(expected)} of {len(declarations)} rows rejected (10.00%)"
    result.require(share in run.output, f"stop message lacks '{share}'")
    versions_before = len(model_versions(tracking_uri))
    trained = train(case, tracking_uri)
    check_exit(result, "train", trained, 2)
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
    declarations, expected = malformed(history, 0.005, seed=2)
    case = write_case(workdir, "malformed-0.5pct", declarations, history.seizures)
    run, rejects = validate(case)
    lines = reject_lines(rejects, "declarations")
    check_exit(result, "validate", run, 0)
    result.require(matches(lines, expected), f"rejects differ from the broken cells: {first_line(lines)}")

    versions_before = len(model_versions(tracking_uri))
    trained = train(case, tracking_uri)
    check_exit(result, "train", trained, 0)
    logged = None
    if trained.exit_code == 0:
        result.require(
            len(model_versions(tracking_uri)) == versions_before + 1, "no model version registered"
        )
        latest = latest_run(tracking_uri)
        logged = latest.data.metrics.get("contract_declarations_rows_rejected")
        result.require(
            logged == len(expected), f"run records {logged} rejected rows, expected {len(expected)}"
        )
        recorded = rejects_artifact(tracking_uri, latest.info.run_id, case.folder / "artifacts")
        result.require(
            recorded is not None and matches(recorded, expected),
            "the run's contract/declarations_rejects.csv is missing or differs from the broken cells",
        )

    # Trained on exactly the valid rows: the same as a history without the broken rows.
    bounds = backtest_bounds(history)
    bad_run, bad_out = backtest(case, bounds)
    kept = declarations.drop(index=expected["row"].to_numpy() - 1)
    without = write_case(workdir, "malformed-0.5pct-removed", kept, history.seizures)
    kept_run, kept_out = backtest(without, bounds)
    check_exit(result, "backtest", bad_run, 0)
    check_exit(result, "backtest (rows removed)", kept_run, 0)
    same = bad_run.exit_code == kept_run.exit_code == 0 and same_scores(bad_out, kept_out)
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
    clean = clean_case(workdir, history)
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
