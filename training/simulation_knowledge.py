"""What a simulated strategy knows of seizures: what its own inspections found, plus outside reports.

In the file every seizure is known to everybody. At a real border customs learns that one of
its own declarations was seized only when its inspection found it, or when someone else
reports it (a partner agency abroad, an intelligence report). The seizure-history features
(exporter and consignee seizures, broker, destination and heading seizure rates) must then be
computed, per strategy, from the seizures that strategy would know.

A seizure is *withheld* (known to a strategy only once the strategy inspected the declaration it
names) when it names a declaration filed within the simulated period and, under
`own_and_partner`, was seized in the country the goods were loaded in (a seizure abroad is
reported by the partner agency whether or not customs inspected). Every other seizure — those of
declarations filed before the period, and reports naming only an exporter or consignee — is
known to every strategy from its `seized_at`, as in the file. Under `all` nothing is withheld
(the file's view, used to compare).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from features.definitions import FEATURE_SET, compute_features
from features.history import History
from features.reference import ReferenceTables
from models.baselines import red_flag_scores

SeizureKnowledgeMode = Literal["all", "own_and_partner", "own_inspections"]
KNOWLEDGE_MODES: tuple[str, ...] = ("all", "own_and_partner", "own_inspections")


def withheld_seizures(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    in_period: np.ndarray,
    mode: SeizureKnowledgeMode,
) -> tuple[np.ndarray, np.ndarray]:
    """(mask over `seizures` of the withheld ones, row of the declaration each seizure names or -1)."""
    ids = pd.Index(declarations["declaration_id"].astype("str"))
    named = seizures["declaration_id"].astype("str")
    row = ids.get_indexer(named.where(seizures["declaration_id"].notna(), "\x00"))
    if mode == "all":
        return np.zeros(len(seizures), dtype=bool), row
    if mode not in KNOWLEDGE_MODES:
        raise ValueError(f"unknown seizure knowledge {mode!r}; choose from {', '.join(KNOWLEDGE_MODES)}")
    withheld = (row >= 0) & in_period[np.maximum(row, 0)]
    if mode == "own_and_partner":
        loading_country = declarations["port_of_loading"].astype("str").str[:2].to_numpy(dtype=object)
        seized_in = seizures["country"].astype("str").to_numpy(dtype=object)
        withheld &= seized_in == loading_country[np.maximum(row, 0)]
    return withheld, row


@dataclass(frozen=True)
class SeizureKnowledge:
    """The base history every strategy knows, and the seizures each inspection reveals."""

    declarations: pd.DataFrame  # contract rows, aligned with `SimulationData`
    reference: ReferenceTables
    base: History  # every declaration, and the seizures known to every strategy
    withheld: pd.DataFrame  # seizures a strategy learns only by inspecting their declaration
    withheld_row: np.ndarray  # row (into `declarations`) each withheld seizure names
    mode: str

    @classmethod
    def build(
        cls,
        declarations: pd.DataFrame,
        seizures: pd.DataFrame,
        reference: ReferenceTables,
        in_period: np.ndarray,
        mode: SeizureKnowledgeMode,
    ) -> SeizureKnowledge:
        withheld, row = withheld_seizures(declarations, seizures, in_period, mode)
        base = History.build(declarations, seizures.loc[~withheld], reference)
        return cls(
            declarations=declarations,
            reference=reference,
            base=base,
            withheld=seizures.loc[withheld],
            withheld_row=row[withheld],
            mode=mode,
        )

    @property
    def withholds_anything(self) -> bool:
        return len(self.withheld) > 0

    def reveal(self, history: History, inspected_rows: np.ndarray) -> History:
        """`history` plus the withheld seizures naming the declarations just inspected."""
        found = np.isin(self.withheld_row, inspected_rows)
        if not found.any():
            return history
        return history.append(None, self.withheld.loc[found], self.reference)

    def features(self, history: History, rows: np.ndarray) -> pd.DataFrame:
        """Point-in-time features of declarations `rows` against what `history` knows."""
        frame = compute_features(self.declarations.iloc[rows], history, self.reference)
        return frame[list(FEATURE_SET.columns)]


@dataclass
class ArmView:
    """One strategy's knowledge: its history (base + what it found) and its features of the period."""

    knowledge: SeizureKnowledge
    history: History
    position: np.ndarray  # row -> position among the period's rows (-1 outside)
    features: np.ndarray  # period rows x FEATURE_SET.columns, as this strategy computed them
    seconds: float = 0.0

    @classmethod
    def start(cls, knowledge: SeizureKnowledge, week_index: np.ndarray) -> ArmView:
        in_period = week_index >= 0
        position = np.where(in_period, np.cumsum(in_period) - 1, -1)
        features = np.full((int(in_period.sum()), len(FEATURE_SET.columns)), np.nan)
        return cls(knowledge, knowledge.base, position, features)

    def see_week(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and red-flag points of this week's declarations, from what the strategy knows."""
        t0 = time.perf_counter()
        frame = self.knowledge.features(self.history, rows)
        values = frame.to_numpy(dtype=np.float64)
        self.features[self.position[rows]] = values
        self.seconds += time.perf_counter() - t0
        return values, red_flag_scores(frame)

    def inspected(self, rows: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.history = self.knowledge.reveal(self.history, rows)
        self.seconds += time.perf_counter() - t0

    def features_of(self, rows: np.ndarray, shared: np.ndarray) -> np.ndarray:
        """Training rows: the period's as this strategy saw them, earlier ones as everybody did."""
        x = shared[rows].copy()
        mine = self.position[rows] >= 0
        x[mine] = self.features[self.position[rows[mine]]]
        return x
