"""Reference tables: controlled HS codes, substance keywords, pharma headings, ports, hubs.

The tables are CSV files packaged under `features/reference/` (sources in
`features/reference/SOURCES.md`). `load_reference()` reads them once per process.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

_FILES = ("controlled_hs", "substance_terms", "pharma_hs", "ports", "hubs")
#: Distinct descriptions remembered by `substance_in_text_array` before its memo starts over.
_TEXT_MEMO_LIMIT = 100_000


@dataclass(frozen=True)
class ReferenceTables:
    """The packaged reference tables, with vectorised look-ups used by features and the generator."""

    controlled_hs: pd.DataFrame
    substance_terms: pd.DataFrame
    pharma_hs: pd.DataFrame
    ports: pd.DataFrame
    hubs: pd.DataFrame

    @functools.cached_property
    def _prefix_to_substance(self) -> dict[str, str]:
        return dict(zip(self.controlled_hs["hs_prefix"], self.controlled_hs["substance"], strict=True))

    @functools.cached_property
    def _term_pattern(self) -> re.Pattern[str]:
        # Longest terms first so that e.g. "4-anpp" wins over "anpp" at the same position.
        terms = sorted(self.substance_terms["term"], key=len, reverse=True)
        alternation = "|".join(re.escape(t) for t in terms)
        # (?<![\w-]) / (?![\w-]) act as word boundaries that also respect hyphenated terms.
        return re.compile(rf"(?i)(?<![\w-])({alternation})(?![\w-])")

    @functools.cached_property
    def _term_to_substance(self) -> dict[str, str]:
        return dict(zip(self.substance_terms["term"], self.substance_terms["substance"], strict=True))

    def controlled_substance(self, hs_codes: pd.Series) -> pd.Series:
        """Controlled substance for each HS code (match on the first 6, then the first 4 digits); NA otherwise."""
        codes = hs_codes.astype("str")
        mapping = self._prefix_to_substance
        by6 = codes.str.slice(0, 6).map(mapping)
        by4 = codes.str.slice(0, 4).map(mapping)
        return by6.fillna(by4).astype("str").rename("controlled_substance")

    def is_controlled(self, hs_codes: pd.Series) -> np.ndarray:
        """True where the HS code falls under a controlled prefix."""
        return self.controlled_substance(hs_codes).notna().to_numpy(dtype=bool)

    def substance_in_text(self, descriptions: pd.Series) -> pd.Series:
        """First controlled-substance term named in each description (case-insensitive, whole word); NA otherwise."""
        # Descriptions repeat heavily (templates, cover goods): match each distinct text once.
        codes, uniques = pd.factorize(descriptions.astype("str"), use_na_sentinel=True)
        found = pd.Series(uniques).str.extract(self._term_pattern, expand=False)
        substance = found.str.lower().map(self._term_to_substance).to_numpy(dtype=object)
        values = np.full(len(codes), None, dtype=object)
        named = codes >= 0
        values[named] = substance[codes[named]]
        return pd.Series(values, index=descriptions.index, dtype="str").rename("substance_in_text")

    def controlled_substance_array(self, hs_codes: np.ndarray) -> np.ndarray:
        """`controlled_substance` on an object array (None where not controlled); fast for small batches."""
        mapping = self._prefix_to_substance
        return np.array(
            [None if c is None else mapping.get(c[:6], mapping.get(c[:4])) for c in hs_codes], dtype=object
        )

    def substance_in_text_array(self, descriptions: np.ndarray) -> np.ndarray:
        """`substance_in_text` on an object array (None where none is named)."""
        if len(descriptions) > 4096:
            found = self.substance_in_text(pd.Series(descriptions, dtype="str"))
            return found.to_numpy(dtype=object, na_value=None)
        memo = self._text_memo
        if len(memo) > _TEXT_MEMO_LIMIT:
            memo.clear()
        out = np.empty(len(descriptions), dtype=object)
        for i, text in enumerate(descriptions):
            try:
                out[i] = memo[text]
            except KeyError:
                out[i] = memo[text] = self._substance_named_in(text)
        return out

    def _substance_named_in(self, text: str | None) -> str | None:
        if not text:
            return None
        match = self._term_pattern.search(text)
        return None if match is None else self._term_to_substance.get(match.group(1).lower())

    @functools.cached_property
    def _text_memo(self) -> dict[str | None, str | None]:
        # Service batches repeat descriptions (templates, cover goods): each text is matched once.
        return {}

    @functools.cached_property
    def hub_set(self) -> frozenset[str]:
        return frozenset(self.hubs["country"])

    @property
    def hub_countries(self) -> frozenset[str]:
        """ISO alpha-2 codes of transshipment hub countries."""
        return frozenset(self.hubs["country"])


def _read(name: str) -> pd.DataFrame:
    path = resources.files("features").joinpath("reference", f"{name}.csv")
    with path.open("r", encoding="utf-8") as handle:
        # All columns as strings (HS prefixes keep leading zeros); numbers converted below.
        frame = pd.read_csv(handle, dtype=str, keep_default_na=False)
    if "typical_unit_value_usd" in frame:
        frame["typical_unit_value_usd"] = frame["typical_unit_value_usd"].astype(float)
    return frame


@functools.cache
def load_reference() -> ReferenceTables:
    """Read the packaged reference CSVs (once per process)."""
    return ReferenceTables(**{name: _read(name) for name in _FILES})
