"""Request records -> typed contract frames, identical in dtype to what the file validator returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.contract import DECLARATION_COLUMNS, SEIZURE_COLUMNS, Column


def _utc_naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _arrays(
    records: Sequence[dict] | Sequence[BaseModel], columns: tuple[Column, ...]
) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {}
    # validated request models are read field by field, without a dict per record
    as_dicts = (
        [record.__dict__ for record in records] if records and isinstance(records[0], BaseModel) else records
    )
    for column in columns:
        values = [record.get(column.name) for record in as_dicts]
        if column.kind == "datetime":
            data[column.name] = np.array([_utc_naive(v) for v in values], dtype="datetime64[us]")
        elif column.kind == "number":
            data[column.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            # empty optional strings mean "none", exactly as in the file validator
            data[column.name] = np.array(
                [None if v is None or (column.nullable and v == "") else v for v in values], dtype=object
            )
    return data


def _frame(arrays: dict[str, np.ndarray], columns: tuple[Column, ...]) -> pd.DataFrame:
    out = {}
    for column in columns:
        values = arrays[column.name]
        out[column.name] = pd.Series(values, dtype=values.dtype if values.dtype != object else "str")
    return pd.DataFrame(out)


def declaration_columns(records: Sequence[dict] | Sequence[BaseModel]) -> dict[str, np.ndarray]:
    """Declaration columns as numpy arrays (the fast input of `features.definitions.compute_features`).

    `records` are request dicts (`model_dump()` output) or the validated request models themselves.
    """
    return _arrays(records, DECLARATION_COLUMNS)


def declarations_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Typed declarations frame from request dicts (pydantic `model_dump()` output)."""
    return _frame(_arrays(records, DECLARATION_COLUMNS), DECLARATION_COLUMNS)


def seizures_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Typed seizures frame from request dicts."""
    return _frame(_arrays(records, SEIZURE_COLUMNS), SEIZURE_COLUMNS)
