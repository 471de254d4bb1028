"""Labels under the label window, with and without an inspections table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.labels import declaration_labels, inspected_before


def _frames():
    declarations = pd.DataFrame(
        {
            "declaration_id": pd.Series(["A", "B", "C", "D"], dtype="str"),
            "declared_at": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01"]).astype(
                "datetime64[us]"
            ),
        }
    )
    seizures = pd.DataFrame(
        {
            "declaration_id": pd.Series(["A", "B", None], dtype="str"),
            "seized_at": pd.to_datetime(["2024-02-01", "2024-12-01", "2024-02-01"]).astype("datetime64[us]"),
            "quantity_kg": [5.0, 7.0, 1.0],
        }
    )
    inspections = pd.DataFrame(
        {
            "declaration_id": pd.Series(["C", "D"], dtype="str"),
            "inspected_at": pd.to_datetime(["2024-01-03", "2024-01-03"]).astype("datetime64[us]"),
            "result": pd.Series(["SEIZURE", "CLEAN"], dtype="str"),
        }
    )
    return declarations, seizures, inspections


def test_label_window_and_seized_quantity() -> None:
    declarations, seizures, _ = _frames()
    labels = declaration_labels(declarations, seizures, 180)
    assert labels.diverted.tolist() == [True, False, False, False]  # B seized after 335 days: outside
    assert labels.seized_kg.tolist() == [5.0, 0.0, 0.0, 0.0]


def test_known_before_hides_later_seizures() -> None:
    declarations, seizures, _ = _frames()
    labels = declaration_labels(declarations, seizures, 180, known_before=pd.Timestamp("2024-01-15"))
    assert not labels.diverted.any()


def test_inspection_seizures_are_positives_and_clean_inspections_are_known() -> None:
    declarations, seizures, inspections = _frames()
    labels = declaration_labels(declarations, seizures, 180, inspections=inspections)
    assert labels.diverted.tolist() == [True, False, True, False]
    assert inspected_before(declarations, inspections).tolist() == [False, False, True, True]
    assert not inspected_before(declarations, inspections, pd.Timestamp("2024-01-02")).any()
    assert np.isnan(labels.seized_kg).sum() == 0


def test_seizure_on_the_filing_day_counts_even_before_the_filing_time() -> None:
    """A seizure recorded by date only (midnight) on the filing day of a timestamped declaration."""
    declarations = pd.DataFrame(
        {
            "declaration_id": pd.Series(["A", "B"], dtype="str"),
            "declared_at": pd.to_datetime(["2024-01-01T10:30:00", "2024-01-01T10:30:00"]).astype(
                "datetime64[us]"
            ),
        }
    )
    seizures = pd.DataFrame(
        {
            "declaration_id": pd.Series(["A", "B"], dtype="str"),
            "seized_at": pd.to_datetime(["2024-01-01T00:00:00", "2024-06-29T10:30:01"]).astype(
                "datetime64[us]"
            ),
            "quantity_kg": [2.0, 3.0],
        }
    )
    labels = declaration_labels(declarations, seizures, 180)
    # A: same day, earlier hour -> inside; B: 180 days and one second after filing -> outside
    assert labels.diverted.tolist() == [True, False]
