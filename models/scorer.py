"""The scoring object: feature rows in; calibrated score, percentile, channel and reasons out.

Training builds it, MLflow stores it (booster text + a JSON document), and the service
loads it. Offline backtests and the live service call the same `score` method, so the
two cannot disagree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.attribution import LeafAttribution
from models.estimator import PlattCalibration
from models.reasons import sentence

CHANNELS = ("RED", "YELLOW", "GREEN")
MAX_REASONS = 5


@dataclass(frozen=True)
class InspectionPolicy:
    """Score thresholds for the RED and YELLOW channels, derived from inspection rates."""

    red_rate: float
    yellow_rate: float
    red_threshold: float
    yellow_threshold: float
    #: Mandatory rules: a rule hit sends the declaration to RED whatever the score.
    mandatory_red_rules: tuple[str, ...] = ("controlled_without_authorisation",)

    @classmethod
    def from_scores(
        cls,
        reference_scores: np.ndarray,
        red_rate: float,
        yellow_rate: float,
        mandatory_red_rules: Sequence[str],
    ) -> InspectionPolicy:
        """Thresholds so that `red_rate` (and `red_rate + yellow_rate`) of reference scores exceed them."""
        scores = np.asarray(reference_scores, dtype=np.float64)
        red = float(np.quantile(scores, 1.0 - red_rate))
        yellow = float(np.quantile(scores, 1.0 - red_rate - yellow_rate))
        return cls(red_rate, yellow_rate, red, min(yellow, red), tuple(mandatory_red_rules))

    def channels(self, scores: np.ndarray, rule_red: np.ndarray) -> np.ndarray:
        out = np.where(
            scores >= self.red_threshold, "RED", np.where(scores >= self.yellow_threshold, "YELLOW", "GREEN")
        )
        return np.where(rule_red, "RED", out)


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float | None
    contribution: float
    sentence: str


@dataclass
class ScoredBatch:
    """Scores of a batch of declarations, in input order."""

    raw_score: np.ndarray
    risk_score: np.ndarray
    percentile: np.ndarray
    channel: np.ndarray
    rule_hits: list[list[str]]
    contributions: np.ndarray | None = None
    #: Per row, its reasons as plain dicts (`Reason` fields): what the service sends and audits.
    reason_dicts: list[list[dict]] = field(default_factory=list)

    @property
    def reasons(self) -> list[list[Reason]]:
        """Per row, its reasons as `Reason` objects."""
        return [[Reason(**reason) for reason in row] for row in self.reason_dicts]


@dataclass
class DiversionScorer:
    """LightGBM booster + Platt calibration + inspection policy + leaf attributions."""

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    calibration: PlattCalibration
    policy: InspectionPolicy
    reference_quantiles: np.ndarray  # sorted calibrated training-period scores (quantiles)
    metadata: dict = field(default_factory=dict)
    attribution_: LeafAttribution | None = None

    @property
    def attribution(self) -> LeafAttribution:
        if self.attribution_ is None:
            self.attribution_ = LeafAttribution.from_booster(self.booster)
        return self.attribution_

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        if tuple(features.columns) != self.feature_names:
            features = features.loc[:, list(self.feature_names)]
        return np.ascontiguousarray(features.to_numpy(dtype=np.float64))

    @staticmethod
    def _threads(n_rows: int) -> int:
        # OpenMP start-up costs more than it saves on small batches
        return 1 if n_rows < 2000 else 0

    def raw_scores(self, features: pd.DataFrame) -> np.ndarray:
        matrix = self._matrix(features)
        return self.booster.predict(matrix, raw_score=True, num_threads=self._threads(len(matrix)))

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated diversion probability per feature row."""
        return self.calibration(self.raw_scores(features))

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Percent of training-period declarations scoring below each score."""
        ranks = np.searchsorted(self.reference_quantiles, scores, side="right")
        return 100.0 * ranks / len(self.reference_quantiles)

    def rule_hits(self, features: pd.DataFrame) -> list[list[str]]:
        rules = self.policy.mandatory_red_rules
        present = [rule for rule in rules if rule in features]
        if not present:
            return [[] for _ in range(len(features))]
        stacked = np.column_stack([features[rule].to_numpy() > 0 for rule in present])
        return [[present[j] for j in np.flatnonzero(row)] for row in stacked]

    def _rule_hits(self, features: pd.DataFrame, matrix: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
        """`rule_hits` plus a RED flag per row, reading model features from `matrix` (no pandas lookups)."""
        rules = self.policy.mandatory_red_rules
        n_rows = len(matrix)
        flags: list[np.ndarray] = []
        columns: frozenset[str] | None = None
        present: list[str] = []
        for rule in rules:
            if rule in self.feature_names:  # then `_matrix` holds it, as float64
                flags.append(matrix[:, self.feature_names.index(rule)] > 0)
            else:
                columns = frozenset(features.columns) if columns is None else columns
                if rule not in columns:
                    continue
                flags.append(features[rule].to_numpy() > 0)
            present.append(rule)
        if not flags:
            return [[] for _ in range(n_rows)], np.zeros(n_rows, dtype=bool)
        stacked = np.column_stack(flags)
        red = stacked.any(axis=1)
        if not red.any():
            return [[] for _ in range(n_rows)], red
        # column j of `stacked` is the rule present[j]; only the (few) rows with a hit are spelt out
        hits: list[list[str]] = [[] for _ in range(n_rows)]
        for i, row in zip(np.flatnonzero(red).tolist(), stacked[red].tolist(), strict=True):
            hits[i] = [rule for rule, hit in zip(present, row, strict=True) if hit]
        return hits, red

    def score(
        self,
        features: pd.DataFrame,
        contexts: Sequence[Mapping[str, object]] | None = None,
        explain: bool = True,
    ) -> ScoredBatch:
        """Score feature rows; with `explain`, add up to five reasons per row."""
        matrix = self._matrix(features)
        threads = self._threads(len(matrix))
        raw = self.booster.predict(matrix, raw_score=True, num_threads=threads)
        risk = self.calibration(raw)
        hits, rule_red = self._rule_hits(features, matrix)
        batch = ScoredBatch(
            raw_score=raw,
            risk_score=risk,
            percentile=self.percentile(risk),
            channel=self.policy.channels(risk, rule_red),
            rule_hits=hits,
        )
        if explain:
            leaves = self.booster.predict(matrix, pred_leaf=True, num_threads=threads)
            contributions = self.attribution.contributions(leaves)
            batch.contributions = contributions
            batch.reason_dicts = self._reasons(matrix, contributions, contexts)
        return batch

    def _reasons(
        self, matrix: np.ndarray, contributions: np.ndarray, contexts: Sequence[Mapping[str, object]] | None
    ) -> list[list[dict]]:
        # The top MAX_REASONS features by contribution (argsort of the negated contributions);
        # a row's reasons stop at its first non-positive contribution. Selection and gathers
        # are vectorised; Python builds only the picked reasons, in one flat pass.
        order = np.argsort(-contributions, axis=1)[:, :MAX_REASONS]
        top = np.take_along_axis(contributions, order, axis=1)
        keep = np.cumprod(top > 0, axis=1).astype(bool)
        rows, ranks = np.nonzero(keep)  # row-major: each row's reasons in rank order
        picked = order[rows, ranks]
        names = np.asarray(self.feature_names, dtype=object)[picked].tolist()
        values = matrix[rows, picked].tolist()
        # rounded to 6 decimals in one vectorised pass (numpy rounds halfway cases from the
        # scaled value, so a rare tie may differ from `round()` in the sixth decimal)
        shares = np.round(top[rows, ranks], 6).tolist()
        isnan = math.isnan
        empty: Mapping[str, object] = {}
        context_of = [contexts[r] for r in rows.tolist()] if contexts is not None else [empty] * len(names)
        flat = [
            {
                "feature": name,
                "value": None if isnan(value) else value,
                "contribution": share,
                "sentence": sentence(name, value, context),
            }
            for name, value, share, context in zip(names, values, shares, context_of, strict=True)
        ]
        ends = np.cumsum(keep.sum(axis=1)).tolist()
        starts = [0, *ends[:-1]]
        return [flat[a:b] for a, b in zip(starts, ends, strict=True)]

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write `booster.txt` and `scorer.json` into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "booster.txt"))
        document = {
            "feature_names": list(self.feature_names),
            "calibration": asdict(self.calibration),
            "policy": asdict(self.policy),
            "reference_quantiles": self.reference_quantiles.tolist(),
            "metadata": self.metadata,
        }
        (directory / "scorer.json").write_text(json.dumps(document, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> DiversionScorer:
        document = json.loads((Path(directory) / "scorer.json").read_text())
        policy = document["policy"]
        policy["mandatory_red_rules"] = tuple(policy["mandatory_red_rules"])
        return cls(
            booster=lgb.Booster(model_file=str(Path(directory) / "booster.txt")),
            feature_names=tuple(document["feature_names"]),
            calibration=PlattCalibration(**document["calibration"]),
            policy=InspectionPolicy(**policy),
            reference_quantiles=np.asarray(document["reference_quantiles"], dtype=np.float64),
            metadata=document["metadata"],
        )
