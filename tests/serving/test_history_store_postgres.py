"""The history store on PostgreSQL: appends are durable, duplicates skipped, features unchanged by a restart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from features.definitions import compute_online_features
from features.reference import load_reference
from serving.demo import split_history
from serving.frames import declarations_frame
from serving.history_store import HistoryStore

pytestmark = [pytest.mark.postgres]
NEW = 200


def test_appends_survive_reopening_and_features_do_not_change(
    postgres_database: str, small_history: Path, tmp_path: Path
) -> None:
    reference = load_reference()
    base_declarations, base_seizures, fresh = split_history(
        small_history / "declarations.parquet", small_history / "seizures.parquet", NEW, tmp_path
    )
    appended, queries = fresh[: NEW // 2], fresh[NEW // 2 :]
    seizures = [
        {
            "seizure_id": f"PG-SZ-{i}",
            "seized_at": record["declared_at"],
            "exporter_id": record["exporter_id"],
            "country": "IN",
            "substance": "tramadol",
            "agency": "NCB",
        }
        for i, record in enumerate(appended[:10])
    ] + [  # one naming only a declaration: attributed through the appended declaration's entities
        {
            "seizure_id": "PG-SZ-LINKED",
            "seized_at": appended[20]["declared_at"],
            "declaration_id": appended[20]["declaration_id"],
            "country": "NG",
            "substance": "codeine",
        }
    ]
    for record in seizures:
        record["seized_at"] = pd.Timestamp(record["seized_at"]).to_pydatetime()
    for record in [*appended, *queries]:
        record["declared_at"] = pd.Timestamp(record["declared_at"]).to_pydatetime()
    query_frame = declarations_frame(queries)

    store = HistoryStore.open(
        postgres_database, base_declarations, base_seizures, reference, compact_every=1000
    )
    assert store._engine.dialect.name == "postgresql"
    base_count = store.declaration_count
    first = store.add_declarations(appended[:60])
    second = store.add_declarations(appended[50:])  # ten already known
    seized = store.add_seizures(seizures)
    assert (first.accepted, second.accepted, seized.accepted) == (60, NEW // 2 - 60, len(seizures))
    assert second.duplicates == [r["declaration_id"] for r in appended[50:60]]
    assert store.declaration_count == base_count + NEW // 2
    before = compute_online_features(query_frame, store.history, reference)
    store._engine.dispose()

    reopened = HistoryStore.open(postgres_database, base_declarations, base_seizures, reference)
    assert reopened.declaration_count == base_count + NEW // 2
    again = reopened.add_declarations(appended[:5])
    again_seized = reopened.add_seizures(seizures[:3])
    assert (again.accepted, again_seized.accepted) == (0, 0)
    assert again.duplicates == [r["declaration_id"] for r in appended[:5]]
    assert again_seized.duplicates == [s["seizure_id"] for s in seizures[:3]]
    after = compute_online_features(query_frame, reopened.history, reference)
    # Before: base index plus appended segments; after: one index rebuilt from the database.
    # Features are a pure function of the rows: exactly equal.
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    assert (after["exporter_prior_seizures"] > 0).any()  # the appended seizures are part of what was compared
    empty = compute_online_features(
        query_frame,
        HistoryStore.open(
            f"sqlite:///{tmp_path}/empty.db", base_declarations, base_seizures, reference
        ).history,
        reference,
    )
    assert not empty.equals(after)  # the appends changed the features being compared
    reopened._engine.dispose()

    engine = sa.create_engine(postgres_database)
    with engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT count(*) FROM history_log WHERE kind = 'declaration'")
        ).scalar_one()
        stored_seizures = connection.execute(
            sa.text("SELECT count(*) FROM history_log WHERE kind = 'seizure'")
        ).scalar_one()
    engine.dispose()
    assert (stored, stored_seizures) == (NEW // 2, len(seizures))
