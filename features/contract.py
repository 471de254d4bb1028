"""The input data contract (see docs/data-contract.md): column names, types and enums.

This module only *describes* the tables. Reading and validating files lives in
`features.validation`; everything downstream relies on the typed frames it returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

TRANSPORT_MODES: tuple[str, ...] = ("SEA", "AIR", "COURIER", "POST", "ROAD", "RAIL")
QUANTITY_UNITS: tuple[str, ...] = ("KGM", "LTR", "NOS", "GRM", "MLT", "TNE", "UNT")
PAYMENT_TERMS: tuple[str, ...] = ("LC", "ADVANCE", "OPEN_ACCOUNT", "CAD", "OTHER")
INSPECTION_RESULTS: tuple[str, ...] = ("CLEAN", "DISCREPANCY", "SEIZURE")

#: Default label window: a seizure within this many days of filing makes a declaration positive.
LABEL_WINDOW_DAYS = 180

#: Dates before this are placeholders (1900-01-01, the 1970 epoch) or typos, not real filings,
#: seizures or inspections: rejected.
EARLIEST_DATE = "1990-01-01"
#: Dates later than the validation time plus this many days are in the future: rejected. The
#: day of slack covers naive local timestamps east of UTC (e.g. India, UTC+05:30).
FUTURE_TOLERANCE_DAYS = 1

#: Longest identifier (declaration, seizure, exporter, consignee, broker, authorisation ids).
MAX_ID_LENGTH = 64
#: Longest free text per column, in files and requests; a longer value is rejected, not truncated.
MAX_TEXT_LENGTH: dict[str, int] = {"substance": 200, "agency": 200}
#: Further caps on one HTTP request's free text (a body-size limit, not a meaning of the data):
#: files may carry longer declared descriptions, which training reads in full.
REQUEST_TEXT_LENGTH: dict[str, int] = {"goods_description": 4000}

# Reasons, worded once: the training validator writes them into rejects files and the
# service's 422 answers carry the same words, so a rejected row reads the same at both edges.
REASON_BEFORE_EARLIEST = f"before {EARLIEST_DATE} (a placeholder or a typo, not a real date)"
REASON_FUTURE = "in the future"
REASON_NUL = "contains a NUL character (U+0000), which no CSV or database text column keeps"
REASON_CONTROL_IN_ID = "identifiers may not contain control characters (U+0000-U+001F, U+007F)"
REASON_TOO_LONG = "longer than {limit} characters"
REASON_OUT_OF_RANGE = "outside years 1-9999 once converted to UTC"


@dataclass(frozen=True)
class Column:
    """One contract column: its name, logical kind and whether it must be present."""

    name: str
    kind: str  # "id" | "text" | "datetime" | "number" | "enum" | "country" | "locode" | "hs"
    required: bool
    unique: bool = False
    enum: tuple[str, ...] | None = None
    nullable: bool = False
    min_value: float | None = None
    strictly_positive: bool = False


DECLARATION_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "id", True, unique=True),
    Column("declared_at", "datetime", True),
    Column("exporter_id", "id", True),
    Column("consignee_id", "id", True),
    Column("consignee_country", "country", True),
    Column("destination_country", "country", True),
    Column("port_of_loading", "locode", True),
    Column("transport_mode", "enum", True, enum=TRANSPORT_MODES),
    Column("hs_code", "hs", True),
    Column("goods_description", "text", True, nullable=True),
    Column("quantity", "number", True, min_value=0.0, strictly_positive=True),
    Column("quantity_unit", "enum", True, enum=QUANTITY_UNITS),
    Column("gross_weight_kg", "number", True, min_value=0.0),
    Column("declared_value_usd", "number", True, min_value=0.0),
    Column("customs_broker_id", "id", False, nullable=True),
    Column("payment_terms", "enum", False, enum=PAYMENT_TERMS, nullable=True),
    Column("export_authorization_id", "id", False, nullable=True),
    Column("transshipment_country", "country", False, nullable=True),
)

SEIZURE_COLUMNS: tuple[Column, ...] = (
    Column("seizure_id", "id", True, unique=True),
    Column("seized_at", "datetime", True),
    Column("declaration_id", "id", False, nullable=True),
    Column("exporter_id", "id", False, nullable=True),
    Column("consignee_id", "id", False, nullable=True),
    Column("country", "country", True),
    Column("substance", "text", True),
    Column("quantity_kg", "number", False, min_value=0.0, nullable=True),
    Column("agency", "text", False, nullable=True),
)

INSPECTION_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "id", True),
    Column("inspected_at", "datetime", True),
    Column("result", "enum", True, enum=INSPECTION_RESULTS),
)

#: Seizure rows must name at least one of these.
SEIZURE_LINK_COLUMNS: tuple[str, ...] = ("declaration_id", "exporter_id", "consignee_id")

#: One valid row of each table, as a customs system sends it (shown in the service's
#: published schema). Read-only: copy before changing a field.
EXAMPLE_DECLARATION: Mapping[str, object] = MappingProxyType(
    {
        "declaration_id": "SB0000001",
        "declared_at": "2024-02-01T10:30:00+05:30",
        "exporter_id": "IEC0001",
        "consignee_id": "CONS001",
        "consignee_country": "NG",
        "destination_country": "NG",
        "port_of_loading": "INNSA",
        "transport_mode": "SEA",
        "hs_code": "300490",
        "goods_description": "tramadol tablets",
        "quantity": 10.5,
        "quantity_unit": "KGM",
        "gross_weight_kg": 12.0,
        "declared_value_usd": 1000.0,
    }
)
EXAMPLE_SEIZURE: Mapping[str, object] = MappingProxyType(
    {
        "seizure_id": "SZ0001",
        "seized_at": "2024-03-01T08:00:00+05:30",
        "declaration_id": "SB0000001",
        "country": "NG",
        "substance": "tramadol",
        "agency": "NCB",
    }
)
EXAMPLE_INSPECTION: Mapping[str, object] = MappingProxyType(
    {"declaration_id": "SB0000001", "inspected_at": "2024-02-02T09:00:00Z", "result": "CLEAN"}
)


def column_names(columns: tuple[Column, ...]) -> list[str]:
    """Names of a table's columns, in contract order."""
    return [c.name for c in columns]


def required_names(columns: tuple[Column, ...]) -> list[str]:
    """Names of a table's required columns."""
    return [c.name for c in columns if c.required]


#: Seizure rows must name at least one of these (reason worded once for both edges).
REASON_NO_LINK = f"none of {', '.join(SEIZURE_LINK_COLUMNS)} is given; a seizure must name at least one"


def max_length(column: Column, request: bool = False) -> int | None:
    """Longest value a text-like column may hold in a file, or with `request` in an HTTP request
    (None: no limit beyond its pattern). A request's limits are never looser than a file's."""
    if column.kind == "id":
        return MAX_ID_LENGTH
    if request and column.name in REQUEST_TEXT_LENGTH:
        return REQUEST_TEXT_LENGTH[column.name]
    return MAX_TEXT_LENGTH.get(column.name)


def earliest_date() -> dt.datetime:
    """The earliest date a contract row may carry (naive UTC)."""
    return dt.datetime.fromisoformat(EARLIEST_DATE)


def latest_date(as_of: dt.datetime | None = None) -> dt.datetime:
    """The latest date a contract row may carry: `as_of` (default now, UTC) plus the tolerance, naive UTC."""
    now = dt.datetime.now(dt.UTC) if as_of is None else as_of
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC).replace(tzinfo=None)
    return now + dt.timedelta(days=FUTURE_TOLERANCE_DAYS)


def columns_by_name(columns: tuple[Column, ...]) -> dict[str, Column]:
    """A table's columns keyed by name."""
    return {c.name: c for c in columns}
