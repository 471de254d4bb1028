"""Request records -> typed contract frames, identical in dtype to what the file validator returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.contract import DECLARATION_COLUMNS, SEIZURE_COLUMNS, Column


def _utc_naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _typed(records: Sequence[dict], columns: tuple[Column, ...]) -> pd.DataFrame:
    data: dict[str, pd.Series] = {}
    for column in columns:
        values = [record.get(column.name) for record in records]
        if column.kind == "datetime":
            data[column.name] = pd.Series(
                np.array([_utc_naive(v) for v in values], dtype="datetime64[us]"), dtype="datetime64[us]"
            )
        elif column.kind == "number":
            data[column.name] = pd.Series(
                np.array([np.nan if v is None else v for v in values], dtype=np.float64), dtype="float64"
            )
        else:
            # empty optional strings mean "none", exactly as in the file validator
            cleaned = [None if v is None or (column.nullable and v == "") else v for v in values]
            data[column.name] = pd.Series(cleaned, dtype="str")
    return pd.DataFrame(data)


def declarations_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Typed declarations frame from request dicts (pydantic `model_dump()` output)."""
    return _typed(records, DECLARATION_COLUMNS)


def seizures_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Typed seizures frame from request dicts."""
    return _typed(records, SEIZURE_COLUMNS)
