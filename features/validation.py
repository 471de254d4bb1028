"""Read contract files and validate them against `features.contract` (see docs/data-contract.md).

The edge of the pipeline: files come in raw, typed frames go out. Each file is read with
every column as text (so `hs_code` keeps its leading zeros), converted column by column
to the contract types, then checked with one lazily-evaluated pandera schema, so every
failure in the file is collected at once. A row that breaks the contract is rejected:
one line per failure goes to ``<rejects_dir>/<table>_rejects.csv`` (``file,row,column,reason``)
and the row is left out of the typed frame. The run stops with a `ContractError` when a
table's share of rejected rows passes ``max_reject_share``.

Row numbers are *data row* numbers, 1-based: the first record after the CSV header (or
the first row of a Parquet file) is row 1. In a CSV without line breaks inside quoted
fields and without blank lines, row ``n`` is on line ``n + 1`` of the file.
"""

from __future__ import annotations

import codecs
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pycountry
from pandera.errors import SchemaErrors

from features.contract import (
    DECLARATION_COLUMNS,
    EARLIEST_DATE,
    FUTURE_TOLERANCE_DAYS,
    INSPECTION_COLUMNS,
    REASON_BEFORE_EARLIEST,
    REASON_CONTROL_IN_ID,
    REASON_FUTURE,
    REASON_NO_LINK,
    REASON_NUL,
    REASON_TOO_LONG,
    SEIZURE_COLUMNS,
    SEIZURE_LINK_COLUMNS,
    Column,
    column_names,
    max_length,
    required_names,
)

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
REJECT_COLUMNS: list[str] = ["file", "row", "column", "reason"]
STRING_KINDS: frozenset[str] = frozenset({"id", "text", "enum", "country", "locode", "hs"})

#: ISO 3166-1 alpha-2 codes, upper-case. Built once; membership is a vectorised `isin`.
COUNTRY_CODES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)

_LOCODE_PATTERN = r"[A-Z]{2}[A-Z0-9]{3}"
_HS_PATTERN = r"[0-9]{6}(?:[0-9]{2})?"
_DOCS = "docs/data-contract.md"


class ContractError(Exception):
    """A contract file cannot be used: the message says what, where and what to do."""


class ContractWarning(UserWarning):
    """Something in a contract file was accepted but deserves attention (e.g. extra columns)."""


@dataclass
class TableReport:
    """Counts for one table: rows read, kept and rejected, plus where the rejects went."""

    table: str
    file: Path
    rows_read: int
    rows_valid: int
    rows_rejected: int
    extra_columns: list[str]
    rejects_path: Path | None
    rejects: pd.DataFrame = field(repr=False, default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))

    @property
    def reject_share(self) -> float:
        """Distinct rejected rows / rows read."""
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


@dataclass
class ValidationReport:
    """What validation did to each table (``report["declarations"].rows_rejected`` or
    ``report.rows_rejected["declarations"]``), and the warnings raised."""

    tables: dict[str, TableReport]
    max_reject_share: float
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, table: str) -> TableReport:
        return self.tables[table]

    @property
    def rows_read(self) -> dict[str, int]:
        return {name: t.rows_read for name, t in self.tables.items()}

    @property
    def rows_valid(self) -> dict[str, int]:
        return {name: t.rows_valid for name, t in self.tables.items()}

    @property
    def rows_rejected(self) -> dict[str, int]:
        return {name: t.rows_rejected for name, t in self.tables.items()}

    @property
    def extra_columns(self) -> dict[str, list[str]]:
        return {name: t.extra_columns for name, t in self.tables.items()}

    @property
    def rejects_path(self) -> dict[str, Path | None]:
        return {name: t.rejects_path for name, t in self.tables.items()}

    def as_dict(self) -> dict[str, object]:
        """Counts per table, the limit and the warnings, JSON-ready (for run records)."""
        return {
            "max_reject_share": self.max_reject_share,
            "tables": {
                name: {
                    "file": str(t.file),
                    "rows_read": t.rows_read,
                    "rows_valid": t.rows_valid,
                    "rows_rejected": t.rows_rejected,
                    "reject_share": t.reject_share,
                    "extra_columns": list(t.extra_columns),
                    "rejects_file": str(t.rejects_path) if t.rejects_path else None,
                }
                for name, t in self.tables.items()
            },
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line per table plus the warnings, for logs."""
        lines = [
            f"{t.table}: {t.rows_read} read, {t.rows_valid} valid, {t.rows_rejected} rejected "
            f"({t.reject_share:.2%}, limit {self.max_reject_share:.2%})"
            + (f"; rejects in {t.rejects_path}" if t.rejects_path and t.rows_rejected else "")
            for t in self.tables.values()
        ]
        lines += [
            f"  {t.table}: {rows} rows, {column}: {reason}"
            for t in self.tables.values()
            for column, reason, rows in top_reasons(t.rejects)
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class ContractTables:
    """The validated, typed tables. ``inspections`` is None when no file was given."""

    declarations: pd.DataFrame
    seizures: pd.DataFrame
    inspections: pd.DataFrame | None
    report: ValidationReport


# --------------------------------------------------------------------------- reading


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (every column as text, empty fields as "") or Parquet file, untyped.

    The index is the 1-based data row number. Raises `ContractError` for a missing,
    empty, header-only, non-UTF-8, malformed or unsupported file.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        raise ContractError(
            f"{path}: unsupported file extension '{''.join(path.suffixes) or '(none)'}'. "
            f"Save the table as CSV ({', '.join(CSV_SUFFIXES)}) or Parquet ({', '.join(PARQUET_SUFFIXES)})."
        )
    if not path.is_file():
        raise ContractError(f"{path}: file not found. Check the path (current folder: {Path.cwd()}).")
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: file is empty (0 bytes). Export the table again with a header row.")
    frame = _read_csv(path) if name.endswith(CSV_SUFFIXES) else _read_parquet(path)
    if len(frame) == 0:
        raise ContractError(
            f"{path}: no rows (only a header with {len(frame.columns)} columns). "
            "Export the table again including its data."
        )
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # All text, no NA guessing: "NA" is a valid id and "0303" must stay "0303".
        # The C engine has no field-size limit (a 1 MB description is fine) and the
        # utf-8 codec strips a leading BOM.
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", index_col=False
        )
    except UnicodeDecodeError:
        offset, line = _first_invalid_utf8(path)
        raise ContractError(
            f"{path}: not valid UTF-8 at byte offset {offset} (line {line}). "
            "Re-export the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    except pd.errors.EmptyDataError:
        raise ContractError(
            f"{path}: file is empty (no header row). Export the table again with a header row."
        ) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise ContractError(
            f"{path}: not a readable CSV ({exc}). Check quoting and the number of fields on that line."
        ) from None


def _first_invalid_utf8(path: Path) -> tuple[int, int]:
    """Byte offset (0-based) and line (1-based) of the first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.start is relative to the decoder's buffered bytes + this chunk.
                buffered = len(exc.object) - len(chunk)
                position = exc.start - buffered
                return offset + position, line + chunk[: max(position, 0)].count(b"\n")
            offset += len(chunk)
            line += chunk.count(b"\n")
    return offset, line


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise ContractError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}). "
            "Write it again with pandas/pyarrow, or provide a CSV."
        ) from None


# --------------------------------------------------------------------------- typing


def _as_text(values: pd.Series) -> pd.Series:
    """Text column as pandas `str`, empty strings meaning "none" (NA)."""
    text = values if isinstance(values.dtype, pd.StringDtype) else values.astype("str")
    return text.mask(text == "").astype("str")


def _parse_column(values: pd.Series, column: Column) -> tuple[pd.Series, pd.Series, str]:
    """Convert one raw column to its contract type.

    Returns the typed values, a mask of cells that were given but could not be converted,
    and the reason for those cells.
    """
    none_failed = pd.Series(False, index=values.index)
    if column.kind in STRING_KINDS:
        return _as_text(values), none_failed, ""
    stored = str(values.dtype)
    if column.kind == "number":
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            typed = values.astype("float64")
            return typed, none_failed, ""
        if pd.api.types.is_bool_dtype(values.dtype):
            return pd.Series(np.nan, index=values.index), values.notna(), f"not a number (stored as {stored})"
        text = _as_text(values)
        typed = pd.to_numeric(text, errors="coerce").astype("float64")
        return typed, text.notna() & typed.isna(), "not a number"
    if column.kind == "datetime":
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            typed = values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
            return typed, none_failed, ""
        if pd.api.types.is_datetime64_dtype(values.dtype):
            return values.astype("datetime64[us]"), none_failed, ""
        if pd.api.types.is_numeric_dtype(values.dtype):
            # Epoch numbers are ambiguous (s? ms? days?): reject rather than guess.
            typed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
            return typed, values.notna(), f"not an ISO 8601 date or timestamp (stored as {stored})"
        text = _as_text(values)
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        typed = parsed.dt.tz_localize(None).astype("datetime64[us]")
        return typed, text.notna() & typed.isna(), "not an ISO 8601 date or timestamp"
    raise ValueError(f"unknown column kind {column.kind!r} for {column.name}")  # a bug in contract.py


def _empty_column(column: Column, index: pd.Index) -> pd.Series:
    dtype = {"number": "float64", "datetime": "datetime64[us]"}.get(column.kind, "str")
    return pd.Series(np.nan if dtype != "datetime64[us]" else pd.NaT, index=index, dtype=dtype)


# --------------------------------------------------------------------------- checking


def latest_plausible(as_of: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest date a contract row may carry: the validation time (default: now, UTC)
    plus `FUTURE_TOLERANCE_DAYS`, naive UTC like the typed frames."""
    now = pd.Timestamp.now(tz="UTC") if as_of is None else pd.Timestamp(as_of)
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)
    return (now + pd.Timedelta(days=FUTURE_TOLERANCE_DAYS)).as_unit("us")


def _value_checks(column: Column, latest: pd.Timestamp) -> list[pa.Check]:
    """pandera checks for one column's values (NAs are skipped; nullability is separate)."""
    if column.kind in ("id", "text"):
        checks = []
        limit = max_length(column)
        if limit is not None:
            checks.append(pa.Check.str_length(max_value=limit, error=REASON_TOO_LONG.format(limit=limit)))
        if column.kind == "id":
            checks.append(pa.Check(lambda s: ~s.str.contains(r"[\x00-\x1f\x7f]"), error=REASON_CONTROL_IN_ID))
        else:
            checks.append(pa.Check(lambda s: ~s.str.contains("\x00", regex=False), error=REASON_NUL))
        return checks
    if column.kind == "enum":
        allowed = ", ".join(column.enum or ())
        return [pa.Check.isin(list(column.enum or ()), error=f"not one of {allowed}")]
    if column.kind == "country":
        return [
            pa.Check.isin(
                COUNTRY_CODES,
                error="not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. IN)",
            )
        ]
    if column.kind == "locode":
        return [
            pa.Check(
                lambda s: s.str.fullmatch(_LOCODE_PATTERN) & s.str.slice(0, 2).isin(COUNTRY_CODES),
                error="not a UN/LOCODE (ISO country code + 3 upper-case letters or digits, e.g. INNSA)",
            )
        ]
    if column.kind == "hs":
        return [
            pa.Check(lambda s: s.str.fullmatch(_HS_PATTERN), error="not an HS code of exactly 6 or 8 digits")
        ]
    if column.kind == "datetime":
        # Placeholder and far-future dates are not repaired (clamped) but rejected: they
        # would otherwise stretch windows, tenures and "days since" features silently.
        return [
            pa.Check.ge(
                pd.Timestamp(EARLIEST_DATE).as_unit("us"),
                error=REASON_BEFORE_EARLIEST,
            ),
            pa.Check.le(
                latest,
                error=f"{REASON_FUTURE} (after {latest:%Y-%m-%d %H:%M} UTC, the validation time "
                f"plus {FUTURE_TOLERANCE_DAYS} day)",
            ),
        ]
    if column.kind == "number":
        checks = [pa.Check(lambda s: np.isfinite(s), error="not a finite number")]
        if column.strictly_positive:
            checks.append(pa.Check.gt(0, error="must be > 0"))
        elif column.min_value is not None:
            checks.append(pa.Check.ge(column.min_value, error=f"must be >= {column.min_value:g}"))
        return checks
    return []


_LINK_ERROR = REASON_NO_LINK


def contract_schema(columns: tuple[Column, ...], latest: pd.Timestamp | None = None) -> pa.DataFrameSchema:
    """The pandera schema for a typed contract frame (after `_parse_column`).

    Dates after ``latest`` (default: `latest_plausible()`, i.e. now plus the tolerance) fail.
    """
    latest = latest_plausible() if latest is None else latest
    checks = []
    if {"seizure_id", *SEIZURE_LINK_COLUMNS} <= set(column_names(columns)):  # the seizures table
        checks.append(
            pa.Check(
                lambda frame: frame[list(SEIZURE_LINK_COLUMNS)].notna().any(axis=1),
                error=_LINK_ERROR,
                ignore_na=False,  # the failing rows are exactly the all-NA ones
            )
        )
    return pa.DataFrameSchema(
        {
            c.name: pa.Column(
                checks=_value_checks(c, latest),
                nullable=c.nullable or not c.required,
                unique=c.unique,
                report_duplicates="all",
                required=True,
            )
            for c in columns
        },
        checks=checks,
    )


_BUILTIN_REASONS = {
    "not_nullable": "missing value (column is required)",
    "field_uniqueness": "duplicate id (every row with this id is rejected)",
}


def _short(value: object) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _failures_to_rejects(failure_cases: pd.DataFrame, source: str, raw: pd.DataFrame | None) -> pd.DataFrame:
    """pandera's failure cases as reject lines (file, row, column, reason).

    The value quoted in a reason is the one in the file (``raw``), not its typed form,
    so an auditor can search for it.
    """
    cases = failure_cases.dropna(subset=["index"])
    frame_level = cases["schema_context"] == "DataFrameSchema"
    row_level = (
        cases[frame_level]
        .drop_duplicates(subset=["index", "check"])
        .assign(column="|".join(SEIZURE_LINK_COLUMNS), reason=lambda d: d["check"])
    )
    cells = cases[~frame_level]
    values = cells["failure_case"].astype(object)
    if raw is not None:
        for name, group in cells.groupby("column"):
            if name in raw.columns:
                values.loc[group.index] = raw[name].reindex(group["index"].astype("int64")).to_numpy()
    quoted = values.map(_short).astype("str")
    builtin = cells["check"].map(_BUILTIN_REASONS)
    cell_reasons = builtin.where(builtin.notna(), cells["check"] + ": " + quoted)
    duplicate = cells["check"] == "field_uniqueness"
    cell_reasons = cell_reasons.where(~duplicate, "duplicate id: " + quoted)
    cells = cells.assign(reason=cell_reasons)
    rejects = pd.concat([row_level, cells], ignore_index=True)
    return pd.DataFrame(
        {
            "file": source,
            "row": rejects["index"].astype("int64"),
            "column": rejects["column"].astype("str"),
            "reason": rejects["reason"].astype("str"),
        }
    )


def _run_schema(
    schema: pa.DataFrameSchema, typed: pd.DataFrame, source: str, raw: pd.DataFrame | None = None
) -> pd.DataFrame:
    try:
        schema.validate(typed, lazy=True)
    except SchemaErrors as errors:
        return _failures_to_rejects(errors.failure_cases, source, raw)
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "str") for c in REJECT_COLUMNS})


def validate_table(
    raw: pd.DataFrame, columns: tuple[Column, ...], source: str, *, as_of: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Type and check one raw table (as from `read_table`) against its contract columns.

    Returns ``(valid, rejects, extra_columns)``: the valid rows with exactly the contract
    columns, typed and re-indexed from 0; one reject line per failure (``file, row,
    column, reason``, row = the raw frame's index, i.e. the 1-based data row); and the
    names of columns that are not in the contract. A missing required column raises
    `ContractError`. Dates later than ``as_of`` (default: now) plus `FUTURE_TOLERANCE_DAYS`
    are rejected as in the future.
    """
    names = column_names(columns)
    missing = [n for n in required_names(columns) if n not in raw.columns]
    if missing:
        raise ContractError(
            f"{source}: required column(s) {', '.join(missing)} missing. "
            f"The file has: {', '.join(map(repr, raw.columns))}. "
            f"Add or rename the column(s) as in {_DOCS}."
        )
    extra = [str(c) for c in raw.columns if c not in names]

    typed_columns: dict[str, pd.Series] = {}
    parse_rejects: list[pd.DataFrame] = []
    for column in columns:
        if column.name not in raw.columns:
            typed_columns[column.name] = _empty_column(column, raw.index)
            continue
        typed, failed, reason = _parse_column(raw[column.name], column)
        typed_columns[column.name] = typed
        if failed.any():
            bad = raw.loc[failed.to_numpy(), column.name]
            parse_rejects.append(
                pd.DataFrame(
                    {
                        "file": source,
                        "row": bad.index.astype("int64"),
                        "column": column.name,
                        "reason": reason + ": " + bad.map(_short).astype("str"),
                    }
                )
            )
    typed_frame = pd.DataFrame(typed_columns, index=raw.index)

    schema_rejects = _run_schema(contract_schema(columns, latest_plausible(as_of)), typed_frame, source, raw)
    if parse_rejects:
        # A cell that failed to parse is NA now; don't also report it as "missing value".
        parsed = pd.concat(parse_rejects, ignore_index=True)
        already = pd.MultiIndex.from_frame(parsed[["row", "column"]])
        seen = pd.MultiIndex.from_frame(schema_rejects[["row", "column"]]).isin(already)
        schema_rejects = pd.concat([parsed, schema_rejects[~seen]], ignore_index=True)
    rejects = _sorted_rejects(schema_rejects, names)
    for column in columns:
        if column.unique and column.name in raw.columns:
            rejects = _explain_duplicates(rejects, raw, column.name)

    valid = typed_frame[~typed_frame.index.isin(rejects["row"])].reset_index(drop=True)
    return valid, rejects, extra


def _explain_duplicates(rejects: pd.DataFrame, raw: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """Append to each ``duplicate id`` reason which rows share the id (first and last) and
    whether they are identical copies or which columns they differ in.

    Neither kind is repaired: an identical copy is not silently de-duplicated (the extract
    that produced it may have dropped or doubled other rows too) and a conflicting one is
    not resolved by guessing which row is right. Every row with the id is rejected.
    """
    is_duplicate = (rejects["column"] == id_column) & rejects["reason"].str.startswith("duplicate id")
    if not is_duplicate.any():
        return rejects
    ids = raw[id_column]
    shared = raw.loc[ids.notna() & (ids.astype("str") != "") & ids.duplicated(keep=False)]
    group = pd.factorize(shared[id_column])[0]
    rows = pd.Series(shared.index.to_numpy(), index=group)
    span = rows.groupby(level=0).agg(["size", "min", "max"])
    count, first, last = (span[c].astype("str").to_numpy(dtype=object) for c in ("size", "min", "max"))
    where = np.where(
        count == "2",
        "rows " + first + " and " + last + " have this id",
        count + " rows have this id, from row " + first + " to row " + last,
    )
    # A column differs within an id when its value codes (missing is a code too) do. The set
    # of differing columns is a bit pattern per id; only the few distinct patterns get text.
    others = [c for c in shared.columns if c != id_column]
    codes = pd.DataFrame({c: _value_codes(shared[c]) for c in others}, index=group)
    differs = (codes.groupby(level=0).min() != codes.groupby(level=0).max()).to_numpy()
    packed = np.ascontiguousarray(np.packbits(differs, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first_of, inverse = np.unique(keys, return_index=True, return_inverse=True)
    texts = np.array(
        [
            f"they differ in {', '.join(np.asarray(others)[bits])}" if bits.any() else "identical copies"
            for bits in differs[first_of]  # one per distinct pattern, not per row
        ],
        dtype=object,
    )
    detail = " (" + where + "; " + texts[inverse.ravel()] + ")"
    position = pd.Series(group, index=shared.index)
    lines = rejects.loc[is_duplicate, "row"].to_numpy()
    explained = rejects["reason"].to_numpy(dtype=object).copy()
    explained[is_duplicate.to_numpy()] += detail[position.reindex(lines).to_numpy()]
    return rejects.assign(reason=pd.Series(explained, index=rejects.index, dtype="str"))


def _value_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a column's values (missing is -1); unhashable cells (lists in a
    Parquet extra column) are compared by their text."""
    try:
        return pd.factorize(values)[0]
    except TypeError:
        return pd.factorize(values.astype("str"))[0]


def _sorted_rejects(rejects: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    order = {n: i for i, n in enumerate(names)}
    position = rejects["column"].map(order).fillna(len(names))
    return (
        rejects.assign(_position=position)
        .sort_values(["row", "_position"], kind="stable")
        .drop(columns="_position")
        .reset_index(drop=True)[REJECT_COLUMNS]
    )


def _unknown_declarations(inspections: pd.DataFrame, declaration_ids: pd.Series, source: str) -> pd.DataFrame:
    """Reject lines for inspections whose declaration is not among the valid declarations."""
    schema = pa.DataFrameSchema(
        {
            "declaration_id": pa.Column(
                checks=pa.Check.isin(
                    declaration_ids.dropna().unique(),
                    error="declaration_id not found among the valid declarations",
                )
            )
        }
    )
    return _run_schema(schema, inspections, source)


def _dated_before_declaration(
    events: pd.DataFrame, time_column: str, declarations: pd.DataFrame, raw: pd.DataFrame, source: str
) -> pd.DataFrame:
    """Reject lines for seizures or inspections dated before the filing day of the declaration
    they name (only when that declaration is among the valid declarations).

    Nothing can be seized or examined before it is declared. The comparison is by calendar
    day, so a date-only seizure on the filing day of a timestamped declaration is fine.
    `events` carries the file's data row numbers as its index.
    """
    filed = pd.Series(
        declarations["declared_at"].to_numpy(),
        index=pd.Index(declarations["declaration_id"].to_numpy(dtype=object), dtype=object),
    )
    named = events["declaration_id"].to_numpy(dtype=object, na_value=None)
    declared_at = pd.Series(filed.reindex(named).to_numpy(), index=events.index)
    early = events[time_column] < declared_at.dt.floor("D")
    if not early.any():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "str") for c in REJECT_COLUMNS})
    rows = events.index[early.to_numpy()]
    written = raw[time_column].reindex(rows).map(_short).astype("str")
    reason = (
        "dated before the filing day of the declaration it names ("
        + events.loc[rows, "declaration_id"].map(_short).astype("str")
        + ", declared_at "
        + declared_at.loc[rows].dt.strftime("%Y-%m-%dT%H:%M:%S").astype("str")
        + "): "
        + written.to_numpy()
    )
    return pd.DataFrame(
        {"file": source, "row": rows.astype("int64"), "column": time_column, "reason": reason.to_numpy()}
    )


# --------------------------------------------------------------------------- loading


def load_contract_tables(
    declarations: Path,
    seizures: Path,
    inspections: Path | None = None,
    *,
    rejects_dir: Path | None = None,
    max_reject_share: float = 0.01,
    verbose: bool = False,
    as_of: pd.Timestamp | None = None,
) -> ContractTables:
    """Read and validate the contract tables; write rejects; stop above the rejected share.

    Every table is validated and its rejects written (to ``rejects_dir/<table>_rejects.csv``
    when ``rejects_dir`` is given) before any limit is enforced, so one run shows all the
    problems. Raises `ContractError` for an unusable file or when a table's share of
    rejected rows exceeds ``max_reject_share``. Extra columns are reported in
    ``report.warnings`` and raised as `ContractWarning` (printed instead when ``verbose``).
    ``as_of`` is the validation time dates are checked against (default: now).
    """
    if not 0.0 <= max_reject_share <= 1.0:
        raise ContractError(f"max_reject_share must be between 0 and 1, got {max_reject_share}.")
    files = {"declarations": Path(declarations), "seizures": Path(seizures)}
    if inspections is not None:
        files["inspections"] = Path(inspections)
    contracts = {
        "declarations": DECLARATION_COLUMNS,
        "seizures": SEIZURE_COLUMNS,
        "inspections": INSPECTION_COLUMNS,
    }

    frames: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    messages: list[str] = []
    for table, path in files.items():
        source = str(path)
        raw = read_table(path)
        valid, rejects, extra = validate_table(raw, contracts[table], source, as_of=as_of)
        if table in ("seizures", "inspections"):
            # Checks against the valid declarations. Row numbers must stay the file's:
            # re-attach them before the second pass.
            kept_rows = raw.index[~raw.index.isin(rejects["row"])]
            linked = valid.set_axis(kept_rows)
            time_column = "seized_at" if table == "seizures" else "inspected_at"
            cross = [_dated_before_declaration(linked, time_column, frames["declarations"], raw, source)]
            if table == "inspections":
                cross.append(_unknown_declarations(linked, frames["declarations"]["declaration_id"], source))
            crossed = pd.concat(cross, ignore_index=True)
            rejects = _sorted_rejects(
                pd.concat([rejects, crossed], ignore_index=True), column_names(contracts[table])
            )
            valid = valid[~kept_rows.isin(crossed["row"])].reset_index(drop=True)
        rejects_path = _write_rejects(rejects, rejects_dir, table)
        frames[table] = valid
        reports[table] = TableReport(
            table=table,
            file=path,
            rows_read=len(raw),
            rows_valid=len(valid),
            rows_rejected=int(rejects["row"].nunique()),
            extra_columns=extra,
            rejects_path=rejects_path,
            rejects=rejects,
        )
        if extra:
            message = f"{table} ({path}): extra column(s) ignored: {', '.join(extra)}"
            messages.append(message)
            if not verbose:  # verbose prints it with the counts instead of a second copy
                warnings.warn(message, ContractWarning, stacklevel=2)

    report = ValidationReport(tables=reports, max_reject_share=max_reject_share, warnings=messages)
    if verbose:
        _print_report(report)
    over = [t for t in reports.values() if t.reject_share > max_reject_share]
    if over:
        details = "; ".join(
            f"{t.table} ({t.file}): {t.rows_rejected} of {t.rows_read} rows rejected ({t.reject_share:.2%})"
            + (f", see {t.rejects_path}" if t.rejects_path else f", first: {_first_reason(t.rejects)}")
            for t in over
        )
        raise ContractError(
            f"too many rejected rows (limit {max_reject_share:.2%}): {details}. "
            "Fix the source data, or raise --max-reject-share if these rows may be dropped. "
            "Rows are data rows numbered from 1 (the first row after the header)."
        )
    return ContractTables(
        declarations=frames["declarations"],
        seizures=frames["seizures"],
        inspections=frames.get("inspections"),
        report=report,
    )


def reason_stem(reason: str) -> str:
    """A reject reason without the quoted value and per-row detail (what is counted as "the same reason")."""
    return reason.split(": ", 1)[0].split(" (", 1)[0]


def top_reasons(rejects: pd.DataFrame, n: int = 3) -> list[tuple[str, str, int]]:
    """The `n` most frequent (column, reason, rejected rows) of a rejects frame, most frequent first.

    A reason is counted once per row, so a row rejected twice for it counts once; ties are
    broken by column then reason, so the answer does not depend on the file's order.
    """
    if rejects.empty:
        return []
    stems = rejects.assign(reason=rejects["reason"].astype("str").map(reason_stem))
    counts = (
        stems.drop_duplicates(subset=["row", "column", "reason"])
        .groupby(["column", "reason"], sort=False)
        .size()
        .reset_index(name="rows")
        .sort_values(["rows", "column", "reason"], ascending=[False, True, True], kind="stable")
        .head(n)
    )
    return [(str(c), str(r), int(k)) for c, r, k in counts.itertuples(index=False)]


def _first_reason(rejects: pd.DataFrame) -> str:
    first = rejects.iloc[0]
    return f"row {first['row']}, {first['column']}: {first['reason']}"


def _write_rejects(rejects: pd.DataFrame, rejects_dir: Path | None, table: str) -> Path | None:
    """Write the reject lines (header only when there are none, as proof of a clean run)."""
    if rejects_dir is None:
        return None
    path = Path(rejects_dir) / f"{table}_rejects.csv"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rejects.to_csv(path, index=False)
    except OSError as exc:
        raise ContractError(f"cannot write rejects to {path}: {exc}. Choose another --rejects-dir.") from None
    return path


def _print_report(report: ValidationReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Contract validation (max reject share {report.max_reject_share:.2%})")
    for heading in ("table", "file", "read", "valid", "rejected", "share", "rejects file"):
        numeric = heading in {"read", "valid", "rejected", "share"}
        table.add_column(heading, justify="right" if numeric else "left", overflow="fold")
    for t in report.tables.values():
        over = t.reject_share > report.max_reject_share
        share = f"[red]{t.reject_share:.2%}[/red]" if over else f"{t.reject_share:.2%}"
        table.add_row(
            t.table,
            str(t.file),
            f"{t.rows_read:,}",
            f"{t.rows_valid:,}",
            f"{t.rows_rejected:,}",
            share,
            str(t.rejects_path) if t.rejects_path else "-",
        )
    console.print(table)
    for t in report.tables.values():
        frequent = top_reasons(t.rejects)
        if frequent:
            console.print(f"{t.table}: most frequent reasons", highlight=False)
            for column, reason, rows in frequent:
                console.print(f"  {rows:>9,} rows  {column}: {reason}", highlight=False, soft_wrap=True)
    for message in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
