"""Tests for features.validation: the contract loader, its rejects and its errors.

Bad files are generated into tmp_path by the tests (no committed binaries). Row numbers
in rejects are data rows counted from 1 (the first row after the CSV header).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import DECLARATION_COLUMNS, SEIZURE_COLUMNS, column_names
from features.validation import (
    ContractError,
    ContractWarning,
    load_contract_tables,
    read_table,
    validate_table,
)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

BAD_ROW = 3  # the data row (1-based) that corpus cases break


# --------------------------------------------------------------------------- fixtures


def valid_declarations(rows: int = 20) -> pd.DataFrame:
    """A valid declarations table as text, the way it sits in a CSV."""
    i = np.arange(rows)
    return pd.DataFrame(
        {
            "declaration_id": [f"SB{n:07d}" for n in i],
            "declared_at": [
                f"2024-01-{1 + n % 28:02d}" if n % 2 else f"2024-02-{1 + n % 28:02d}T10:30:00" for n in i
            ],
            "exporter_id": [f"IEC{n % 5:04d}" for n in i],
            "consignee_id": [f"CONS{n % 7:03d}" for n in i],
            "consignee_country": np.where(i % 3 == 0, "AE", "NG"),
            "destination_country": np.where(i % 4 == 0, "GB", "NG"),
            "port_of_loading": np.where(i % 2 == 0, "INNSA", "INBOM"),
            "transport_mode": np.where(i % 3 == 0, "AIR", "SEA"),
            "hs_code": np.where(i % 2 == 0, "30049099", "030490"),  # leading zero must survive
            "goods_description": [
                "tramadol tablets, 100 mg\nstrips of 10" if n % 5 == 0 else f"paracetamol {n}" for n in i
            ],
            "quantity": [f"{10 + n}.5" for n in i],
            "quantity_unit": "KGM",
            "gross_weight_kg": [str(12 + n) for n in i],
            "declared_value_usd": [str(1000 * (n + 1)) for n in i],
            "customs_broker_id": np.where(i % 2 == 0, "CHA01", ""),
            "payment_terms": np.where(i % 2 == 0, "LC", ""),
            "export_authorization_id": np.where(i % 4 == 0, "NOC-1", ""),
            "transshipment_country": np.where(i % 6 == 0, "SG", ""),
        }
    )


def valid_seizures(rows: int = 5) -> pd.DataFrame:
    """A valid seizures table as text; every row names at least one link column."""
    i = np.arange(rows)
    return pd.DataFrame(
        {
            "seizure_id": [f"SZ{n:04d}" for n in i],
            "seized_at": [f"2024-03-{1 + n:02d}T08:00:00+05:30" for n in i],
            "declaration_id": [f"SB{n:07d}" if n % 2 == 0 else "" for n in i],
            "exporter_id": [f"IEC{n:04d}" if n % 2 else "" for n in i],
            "consignee_id": "",
            "country": "NG",
            "substance": "tramadol",
            "quantity_kg": [str(5 * n) for n in i],
            "agency": "NCB",
        }
    )


def write_csv(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    frame.to_csv(path, index=False, lineterminator=kwargs.pop("lineterminator", "\n"), **kwargs)
    return path


def load(tmp_path: Path, declarations: Path, seizures: Path | None = None, **kwargs):
    seizures = seizures or write_csv(valid_seizures(), tmp_path / "seizures.csv")
    kwargs.setdefault("rejects_dir", tmp_path / "rejects")
    return load_contract_tables(declarations, seizures, **kwargs)


def rejects_of(tables, table: str = "declarations") -> pd.DataFrame:
    return pd.read_csv(tables.report[table].rejects_path, dtype={"row": "int64"})


# --------------------------------------------------------------------------- the bad-file corpus


def with_value(column: str, value: str) -> Callable[[Path], Path]:
    """Declarations with one cell of BAD_ROW replaced."""

    def build(tmp_path: Path) -> Path:
        frame = valid_declarations()
        frame.loc[BAD_ROW - 1, column] = value
        return write_csv(frame, tmp_path / "declarations.csv")

    return build


def without_column(column: str) -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        return write_csv(valid_declarations().drop(columns=column), tmp_path / "declarations.csv")

    return build


def raw_bytes(content: bytes, name: str = "declarations.csv") -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return build


def header_only(tmp_path: Path) -> Path:
    return write_csv(valid_declarations().iloc[:0], tmp_path / "declarations.csv")


def non_utf8(tmp_path: Path) -> Path:
    path = write_csv(valid_declarations(), tmp_path / "declarations.csv")
    content = path.read_bytes().replace(b"paracetamol 2", b"parac\xe9tamol 2")  # latin-1 é
    path.write_bytes(content)
    return path


def parquet_wrong_types(tmp_path: Path) -> Path:
    frame = valid_declarations()
    frame["quantity"] = "abc"  # string where a number belongs
    frame["declared_at"] = np.arange(len(frame), dtype="int64") + 1_700_000_000  # epoch int, not ISO 8601
    path = tmp_path / "declarations.parquet"
    frame.to_parquet(path, index=False)
    return path


def duplicated_id(tmp_path: Path) -> Path:
    frame = valid_declarations()
    frame.loc[BAD_ROW - 1, "declaration_id"] = frame.loc[0, "declaration_id"]
    return write_csv(frame, tmp_path / "declarations.csv")


def missing_file(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.csv"


# (case id, builder, expected): expected is ("error", message part) or
# ("rejects", [(row, column, reason part), ...]) -- exactly those lines, in order.
CORPUS: list[tuple[str, Callable[[Path], Path], tuple]] = [
    ("missing-required-column", without_column("quantity"), ("error", "required column(s) quantity missing")),
    (
        "wrong-type",
        with_value("quantity", "ten"),
        ("rejects", [(BAD_ROW, "quantity", "not a number: 'ten'")]),
    ),
    (
        "infinite-number",
        with_value("gross_weight_kg", "inf"),
        ("rejects", [(BAD_ROW, "gross_weight_kg", "finite")]),
    ),
    (
        "unparseable-date",
        with_value("declared_at", "05/01/2024"),
        ("rejects", [(BAD_ROW, "declared_at", "not an ISO 8601 date or timestamp: '05/01/2024'")]),
    ),
    (
        "impossible-date",
        with_value("declared_at", "2024-02-30"),
        ("rejects", [(BAD_ROW, "declared_at", "ISO 8601")]),
    ),
    ("negative-quantity", with_value("quantity", "-1"), ("rejects", [(BAD_ROW, "quantity", "must be > 0")])),
    ("zero-quantity", with_value("quantity", "0"), ("rejects", [(BAD_ROW, "quantity", "must be > 0")])),
    (
        "negative-value",
        with_value("declared_value_usd", "-5"),
        ("rejects", [(BAD_ROW, "declared_value_usd", ">= 0")]),
    ),
    (
        "missing-required-value",
        with_value("exporter_id", ""),
        ("rejects", [(BAD_ROW, "exporter_id", "missing value")]),
    ),
    (
        "duplicate-id",
        duplicated_id,
        (
            "rejects",
            [
                (
                    row,
                    "declaration_id",
                    "duplicate id: 'SB0000000' (rows 1 and 3 have this id; they differ in ",
                )
                for row in (1, BAD_ROW)
            ],
        ),
    ),
    (
        "future-date",
        with_value("declared_at", "2199-01-01T10:00:00"),
        ("rejects", [(BAD_ROW, "declared_at", "in the future (after ")]),
    ),
    (
        "placeholder-date",
        with_value("declared_at", "1900-01-01"),
        (
            "rejects",
            [(BAD_ROW, "declared_at", "before 1990-01-01 (a placeholder or a typo, not a real date)")],
        ),
    ),
    (
        "lower-case-country",
        with_value("consignee_country", "ae"),
        ("rejects", [(BAD_ROW, "consignee_country", "ISO 3166-1 alpha-2")]),
    ),
    (
        "unknown-country",
        with_value("destination_country", "XX"),
        ("rejects", [(BAD_ROW, "destination_country", "ISO 3166-1 alpha-2")]),
    ),
    (
        "unknown-transshipment-country",
        with_value("transshipment_country", "ZZ"),
        ("rejects", [(BAD_ROW, "transshipment_country", "ISO 3166-1 alpha-2")]),
    ),
    (
        "locode-bad-country",
        with_value("port_of_loading", "XXNSA"),
        ("rejects", [(BAD_ROW, "port_of_loading", "UN/LOCODE")]),
    ),
    (
        "locode-lower-case",
        with_value("port_of_loading", "innsa"),
        ("rejects", [(BAD_ROW, "port_of_loading", "UN/LOCODE")]),
    ),
    (
        "locode-too-long",
        with_value("port_of_loading", "INNSA1"),
        ("rejects", [(BAD_ROW, "port_of_loading", "UN/LOCODE")]),
    ),
    (
        "hs-with-letters",
        with_value("hs_code", "3004A0"),
        ("rejects", [(BAD_ROW, "hs_code", "6 or 8 digits")]),
    ),
    ("hs-5-digits", with_value("hs_code", "30049"), ("rejects", [(BAD_ROW, "hs_code", "6 or 8 digits")])),
    ("hs-7-digits", with_value("hs_code", "3004909"), ("rejects", [(BAD_ROW, "hs_code", "6 or 8 digits")])),
    (
        "unknown-transport-mode",
        with_value("transport_mode", "BOAT"),
        ("rejects", [(BAD_ROW, "transport_mode", "not one of SEA, AIR, COURIER, POST, ROAD, RAIL: 'BOAT'")]),
    ),
    (
        "unknown-unit",
        with_value("quantity_unit", "kg"),
        ("rejects", [(BAD_ROW, "quantity_unit", "not one of")]),
    ),
    (
        "unknown-payment-terms",
        with_value("payment_terms", "CASH"),
        ("rejects", [(BAD_ROW, "payment_terms", "not one of")]),
    ),
    ("empty-file", raw_bytes(b""), ("error", "file is empty")),
    ("blank-line-file", raw_bytes(b"\n\n"), ("error", "file is empty")),
    ("header-only", header_only, ("error", "no rows")),
    ("non-utf8", non_utf8, ("error", "not valid UTF-8 at byte offset")),
    (
        "parquet-wrong-types",
        parquet_wrong_types,
        (
            "rejects",
            [
                (row, col, reason)
                for row in range(1, 21)
                for col, reason in [
                    ("declared_at", "not an ISO 8601 date or timestamp (stored as int64)"),
                    ("quantity", "not a number: 'abc'"),
                ]
            ],
        ),
    ),
    (
        "corrupt-parquet",
        raw_bytes(b"PAR1 this is not parquet", "declarations.parquet"),
        ("error", "not a readable Parquet"),
    ),
    (
        "unknown-extension",
        raw_bytes(b"a,b\n1,2\n", "declarations.xlsx"),
        ("error", "unsupported file extension"),
    ),
    ("missing-file", missing_file, ("error", "file not found")),
    ("too-many-fields", raw_bytes(b"a,b\n1,2\n1,2,3,4\n"), ("error", "not a readable CSV")),
]


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_file_corpus_ends_in_a_clear_message(tmp_path: Path, build, expected) -> None:
    declarations = build(tmp_path)
    kind, detail = expected
    if kind == "error":
        with pytest.raises(ContractError) as caught:
            load(tmp_path, declarations, max_reject_share=1.0)
        message = str(caught.value)
        assert detail in message
        if "file not found" not in message:
            assert declarations.name in message  # says where
        return
    tables = load(tmp_path, declarations, max_reject_share=1.0)
    rejects = rejects_of(tables)
    assert list(rejects.columns) == ["file", "row", "column", "reason"]
    assert len(rejects) == len(detail), rejects.to_string()
    for (row, column, reason), line in zip(detail, rejects.itertuples(index=False), strict=True):
        assert (line.row, line.column) == (row, column)
        assert reason in line.reason
        assert line.file == str(declarations)
    bad_rows = {row for row, _, _ in detail}
    report = tables.report["declarations"]
    assert report.rows_rejected == len(bad_rows)
    assert report.rows_valid == len(tables.declarations) == report.rows_read - len(bad_rows)


def test_one_megabyte_description_is_read(tmp_path: Path) -> None:
    frame = valid_declarations()
    frame.loc[BAD_ROW - 1, "goods_description"] = 'x, "quoted"\n' + "y" * 1_000_000
    tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"))
    assert tables.report["declarations"].rows_rejected == 0
    assert (
        tables.declarations.loc[BAD_ROW - 1, "goods_description"]
        == frame.loc[BAD_ROW - 1, "goods_description"]
    )


def test_non_utf8_message_names_byte_offset_and_line(tmp_path: Path) -> None:
    path = non_utf8(tmp_path)
    content = path.read_bytes()
    offset = content.index(b"\xe9")
    line = content[:offset].count(b"\n") + 1
    with pytest.raises(ContractError, match=rf"byte offset {offset} \(line {line}\)"):
        read_table(path)


def test_non_utf8_beyond_the_first_megabyte_is_located(tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    head = b"a,bc\n" + b"1,\xc3\xa9" * 300_000 + b"\n"  # a 2-byte character straddles the 1 MiB chunk edge
    path.write_bytes(head + b"2,\xff\n")
    with pytest.raises(ContractError, match=rf"byte offset {len(head) + 2} \(line 3\)"):
        read_table(path)


def test_seizure_without_any_link_column_is_rejected(tmp_path: Path) -> None:
    seizures = valid_seizures()
    seizures.loc[1, ["declaration_id", "exporter_id", "consignee_id"]] = ""
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        write_csv(seizures, tmp_path / "seizures.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "seizures")
    assert rejects[["row", "column"]].values.tolist() == [[2, "declaration_id|exporter_id|consignee_id"]]
    assert "must name at least one" in rejects.loc[0, "reason"]
    assert len(tables.seizures) == len(seizures) - 1


def test_seizure_duplicate_id_rejects_every_copy(tmp_path: Path) -> None:
    seizures = valid_seizures()
    seizures.loc[[1, 3], "seizure_id"] = "SZDUP"
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        write_csv(seizures, tmp_path / "seizures.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "seizures")
    assert rejects["row"].tolist() == [2, 4]
    assert rejects["reason"].str.contains("duplicate id").all()


def test_row_with_two_bad_fields_gives_two_lines(tmp_path: Path) -> None:
    frame = valid_declarations()
    frame.loc[BAD_ROW - 1, ["hs_code", "quantity"]] = ["12", "-3"]
    tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"), max_reject_share=1.0)
    rejects = rejects_of(tables)
    assert rejects[["row", "column"]].values.tolist() == [[BAD_ROW, "hs_code"], [BAD_ROW, "quantity"]]
    assert rejects["reason"].tolist() == [
        "not an HS code of exactly 6 or 8 digits: '12'",
        "must be > 0: '-3'",  # the value as written in the file
    ]
    assert tables.report["declarations"].rows_rejected == 1


# --------------------------------------------------------------------------- valid but unusual files


def _plain(frame: pd.DataFrame, path: Path) -> Path:
    return write_csv(frame, path)


def _bom(frame: pd.DataFrame, path: Path) -> Path:
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\n").encode())
    return path


def _crlf(frame: pd.DataFrame, path: Path) -> Path:
    return write_csv(frame, path, lineterminator="\r\n")


def _reordered(frame: pd.DataFrame, path: Path) -> Path:
    return write_csv(frame[list(reversed(frame.columns))], path)


def _all_quoted(frame: pd.DataFrame, path: Path) -> Path:
    return write_csv(frame, path, quoting=1)  # csv.QUOTE_ALL


def _parquet_text(frame: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".parquet")
    frame.to_parquet(path, index=False)
    return path


def _parquet_typed(frame: pd.DataFrame, path: Path) -> Path:
    typed = frame.copy()
    typed["declared_at"] = pd.to_datetime(typed["declared_at"], format="ISO8601")
    for column in ("quantity", "gross_weight_kg", "declared_value_usd"):
        typed[column] = typed[column].astype("float64")
    for column in ("customs_broker_id", "payment_terms", "export_authorization_id", "transshipment_country"):
        typed[column] = typed[column].mask(typed[column] == "")  # real nulls instead of ""
    path = path.with_suffix(".parquet")
    typed.to_parquet(path, index=False)
    return path


def _parquet_utc(frame: pd.DataFrame, path: Path) -> Path:
    typed = frame.copy()
    typed["declared_at"] = pd.to_datetime(typed["declared_at"], format="ISO8601").dt.tz_localize("UTC")
    typed["declared_at"] = typed["declared_at"].dt.tz_convert("Asia/Kolkata")  # same instants, other zone
    path = path.with_suffix(".parquet")
    typed.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    "writer", [_bom, _crlf, _reordered, _all_quoted, _parquet_text, _parquet_typed, _parquet_utc]
)
def test_unusual_valid_files_give_the_same_frame_as_plain_csv(tmp_path: Path, writer) -> None:
    frame = valid_declarations()
    (tmp_path / "plain").mkdir()
    (tmp_path / "other").mkdir()
    expected = load(tmp_path / "plain", _plain(frame, tmp_path / "plain" / "declarations.csv"))
    actual = load(tmp_path / "other", writer(frame, tmp_path / "other" / "declarations.csv"))
    assert actual.report["declarations"].rows_rejected == 0
    pd.testing.assert_frame_equal(actual.declarations, expected.declarations)
    assert actual.declarations.loc[0, "goods_description"] == "tramadol tablets, 100 mg\nstrips of 10"


def test_timestamps_with_offsets_become_naive_utc(tmp_path: Path) -> None:
    frame = valid_declarations(3)
    frame["declared_at"] = ["2024-01-05", "2024-01-05T10:00:00+05:30", "2024-01-05T23:30:00Z"]
    tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"))
    assert tables.declarations["declared_at"].tolist() == [
        pd.Timestamp("2024-01-05 00:00"),
        pd.Timestamp("2024-01-05 04:30"),
        pd.Timestamp("2024-01-05 23:30"),
    ]
    assert tables.seizures["seized_at"].iloc[0] == pd.Timestamp("2024-03-01 02:30")


# --------------------------------------------------------------------------- typed output


def test_output_has_every_contract_column_with_its_dtype(tmp_path: Path) -> None:
    frame = valid_declarations().drop(columns=["customs_broker_id", "payment_terms"])  # optional, absent
    tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"))
    declarations = tables.declarations
    assert list(declarations.columns) == column_names(DECLARATION_COLUMNS)
    assert list(tables.seizures.columns) == column_names(SEIZURE_COLUMNS)
    kinds = {c.name: c.kind for c in DECLARATION_COLUMNS}
    for name, dtype in declarations.dtypes.items():
        expected = {"number": "float64", "datetime": "datetime64[us]"}.get(kinds[name], "str")
        assert dtype == expected, (name, dtype)
    assert declarations["customs_broker_id"].isna().all()
    assert declarations["payment_terms"].isna().all()
    assert declarations.loc[1, "hs_code"] == "030490"  # leading zero kept
    assert pd.isna(declarations.loc[1, "export_authorization_id"])  # empty string means none
    assert declarations.loc[0, "export_authorization_id"] == "NOC-1"
    assert declarations.index.equals(pd.RangeIndex(len(declarations)))
    assert tables.inspections is None


def test_validate_table_returns_valid_rejects_and_extra_columns() -> None:
    raw = valid_declarations(4).assign(remarks="x")
    raw.index = pd.RangeIndex(1, 5)
    raw.loc[2, "quantity"] = "abc"
    valid, rejects, extra = validate_table(raw, DECLARATION_COLUMNS, "memory")
    assert extra == ["remarks"]
    assert list(valid.columns) == column_names(DECLARATION_COLUMNS)
    assert valid["declaration_id"].tolist() == ["SB0000000", "SB0000002", "SB0000003"]
    assert rejects.to_dict("records") == [
        {"file": "memory", "row": 2, "column": "quantity", "reason": "not a number: 'abc'"}
    ]


def test_read_table_keeps_text_and_numbers_rows_from_one(tmp_path: Path) -> None:
    raw = read_table(write_csv(valid_declarations(3), tmp_path / "d.csv"))
    assert raw.index.tolist() == [1, 2, 3]
    assert raw.loc[2, "hs_code"] == "030490"
    assert raw.loc[2, "customs_broker_id"] == ""


# --------------------------------------------------------------------------- limits, warnings, inspections


def test_reject_share_above_limit_stops_and_writes_rejects(tmp_path: Path) -> None:
    frame = valid_declarations(20)
    frame.loc[[2, 6], "quantity"] = "-1"  # rows 3 and 7: 10 %
    with pytest.raises(ContractError) as caught:
        load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"))
    message = str(caught.value)
    assert "2 of 20 rows rejected (10.00%)" in message
    assert "declarations_rejects.csv" in message
    rejects = pd.read_csv(tmp_path / "rejects" / "declarations_rejects.csv")
    assert rejects["row"].tolist() == [3, 7]
    assert (tmp_path / "rejects" / "seizures_rejects.csv").exists()  # every table was still checked


def test_reject_share_below_limit_excludes_and_counts(tmp_path: Path) -> None:
    frame = valid_declarations(200)
    frame.loc[9, "hs_code"] = "ABCDEF"  # 0.5 %
    tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"))
    report = tables.report
    assert report.rows_read["declarations"] == 200
    assert report.rows_rejected["declarations"] == 1
    assert report.rows_valid["declarations"] == 199 == len(tables.declarations)
    assert "SB0000009" not in set(tables.declarations["declaration_id"])
    assert "declarations: 200 read, 199 valid, 1 rejected" in report.summary()
    assert rejects_of(tables)["row"].tolist() == [10]


def test_clean_run_writes_header_only_rejects(tmp_path: Path) -> None:
    tables = load(tmp_path, write_csv(valid_declarations(), tmp_path / "declarations.csv"))
    rejects = rejects_of(tables)
    assert list(rejects.columns) == ["file", "row", "column", "reason"] and rejects.empty


def test_extra_column_warns_by_name(tmp_path: Path) -> None:
    frame = valid_declarations().assign(officer_remarks="ok")
    with pytest.warns(ContractWarning, match="officer_remarks"):
        tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"))
    assert tables.report["declarations"].extra_columns == ["officer_remarks"]
    assert "officer_remarks" in tables.report.summary()
    assert "officer_remarks" not in tables.declarations.columns


def test_inspections_of_unknown_declarations_are_rejected(tmp_path: Path) -> None:
    inspections = pd.DataFrame(
        {
            "declaration_id": ["SB0000001", "SB9999999", "SB0000002", "SB0000003"],
            "inspected_at": ["2024-01-10", "2024-01-11", "yesterday", "2024-01-12"],
            "result": ["CLEAN", "SEIZURE", "CLEAN", "DISCREPANCY"],
        }
    )
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        inspections=write_csv(inspections, tmp_path / "inspections.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "inspections")
    assert rejects[["row", "column"]].values.tolist() == [[2, "declaration_id"], [3, "inspected_at"]]
    assert "not found among the valid declarations" in rejects.loc[0, "reason"]
    assert tables.inspections["declaration_id"].tolist() == ["SB0000001", "SB0000003"]
    assert tables.report["inspections"].rows_rejected == 2


def test_parquet_wrong_types_stop_with_clear_message_at_default_limit(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"20 of 20 rows rejected \(100.00%\)"):
        load(tmp_path, parquet_wrong_types(tmp_path))


def test_rejects_are_kept_in_report_without_rejects_dir(tmp_path: Path) -> None:
    frame = valid_declarations()
    frame.loc[0, "quantity"] = "x"
    tables = load(
        tmp_path, write_csv(frame, tmp_path / "declarations.csv"), rejects_dir=None, max_reject_share=1.0
    )
    assert tables.report["declarations"].rejects_path is None
    assert tables.report["declarations"].rejects["row"].tolist() == [1]
    with pytest.raises(ContractError, match="first: row 1, quantity: not a number"):
        load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"), rejects_dir=None)


# --------------------------------------------------------------------------- adversarial input


def test_identical_duplicate_rows_are_all_rejected_not_deduplicated(tmp_path: Path) -> None:
    frame = valid_declarations()
    frame = pd.concat([frame, frame.iloc[[4]]], ignore_index=True)  # row 21 is a copy of row 5
    tables = load(tmp_path, write_csv(frame, tmp_path / "declarations.csv"), max_reject_share=1.0)
    rejects = rejects_of(tables)
    reason = "duplicate id: 'SB0000004' (rows 5 and 21 have this id; identical copies)"
    assert rejects[["row", "column", "reason"]].values.tolist() == [
        [5, "declaration_id", reason],
        [21, "declaration_id", reason],
    ]
    assert "SB0000004" not in set(tables.declarations["declaration_id"])  # no copy kept
    assert tables.report["declarations"].rows_rejected == 2
    assert len(tables.declarations) == 19


def test_conflicting_duplicates_name_the_columns_that_differ(tmp_path: Path) -> None:
    seizures = valid_seizures(6)
    seizures.loc[[3, 5], "seizure_id"] = "SZ0001"  # rows 2, 4 and 6 share an id
    seizures.loc[5, "seized_at"] = seizures.loc[1, "seized_at"]
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        write_csv(seizures, tmp_path / "seizures.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "seizures")
    assert rejects["row"].tolist() == [2, 4, 6]
    assert set(rejects["reason"]) == {
        "duplicate id: 'SZ0001' (3 rows have this id, from row 2 to row 6; "
        "they differ in seized_at, exporter_id, quantity_kg)"
    }
    assert "SZ0001" not in set(tables.seizures["seizure_id"])


def test_seizure_dated_before_its_declaration_is_rejected(tmp_path: Path) -> None:
    seizures = valid_seizures()
    seizures.loc[0, "seized_at"] = "2024-01-31"  # names SB0000000, filed 2024-02-01T10:30:00
    seizures.loc[2, "seized_at"] = "2024-02-03"  # names SB0000002, filed 2024-02-03T10:30: same day, kept
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        write_csv(seizures, tmp_path / "seizures.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "seizures")
    assert rejects[["row", "column", "reason"]].values.tolist() == [
        [
            1,
            "seized_at",
            "dated before the filing day of the declaration it names "
            "('SB0000000', declared_at 2024-02-01T10:30:00): '2024-01-31'",
        ]
    ]
    assert tables.seizures["seizure_id"].tolist() == ["SZ0001", "SZ0002", "SZ0003", "SZ0004"]
    assert tables.report["seizures"].rows_rejected == 1


def test_seizures_naming_unknown_or_rejected_declarations_are_kept(tmp_path: Path) -> None:
    declarations = valid_declarations()
    declarations.loc[2, "quantity"] = "ten"  # SB0000002 is rejected
    seizures = valid_seizures()
    seizures.loc[0, ["declaration_id", "seized_at"]] = ["SB-BEFORE-HISTORY", "2020-05-01"]
    seizures.loc[2, "seized_at"] = "2023-01-01"  # names the rejected SB0000002, a year before it
    tables = load(
        tmp_path,
        write_csv(declarations, tmp_path / "declarations.csv"),
        write_csv(seizures, tmp_path / "seizures.csv"),
        max_reject_share=1.0,
    )
    assert rejects_of(tables, "seizures").empty
    assert len(tables.seizures) == 5


def test_inspection_dated_before_its_declaration_is_rejected(tmp_path: Path) -> None:
    inspections = pd.DataFrame(
        {
            "declaration_id": ["SB0000001", "SB0000003"],
            "inspected_at": ["2024-01-01T23:00:00", "2024-01-04"],  # filed 2024-01-02 and 2024-01-04
            "result": ["SEIZURE", "CLEAN"],
        }
    )
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        inspections=write_csv(inspections, tmp_path / "inspections.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "inspections")
    assert rejects[["row", "column"]].values.tolist() == [[1, "inspected_at"]]
    assert rejects.loc[0, "reason"].startswith("dated before the filing day of the declaration it names")
    assert tables.inspections["declaration_id"].tolist() == ["SB0000003"]


def test_future_dates_are_judged_against_the_validation_time(tmp_path: Path) -> None:
    frame = valid_declarations()
    frame.loc[0, "declared_at"] = "2024-03-10T23:59:00"  # within the one-day tolerance
    frame.loc[1, "declared_at"] = "2024-03-11T00:00:01"  # beyond it
    tables = load(
        tmp_path,
        write_csv(frame, tmp_path / "declarations.csv"),
        max_reject_share=1.0,
        as_of=pd.Timestamp("2024-03-10T05:30:00+05:30"),  # = 2024-03-10T00:00 UTC
    )
    rejects = rejects_of(tables)
    assert rejects[["row", "column", "reason"]].values.tolist() == [
        [
            2,
            "declared_at",
            "in the future (after 2024-03-11 00:00 UTC, the validation time plus 1 day): "
            "'2024-03-11T00:00:01'",
        ]
    ]


def test_placeholder_and_future_seizure_dates_are_rejected(tmp_path: Path) -> None:
    seizures = valid_seizures()
    seizures.loc[1, "seized_at"] = "1970-01-01"
    seizures.loc[3, "seized_at"] = "2199-01-01"
    tables = load(
        tmp_path,
        write_csv(valid_declarations(), tmp_path / "declarations.csv"),
        write_csv(seizures, tmp_path / "seizures.csv"),
        max_reject_share=1.0,
    )
    rejects = rejects_of(tables, "seizures")
    assert rejects[["row", "column"]].values.tolist() == [[2, "seized_at"], [4, "seized_at"]]
    assert rejects.loc[0, "reason"].startswith("before 1990-01-01")
    assert rejects.loc[1, "reason"].startswith("in the future")


# --------------------------------------------------------------------------- CLI


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from training.cli import app

    return CliRunner().invoke(app, ["validate", *args])


def test_cli_validate_bad_file_exits_2_with_readable_message(tmp_path: Path) -> None:
    frame = valid_declarations()
    frame.loc[:4, "transport_mode"] = "BOAT"
    declarations = write_csv(frame, tmp_path / "declarations.csv")
    seizures = write_csv(valid_seizures(), tmp_path / "seizures.csv")
    result = _invoke(
        [
            "--declarations",
            str(declarations),
            "--seizures",
            str(seizures),
            "--rejects-dir",
            str(tmp_path / "r"),
        ]
    )
    assert result.exit_code == 2, result.output
    assert "error: too many rejected rows" in result.output
    assert "5 of 20 rows rejected" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_validate_missing_column_exits_2(tmp_path: Path) -> None:
    declarations = write_csv(valid_declarations().drop(columns="hs_code"), tmp_path / "declarations.csv")
    seizures = write_csv(valid_seizures(), tmp_path / "seizures.csv")
    result = _invoke(["--declarations", str(declarations), "--seizures", str(seizures)])
    assert result.exit_code == 2
    assert "required column(s) hs_code missing" in result.output
    assert "Traceback" not in result.output


def test_cli_validate_good_files_exit_0(tmp_path: Path) -> None:
    declarations = write_csv(valid_declarations(), tmp_path / "declarations.csv")
    seizures = write_csv(valid_seizures(), tmp_path / "seizures.csv")
    result = _invoke(
        [
            "--declarations",
            str(declarations),
            "--seizures",
            str(seizures),
            "--rejects-dir",
            str(tmp_path / "r"),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "declarations" in result.output and "seizures" in result.output
    assert (tmp_path / "r" / "declarations_rejects.csv").exists()
