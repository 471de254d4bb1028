"""Request records -> typed contract frames, identical in dtype to what the file validator returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.contract import DECLARATION_COLUMNS, SEIZURE_COLUMNS, Column

_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)


def _utc_microseconds(values: Sequence[dt.datetime | None]) -> np.ndarray:
    """Times as UTC `datetime64[us]` (aware ones converted; naive ones are UTC already; None -> NaT)."""
    micros = np.array(
        [
            np.iinfo(np.int64).min  # NaT
            if v is None
            else (v - (_EPOCH_UTC if v.tzinfo is not None else _EPOCH_NAIVE)) // _MICROSECOND
            for v in values
        ],
        dtype=np.int64,
    )
    return micros.view("datetime64[us]")


def _arrays(
    records: Sequence[dict] | Sequence[BaseModel], columns: tuple[Column, ...]
) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {}
    for column, values in zip(columns, _transposed(records, columns), strict=True):
        if column.kind == "datetime":
            data[column.name] = _utc_microseconds(values)
        elif column.kind == "number":
            try:  # validated numbers: one C-level conversion
                data[column.name] = np.array(values, dtype=np.float64)
            except TypeError:  # some missing (None)
                data[column.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            array = np.array(values, dtype=object)
            if column.nullable and len(array):
                # empty optional strings mean "none", exactly as in the file validator
                array[array == ""] = None
            data[column.name] = array
    return data


def _transposed(records: Sequence[dict] | Sequence[BaseModel], columns: tuple[Column, ...]) -> list[tuple]:
    """Each column's values across the records, in `columns` order."""
    names = [column.name for column in columns]
    if (
        records
        and isinstance(records[0], BaseModel)
        and list(type(records[0]).model_fields)[: len(names)] == names
    ):
        # validated request models hold every field, in declaration order: transpose in C
        width = len(names)
        return list(zip(*[tuple(record.__dict__.values())[:width] for record in records], strict=True))
    as_dicts = (
        [record.__dict__ for record in records] if records and isinstance(records[0], BaseModel) else records
    )
    return [tuple(record.get(name) for record in as_dicts) for name in names]


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
