"""One contract at both edges: what the service's request schemas accept, `make validate` accepts.

Each case is one row with one defect, checked twice: by the training validator (the
rejects line names a column and a reason) and by the request schema (the error names the
same field and carries the same reason).
"""

from __future__ import annotations

import datetime as dt
import typing

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from features.contract import (
    DECLARATION_COLUMNS,
    EXAMPLE_DECLARATION,
    EXAMPLE_INSPECTION,
    EXAMPLE_SEIZURE,
    INSPECTION_COLUMNS,
    SEIZURE_COLUMNS,
    SEIZURE_LINK_COLUMNS,
)
from features.validation import reason_stem, top_reasons, validate_table
from serving.schemas import Declaration, Inspection, Seizure

DECLARATION = dict(EXAMPLE_DECLARATION)
SEIZURE = dict(EXAMPLE_SEIZURE)
INSPECTION = dict(EXAMPLE_INSPECTION)

TABLES = {
    "declarations": (DECLARATION_COLUMNS, Declaration, DECLARATION),
    "seizures": (SEIZURE_COLUMNS, Seizure, SEIZURE),
    "inspections": (INSPECTION_COLUMNS, Inspection, INSPECTION),
}
NEXT_YEAR = f"{dt.date.today().year + 1}-01-15T00:00:00Z"
LINK = "|".join(SEIZURE_LINK_COLUMNS)

#: (table, change to the valid row, column the rejects line names, words both reasons share)
CASES = [
    ("declarations", {"declared_at": "1985-06-01"}, "declared_at", "before 1990-01-01"),
    ("declarations", {"declared_at": NEXT_YEAR}, "declared_at", "in the future"),
    ("seizures", {"seized_at": "1970-01-01T00:00:00Z"}, "seized_at", "before 1990-01-01"),
    ("seizures", {"seized_at": NEXT_YEAR}, "seized_at", "in the future"),
    ("inspections", {"inspected_at": NEXT_YEAR}, "inspected_at", "in the future"),
    ("inspections", {"inspected_at": "1989-12-31T00:00:00Z"}, "inspected_at", "before 1990-01-01"),
    ("seizures", {"declaration_id": None}, LINK, "a seizure must name at least one"),
    ("seizures", {"substance": "tramadol\x00"}, "substance", "NUL character"),
    ("seizures", {"agency": "NCB\x00"}, "agency", "NUL character"),
    ("declarations", {"goods_description": "tablets\x00"}, "goods_description", "NUL character"),
    ("seizures", {"agency": "A" * 201}, "agency", "longer than 200 characters"),
    ("seizures", {"seizure_id": "S" * 65}, "seizure_id", "longer than 64 characters"),
    ("declarations", {"exporter_id": "IEC\t1"}, "exporter_id", "control characters"),
]


def _raw(row: dict) -> pd.DataFrame:
    """One row as `read_table` gives it: every cell text, missing cells empty, index 1."""
    text = {k: ("" if v is None else str(v)) for k, v in row.items()}
    return pd.DataFrame([text], index=pd.RangeIndex(1, 2, name="row"))


def _schema_errors(model, row: dict) -> list[dict]:
    try:
        model.model_validate({k: v for k, v in row.items() if v is not None})
    except ValidationError as exc:
        return exc.errors()
    return []


@pytest.mark.parametrize(("table", "change", "column", "words"), CASES)
def test_a_row_validate_rejects_is_refused_by_the_schema_for_the_same_field_and_reason(
    table: str, change: dict, column: str, words: str
) -> None:
    columns, model, valid = TABLES[table]
    row = {**valid, **change}

    _, rejects, _ = validate_table(_raw(row), columns, f"{table}.csv")
    errors = _schema_errors(model, row)

    assert list(rejects["column"]) == [column], rejects.to_dict("records")
    assert words in rejects["reason"].iloc[0]
    assert len(errors) == 1, errors
    field = ".".join(str(p) for p in errors[0]["loc"]) or LINK
    assert field == column
    assert words in errors[0]["msg"]
    # the schema's message carries the validator's reason, word for word (up to the quoted value)
    assert reason_stem(rejects["reason"].iloc[0]) in errors[0]["msg"]


@pytest.mark.parametrize("table", list(TABLES))
def test_the_valid_rows_pass_both_edges(table: str) -> None:
    columns, model, valid = TABLES[table]
    _, rejects, _ = validate_table(_raw(valid), columns, f"{table}.csv")
    assert rejects.empty, rejects.to_dict("records")
    assert _schema_errors(model, valid) == []


def test_text_with_line_breaks_quotes_commas_and_rtl_marks_passes_both_edges() -> None:
    text = 'line one\r\nline two\rbare CR, "quoted", comma\u200f\u202eRTL\nend'
    row = {**SEIZURE, "substance": text, "agency": text}
    _, rejects, _ = validate_table(_raw(row), SEIZURE_COLUMNS, "seizures.csv")
    assert rejects.empty
    assert _schema_errors(Seizure, row) == []


@pytest.mark.parametrize(
    ("model", "valid", "field"),
    [
        (Declaration, DECLARATION, "declared_at"),
        (Seizure, SEIZURE, "seized_at"),
        (Inspection, INSPECTION, "inspected_at"),
    ],
)
@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_timestamps_outside_years_1_to_9999_in_utc_are_field_errors(model, valid, field, stamp) -> None:
    errors = _schema_errors(model, {**valid, field: stamp})
    assert [e["loc"] for e in errors] == [(field,)]
    assert "outside years 1-9999" in errors[0]["msg"]


@pytest.mark.parametrize(("table", "model"), [("declarations", Declaration), ("seizures", Seizure)])
def test_schemas_are_the_contract_columns(table: str, model) -> None:
    columns = TABLES[table][0]
    assert list(model.model_fields) == [c.name for c in columns]
    for column in columns:
        field = model.model_fields[column.name]
        assert field.is_required() == (column.required and not column.nullable), column.name
        if column.enum:
            annotation = field.annotation
            if typing.get_origin(annotation) is not typing.Literal:  # Optional[Literal[...]]
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            assert set(typing.get_args(annotation)) == set(column.enum), column.name


def test_top_reasons_counts_rows_per_column_and_reason() -> None:
    rejects = pd.DataFrame(
        {
            "file": "s.csv",
            "row": [1, 2, 3, 4, 5, 6, 7, 7],
            "column": ["seized_at"] * 3 + [LINK] * 2 + ["country", "agency", "agency"],
            "reason": ["before 1990-01-01 (a placeholder or a typo, not a real date): '1970-01-01'"] * 3
            + ["none of ...; a seizure must name at least one"] * 2
            + ["not an ISO 3166-1 alpha-2 country code: 'XX'", "too long: 'a'", "too long: 'b'"],
        }
    )
    assert top_reasons(rejects) == [
        ("seized_at", "before 1990-01-01", 3),
        (LINK, "none of ...; a seizure must name at least one", 2),
        ("agency", "too long", 1),
    ]


def test_validate_cli_prints_the_three_most_frequent_reasons(tmp_path) -> None:
    from training.cli import app

    declarations = pd.DataFrame([{k: str(v) for k, v in DECLARATION.items()}])
    seizures = pd.DataFrame(
        [{**SEIZURE, "seizure_id": f"SZ{n}", "seized_at": "1970-01-01"} for n in range(5)]
        + [{**SEIZURE, "seizure_id": f"SY{n}", "declaration_id": "", "country": "XX"} for n in range(3)]
        + [{**SEIZURE, "seizure_id": f"SA{n}", "substance": ""} for n in range(2)]
        + [{**SEIZURE, "seizure_id": "SQ", "quantity_kg": "-1"}]
    )
    declarations.to_csv(tmp_path / "declarations.csv", index=False)
    seizures.to_csv(tmp_path / "seizures.csv", index=False)

    result = CliRunner().invoke(
        app,
        [
            "validate",
            "--declarations",
            str(tmp_path / "declarations.csv"),
            "--seizures",
            str(tmp_path / "seizures.csv"),
            "--rejects-dir",
            str(tmp_path / "rejects"),
        ],
    )
    out = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "5 rows seized_at: before 1990-01-01" in out
    assert f"3 rows {LINK}: none of" in out
    assert "3 rows country: not an ISO 3166-1 alpha-2 country code" in out
    assert "quantity_kg" not in out.split("most frequent reasons", 1)[1].split("error:", 1)[0]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_published_schema_shows_a_row_both_edges_accept(table) -> None:
    columns, model, example = TABLES[table]
    published = model.model_json_schema()["example"]  # OpenAPI 3.0's keyword
    assert published == example
    model.model_validate(published)
    valid, rejects, _ = validate_table(_raw(published), columns, f"{table}.csv")
    assert rejects.empty and len(valid) == 1
