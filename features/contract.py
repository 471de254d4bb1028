"""The input data contract (see docs/data-contract.md): column names, types and enums.

This module only *describes* the tables. Reading and validating files lives in
`features.validation`; everything downstream relies on the typed frames it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def column_names(columns: tuple[Column, ...]) -> list[str]:
    """Names of a table's columns, in contract order."""
    return [c.name for c in columns]


def required_names(columns: tuple[Column, ...]) -> list[str]:
    """Names of a table's required columns."""
    return [c.name for c in columns if c.required]
