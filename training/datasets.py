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
from features.events import to_seconds
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


def block_bounds(declared_at: pd.Series, blocks: int) -> np.ndarray:
    """Ends (seconds, exclusive) of `blocks` time blocks holding about equal numbers of declarations.

    The last end lies past every declaration. Fewer blocks come back when many
    declarations share one second.
    """
    seconds = np.sort(to_seconds(declared_at))
    if not len(seconds):
        return np.zeros(0, dtype=np.int64)
    inner = seconds[(np.arange(1, max(blocks, 1)) * len(seconds)) // max(blocks, 1)]
    return np.unique(np.append(inner, seconds[-1] + 1)).astype(np.int64)


def block_of(declared_at: pd.Series, ends: np.ndarray) -> np.ndarray:
    """The block (0 .. len(ends) - 1) of each declaration: block k holds [ends[k - 1], ends[k])."""
    return np.searchsorted(ends, to_seconds(declared_at), side="right")


def named_later(declarations: pd.DataFrame, seizures: pd.DataFrame, end_second: int) -> pd.DataFrame:
    """Declarations filed at or after `end_second` that a seizure known before it names."""
    seized = seizures.loc[to_seconds(seizures["seized_at"]) < end_second, "declaration_id"].dropna()
    later = to_seconds(declarations["declared_at"]) >= end_second
    return declarations.loc[later & declarations["declaration_id"].isin(seized).to_numpy()]


def known_before(
    declarations: pd.DataFrame, seizures: pd.DataFrame, end_second: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows a history must hold to answer every declaration filed before `end_second`.

    Seizures known before the end, the declarations filed before it and the (later)
    declarations those seizures name (`named_later`), so each seizure is attributed as in a
    whole build. Everything else happened at or after the end, and a feature reads only
    what was known strictly before its declaration's filing: it changes no answer for the block.
    """
    filed = declarations.loc[to_seconds(declarations["declared_at"]) < end_second]
    seized = seizures.loc[to_seconds(seizures["seized_at"]) < end_second]
    return pd.concat([filed, named_later(declarations, seizures, end_second)]), seized


def block_features(
    rows: pd.DataFrame,
    history_declarations: pd.DataFrame,
    history_seizures: pd.DataFrame,
    reference: ReferenceTables,
) -> pd.DataFrame:
    """Features of one block's `rows` against a history of what was known before the block ends.

    `history_declarations` and `history_seizures` come from `known_before` (any superset
    of them answers the same).
    """
    history = history_in_chunks(compact_declarations(history_declarations), history_seizures, reference)
    return features_in_chunks(compact_declarations(rows), history, reference)


def build_features_by_blocks(
    declarations: pd.DataFrame, seizures: pd.DataFrame, reference: ReferenceTables, blocks: int
) -> pd.DataFrame:
    """`build_features_lean`'s values, computed block by block in this process.

    The plan the Dask engine runs on its workers (`training.distributed`), one block per task.
    """
    ends = block_bounds(declarations["declared_at"], blocks)
    block = block_of(declarations["declared_at"], ends)
    parts = [
        block_features(declarations.loc[block == k], *known_before(declarations, seizures, end), reference)
        for k, end in enumerate(ends)
    ]
    return assemble_blocks(parts, declarations.index)


def assemble_blocks(parts: list[pd.DataFrame], index: pd.Index) -> pd.DataFrame:
    """The blocks' feature frames as one frame in the order of `index`.

    Raises `ValueError` unless the blocks hold every row of `index` exactly once.
    """
    frame = pd.concat(parts) if parts else pd.DataFrame(columns=list(FEATURE_SET.columns), dtype=np.float64)
    if len(frame) != len(index) or frame.index.has_duplicates or not frame.index.isin(index).all():
        raise ValueError(
            f"the feature blocks hold {len(frame):,} rows for {len(index):,} declarations "
            f"({int(frame.index.duplicated().sum()):,} repeated)"
        )
    return frame.reindex(index)
