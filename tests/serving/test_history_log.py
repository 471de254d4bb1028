"""The history log: any split of the same appends, in any arrival order, indexes as one build.

A `HistoryStore` on a SQLite file receives the same rows (declarations, seizures naming
declarations that may arrive later, seizures naming only an exporter, inspections) in
transactions of random sizes and random order, with repeats; its features must equal
`History.build` of the base plus all rows, exactly, and so must a second store that
opens the same log afterwards (another worker, a restart) and the history rebuilt at the
final sequence number (audit replay).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.definitions import compute_features
from features.history import History
from features.reference import load_reference
from features.validation import load_contract_tables
from serving.demo import split_history
from serving.frames import declarations_frame, seizures_frame
from serving.history_store import HistoryStore, UnknownDeclarationError, make_engine

NEW = 24


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, small_history: Path):
    folder = tmp_path_factory.mktemp("log")
    declarations, seizures, records = split_history(
        small_history / "declarations.parquet", small_history / "seizures.parquet", NEW, folder
    )
    tables = load_contract_tables(declarations, seizures, None, rejects_dir=None)
    for record in records:
        record["declared_at"] = pd.Timestamp(record["declared_at"]).to_pydatetime()
    return tables.declarations, tables.seizures, records


def _seizures(records: list[dict]) -> list[dict]:
    """Seizures naming declarations (some dated before them) and seizures naming only an exporter."""
    out = []
    for i, record in enumerate(records[::3]):
        out.append(
            {
                "seizure_id": f"LOG-SZ-D{i}",
                "seized_at": record["declared_at"] + pd.Timedelta(hours=6 - 12 * (i % 2)),
                "declaration_id": record["declaration_id"],
                "country": "NG",
                "substance": "tramadol",
            }
        )
    for i, record in enumerate(records[1::5]):
        out.append(
            {
                "seizure_id": f"LOG-SZ-E{i}",
                "seized_at": record["declared_at"] - pd.Timedelta(days=3),
                "exporter_id": record["exporter_id"],
                "country": "IN",
                "substance": "codeine",
            }
        )
    return out


def _queries(records: list[dict]) -> pd.DataFrame:
    """The new declarations again, each re-filed a day later (so every appended row can count)."""
    return declarations_frame(
        [
            {
                **r,
                "declaration_id": f"Q-{r['declaration_id']}",
                "declared_at": r["declared_at"] + pd.Timedelta(days=1),
            }
            for r in records
        ]
    )


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_split_and_order_of_appends_equals_one_build(base, data) -> None:
    base_declarations, base_seizures, records = base
    reference = load_reference()
    seizures = _seizures(records)
    rows = [("declaration", r) for r in records] + [("seizure", s) for s in seizures]
    order = data.draw(st.permutations(range(len(rows))), label="arrival order")
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(rows) - 1), max_size=6), label="cuts")))
    repeats = data.draw(st.lists(st.sampled_from(range(len(rows))), max_size=4), label="repeated rows")

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/history.db"
        store = HistoryStore(make_engine(url), reference, base_declarations, base_seizures, compact_every=3)
        arrived = [rows[i] for i in order]
        for start, end in zip([0, *cuts], [*cuts, len(arrived)], strict=True):
            part = arrived[start:end] + [rows[i] for i in repeats]
            result = store.append(
                declarations=[r for kind, r in part if kind == "declaration"],
                seizures=[r for kind, r in part if kind == "seizure"],
            )
            assert result.sequence is None or result.sequence == store.sequence
        assert store.log_rows() == len(rows)

        expected_history = History.build(
            pd.concat([base_declarations, declarations_frame(records)], ignore_index=True),
            pd.concat([base_seizures, seizures_frame(seizures)], ignore_index=True),
            reference,
        )
        queries = _queries(records)
        expected = compute_features(queries, expected_history, reference)
        live = compute_features(queries, store.current().history, reference)
        pd.testing.assert_frame_equal(live, expected, check_exact=True)

        reopened = HistoryStore(make_engine(url), reference, base_declarations, base_seizures)
        pd.testing.assert_frame_equal(
            compute_features(queries, reopened.current().history, reference), expected, check_exact=True
        )
        replayed = reopened.history_at(store.sequence)
        pd.testing.assert_frame_equal(
            compute_features(queries, replayed, reference), expected, check_exact=True
        )
        store.close()
        reopened.close()


def test_outcomes_are_all_or_nothing_and_inspections_need_a_known_declaration(base, tmp_path: Path) -> None:
    base_declarations, base_seizures, records = base
    store = HistoryStore(
        make_engine(f"sqlite:///{tmp_path}/history.db"), load_reference(), base_declarations, base_seizures
    )
    seizure = _seizures(records)[0]
    known = base_declarations["declaration_id"].iloc[-1]
    inspections = [
        {"declaration_id": known, "inspected_at": records[0]["declared_at"], "result": "SEIZURE"},
        {"declaration_id": "NEVER-FILED", "inspected_at": records[0]["declared_at"], "result": "CLEAN"},
    ]
    with pytest.raises(UnknownDeclarationError, match="NEVER-FILED"):
        store.record_outcomes(inspections, [seizure])
    assert store.log_rows() == 0 and store.head() == 0  # nothing of the request was stored

    result = store.record_outcomes(inspections[:1], [seizure])
    # the SEIZURE inspection adds a seizure of its own: two seizures stored, one inspection
    assert (result.inspections_accepted, result.seizures_accepted, result.sequence) == (1, 2, 1)
    again = store.record_outcomes(inspections[:1], [seizure])
    assert (again.inspections_accepted, again.seizures_accepted, again.sequence) == (0, 0, None)
    assert again.duplicates == [seizure["seizure_id"], known]
    store.close()


def test_a_worker_with_other_base_files_refuses_the_log(base, tmp_path: Path) -> None:
    from serving.history_store import BaseHistoryMismatchError

    base_declarations, base_seizures, _ = base
    url = f"sqlite:///{tmp_path}/history.db"
    HistoryStore(make_engine(url), load_reference(), base_declarations, base_seizures).close()
    HistoryStore(
        make_engine(url), load_reference(), base_declarations, base_seizures
    ).close()  # same base: fine
    with pytest.raises(BaseHistoryMismatchError, match="same base files"):
        HistoryStore(make_engine(url), load_reference(), base_declarations.iloc[:-1], base_seizures)


def test_a_store_of_the_earlier_release_is_imported_once(base, tmp_path: Path) -> None:
    """Tables of the release before the log (one per kind) become one append; nothing is lost or doubled."""
    import json

    import sqlalchemy as sa

    base_declarations, base_seizures, records = base
    url = f"sqlite:///{tmp_path}/history.db"
    engine = make_engine(url)
    seizure = _seizures(records)[0]
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE history_declarations (declaration_id VARCHAR(64) PRIMARY KEY, declared_at DATETIME, "
            "payload TEXT, received_at DATETIME)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE history_seizures (seizure_id VARCHAR(64) PRIMARY KEY, seized_at DATETIME, "
            "payload TEXT, received_at DATETIME)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE outcome_inspections (id INTEGER PRIMARY KEY, declaration_id VARCHAR(64), "
            "inspected_at DATETIME, result VARCHAR(16), received_at DATETIME)"
        )
        for record in records:
            connection.execute(
                sa.text("INSERT INTO history_declarations VALUES (:i, :t, :p, :t)"),
                {
                    "i": record["declaration_id"],
                    "t": record["declared_at"],
                    "p": json.dumps(record, default=str),
                },
            )
        connection.execute(
            sa.text("INSERT INTO history_seizures VALUES (:i, :t, :p, :t)"),
            {"i": seizure["seizure_id"], "t": seizure["seized_at"], "p": json.dumps(seizure, default=str)},
        )
        connection.execute(
            sa.text("INSERT INTO outcome_inspections VALUES (1, :d, :t, 'CLEAN', :t)"),
            {"d": records[0]["declaration_id"], "t": records[0]["declared_at"]},
        )
    engine.dispose()
    reference = load_reference()
    store = HistoryStore(make_engine(url), reference, base_declarations, base_seizures)
    assert store.log_rows(["declaration", "seizure", "inspection"]) == len(records) + 2
    assert store.sequence == 1
    expected_history = History.build(
        pd.concat([base_declarations, declarations_frame(records)], ignore_index=True),
        pd.concat([base_seizures, seizures_frame([seizure])], ignore_index=True),
        reference,
    )
    queries = _queries(records)
    expected = compute_features(queries, expected_history, reference)
    pd.testing.assert_frame_equal(
        compute_features(queries, store.history, reference), expected, check_exact=True
    )
    store.close()
    reopened = HistoryStore(make_engine(url), reference, base_declarations, base_seizures)
    assert reopened.sequence == 1 and reopened.log_rows(["declaration"]) == len(records)
    reopened.close()
