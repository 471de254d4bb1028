"""Point-in-time features of a whole history in bounded memory.

`compute_features` turns each declaration into Python string objects (its keys, its
attributes) for the as-of lookups; on a whole history at once that costs about a
kilobyte per declaration on top of the index. Two things keep a multi-million-row
history within one machine's memory without changing a single feature value:

- text columns with few distinct values become `category` columns before indexing, so
  every row of a column shares its category's one string object instead of owning a copy
  (`compact_declarations`);
- features are computed in slices of rows against one `History` of all rows, written into
  one preallocated float64 matrix (`features_in_chunks`). A feature is a function of the
  declaration and of what the history knew strictly before it, so slices answer exactly
  as the whole does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definitions import FEATURE_SET, compute_features
from features.history import History
from features.reference import ReferenceTables

#: Declarations per `compute_features` call: about 0.3 GB of transient strings and keys.
CHUNK_ROWS = 250_000
#: Declarations per `History` segment: indexing builds transient keys of about 1 KB each.
HISTORY_CHUNK_ROWS = 2_000_000
#: A text column becomes a category when it has at most this share of distinct values.
CATEGORY_MAX_SHARE = 0.5


def compact_declarations(declarations: pd.DataFrame) -> pd.DataFrame:
    """A copy of the declarations with repetitive text columns as `category` (same values).

    Identifiers that are nearly unique (the declaration id) stay text: a category would
    only add its codes. The input frame is not changed.
    """
    out = {}
    for name, series in declarations.items():
        if pd.api.types.is_string_dtype(series.dtype) and not isinstance(series.dtype, pd.CategoricalDtype):
            distinct = series.nunique(dropna=True)
            if distinct <= CATEGORY_MAX_SHARE * max(len(series), 1):
                # object categories: `to_numpy(dtype=object)` then repeats one string object
                # per category instead of building a new one per row
                categories = pd.Index(series.dropna().unique().to_numpy(dtype=object), dtype=object)
                series = series.astype(pd.CategoricalDtype(categories))
        out[name] = series
    return pd.DataFrame(out, index=declarations.index)


def features_in_chunks(
    declarations: pd.DataFrame,
    history: History,
    reference: ReferenceTables,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """`compute_features(declarations, history, reference)`, computed `chunk_rows` rows at a time.

    Equal to the one-call result value for value (same columns, dtypes, index and NaNs).
    """
    n = len(declarations)
    matrix = np.empty((n, len(FEATURE_SET.columns)), dtype=np.float64)
    columns = None
    for start in range(0, n, chunk_rows):
        part = compute_features(declarations.iloc[start : start + chunk_rows], history, reference)
        matrix[start : start + len(part)] = part.to_numpy(dtype=np.float64)
        columns = part.columns
        del part
    if columns is None:
        return compute_features(declarations, history, reference)
    return pd.DataFrame(matrix, columns=columns, index=declarations.index, copy=False)


def history_in_chunks(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    reference: ReferenceTables,
    chunk_rows: int = HISTORY_CHUNK_ROWS,
) -> History:
    """`History.build(declarations, seizures, reference)`, indexed `chunk_rows` declarations at a time.

    A `History` answers the same whatever segments its rows arrived in, so this answers as
    one build does while only one slice's transient keys exist at a time. The seizures come
    with the last slice, when every declaration they name is known.
    """
    n = len(declarations)
    if n <= chunk_rows:
        return History.build(declarations, seizures, reference)
    starts = range(0, n, chunk_rows)
    history = History()
    for start in starts:
        last = start + chunk_rows >= n
        part = declarations.iloc[start : start + chunk_rows]
        history = history.append(part, seizures if last else None, reference)
    return history


def build_features_lean(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    reference: ReferenceTables,
    chunk_rows: int = CHUNK_ROWS,
    history_chunk_rows: int = HISTORY_CHUNK_ROWS,
) -> pd.DataFrame:
    """Point-in-time features of every declaration against the whole history, in bounded memory."""
    compact = compact_declarations(declarations)
    history = history_in_chunks(compact, seizures, reference, history_chunk_rows)
    return features_in_chunks(compact, history, reference, chunk_rows)
