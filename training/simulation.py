"""Week-by-week inspection-budget simulation of selection strategies (`python -m training simulate`).

Customs learns the outcome only of what it inspects. Each simulated week, every strategy
scores that week's declarations with its current model, inspects `inspection_rate` of
them, and learns the label (seized within the contract's label window) of those it
inspected and of nothing else. Model strategies retrain every `retrain_every_weeks` on
what they have learned so far plus the initial period's labels (history before the
simulation, treated as known). Features are point-in-time, so they are computed once.

Results are normalised against an oracle that inspects the true positives first: a
strategy's normalised precision of 1.0 means no selection at that budget could do better.
See docs/simulation.md.
"""

from __future__ import annotations

import math
import os
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features.contract import LABEL_WINDOW_DAYS
from features.definitions import FEATURE_SET
from models.baselines import red_flag_scores
from models.estimator import BoosterParams
from training.labels import declaration_labels
from training.simulation_knowledge import ArmView, SeizureKnowledge, SeizureKnowledgeMode

console = Console(width=None if Console().is_terminal else 160)

#: Strategy names, in display order.
RANDOM = "random"
RED_FLAG = "red_flag_rules"
MODEL_ONLY = "model_only"
MODEL_RANDOM = "model_random_exploration"
MODEL_UNCERTAINTY = "model_uncertainty_exploration"
ORACLE = "oracle"
STRATEGIES: tuple[str, ...] = (RANDOM, RED_FLAG, MODEL_ONLY, MODEL_RANDOM, MODEL_UNCERTAINTY, ORACLE)
MODEL_STRATEGIES: tuple[str, ...] = (MODEL_ONLY, MODEL_RANDOM, MODEL_UNCERTAINTY)

#: How a model treats declarations nobody inspected.
INSPECTED_ONLY = "inspected_only"
UNKNOWN_AS_NEGATIVE = "unknown_as_negative"
LABEL_MODES: tuple[str, ...] = (INSPECTED_ONLY, UNKNOWN_AS_NEGATIVE)

LabelMode = Literal["inspected_only", "unknown_as_negative"]


class SimulationConfig(BaseModel):
    """Everything that determines a simulation run besides the data (loaded from TOML, logged)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inspection_rate: float = Field(
        0.05, gt=0.0, lt=1.0, description="share of each week's declarations inspected"
    )
    exploration_share: float = Field(0.10, ge=0.0, le=1.0, description="share of the budget spent exploring")
    retrain_every_weeks: int = Field(4, gt=0)
    weeks: int = Field(52, gt=0, description="simulated weeks, ending at the last date with mature labels")
    end: date | None = Field(
        None, description="end of the simulated period (default: data end minus label window)"
    )
    seed: int = 42
    strategies: tuple[str, ...] = STRATEGIES
    label_mode: LabelMode = INSPECTED_ONLY
    compare_label_modes_for: tuple[str, ...] = Field(
        (MODEL_ONLY, MODEL_RANDOM),
        description="model strategies also run with the other label mode, side by side",
    )
    negative_sample_rate: float = Field(
        0.2, gt=0.0, le=1.0, description="share of negative (or unknown) rows kept per retrain, re-weighted"
    )
    booster: dict = Field(default_factory=dict, description="overrides of the simulation's BoosterParams")
    seizure_knowledge: SeizureKnowledgeMode = Field(
        "own_and_partner",
        description="seizures a strategy's features see: own_and_partner (its own inspections' finds, "
        "seizures abroad and every report known to all), own_inspections, or all (the whole file)",
    )
    label_window_days: int = Field(LABEL_WINDOW_DAYS, gt=0)
    output_dir: Path = Path("outputs/simulation")
    tracking_uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    experiment: str = "diversion-risk-simulation"

    @field_validator("strategies", "compare_label_modes_for")
    @classmethod
    def _known_strategies(cls, value: tuple[str, ...], info) -> tuple[str, ...]:
        allowed = STRATEGIES if info.field_name == "strategies" else MODEL_STRATEGIES
        unknown = [name for name in value if name not in allowed]
        if unknown:
            raise ValueError(f"unknown strategy {unknown}; choose from {', '.join(allowed)}")
        return value

    def booster_params(self) -> BoosterParams:
        """Modest LightGBM settings: retrained many times, no early stopping.

        One thread: on a shared 2-core machine, two OpenMP threads spin-wait on each other and
        a 200-round fit on a few thousand rows went from 0.5 s to 3-13 s.
        """
        defaults = {"max_rounds": 200, "learning_rate": 0.1, "num_threads": 1, "seed": self.seed}
        return BoosterParams(**{**defaults, **self.booster})

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> SimulationConfig:
        """Defaults, then a TOML file (if given), then explicit overrides."""
        values: dict[str, object] = {}
        if path is not None:
            values.update(tomllib.loads(Path(path).read_text()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class SimulationData:
    """What the simulation needs per declaration, as aligned numpy arrays."""

    declared_at: np.ndarray  # datetime64
    features: np.ndarray  # float64, FEATURE_SET.columns order
    red_flag: np.ndarray  # officer point score
    diverted: np.ndarray  # bool, contract label (seized within the label window), the hidden truth
    seized_kg: np.ndarray  # float
    exporter: np.ndarray  # int codes of exporter_id
    declaration_id: np.ndarray  # str, for the inspections log

    @classmethod
    def from_tables(
        cls,
        declarations: pd.DataFrame,
        seizures: pd.DataFrame,
        features: pd.DataFrame,
        label_window_days: int,
    ) -> SimulationData:
        labels = declaration_labels(declarations, seizures, label_window_days)
        columns = list(FEATURE_SET.columns)
        return cls(
            declared_at=declarations["declared_at"].to_numpy(dtype="datetime64[us]"),
            features=features[columns].to_numpy(dtype=np.float64),
            red_flag=red_flag_scores(features),
            diverted=labels.diverted,
            seized_kg=labels.seized_kg,
            exporter=pd.factorize(declarations["exporter_id"].astype("str"))[0],
            declaration_id=declarations["declaration_id"].astype("str").to_numpy(dtype=object),
        )


@dataclass(frozen=True)
class Arm:
    """One strategy run under one label mode."""

    strategy: str
    label_mode: str
    primary: bool  # False for the label-mode comparison variants

    @property
    def name(self) -> str:
        return self.strategy if self.primary else f"{self.strategy} ({self.label_mode})"

    @property
    def uses_model(self) -> bool:
        return self.strategy in MODEL_STRATEGIES


@dataclass
class SimulationResult:
    """Weekly and summary metrics, plus per-arm masks over all declarations (for audits and tests)."""

    config: SimulationConfig
    period_from: pd.Timestamp
    period_to: pd.Timestamp
    weekly: pd.DataFrame
    summary: pd.DataFrame
    inspected: dict[str, np.ndarray]  # declarations the arm inspected
    trained_on: dict[str, np.ndarray]  # simulation-period declarations that entered any of its fits
    trained_positive: dict[str, np.ndarray]  # ... of them, those it trained on as diverted
    week_index: np.ndarray  # simulated week of each declaration, -1 outside the period
    fits: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    #: Per arm with its own seizure knowledge: the period's features as that arm computed them.
    period_features: dict[str, np.ndarray] = field(default_factory=dict)


def arms_of(config: SimulationConfig) -> list[Arm]:
    """The strategies of one run, then the label-mode comparison variants."""
    other = UNKNOWN_AS_NEGATIVE if config.label_mode == INSPECTED_ONLY else INSPECTED_ONLY
    arms = [Arm(name, config.label_mode, True) for name in config.strategies]
    arms += [Arm(name, other, False) for name in config.compare_label_modes_for if name in config.strategies]
    return arms


def simulation_period(
    declared_at: np.ndarray, weeks: int, label_window_days: int, end: date | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the simulated weeks: by default the last `weeks` whose labels are mature."""
    last = pd.Timestamp(declared_at.max())
    period_to = (
        pd.Timestamp(end) if end is not None else (last - pd.Timedelta(days=label_window_days)).floor("D")
    )
    period_from = period_to - pd.Timedelta(weeks=weeks)
    first = pd.Timestamp(declared_at.min())
    if period_from <= first:
        raise ValueError(
            f"the simulated period starts {period_from.date()}, before the history's first declaration "
            f"({first.date()}): there is nothing to train the first model on; simulate fewer weeks or supply "
            "a longer history"
        )
    return period_from, period_to


def week_of(declared_at: np.ndarray, period_from: pd.Timestamp, weeks: int) -> np.ndarray:
    """Simulated week (0-based) of each declaration; -1 outside the period."""
    elapsed = (declared_at - np.datetime64(period_from.to_datetime64(), "us")) / np.timedelta64(7, "D")
    week = np.floor(elapsed).astype(np.int64)
    return np.where((week >= 0) & (week < weeks), week, -1)


def budget(week_size: int, inspection_rate: float) -> int:
    """Inspections available in a week: ceil(rate x declarations)."""
    return min(week_size, math.ceil(round(inspection_rate * week_size, 9)))


def training_rows(
    filed_before: np.ndarray, known: np.ndarray, diverted: np.ndarray, label_mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels a model may train on.

    `inspected_only`: declarations whose outcome is known (initial period or inspected).
    `unknown_as_negative`: every declaration filed so far; those not inspected count as clean
    (the naive reading of an inspection log, biased against what nobody looked at).
    """
    if label_mode == INSPECTED_ONLY:
        rows = np.flatnonzero(filed_before & known)
    elif label_mode == UNKNOWN_AS_NEGATIVE:
        rows = np.flatnonzero(filed_before)
    else:
        raise ValueError(f"unknown label_mode {label_mode!r}; choose from {', '.join(LABEL_MODES)}")
    return rows, diverted[rows] & known[rows]


@dataclass(frozen=True)
class Ranker:
    """A booster and, for uncertainty exploration, per-leaf outcome counts of its training rows."""

    booster: lgb.Booster
    leaf_positives: list[np.ndarray]
    leaf_totals: list[np.ndarray]
    prior_rate: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        return self.booster.predict(features)

    def predictive_variance(self, features: np.ndarray) -> np.ndarray:
        """Mean over trees of the Beta-posterior variance of the leaf's diverted rate.

        High where the training rows that share a leaf are few or mixed: regions the model
        has little evidence about (new routes, new exporters), not just high scores.
        """
        leaves = self.booster.predict(features, pred_leaf=True).astype(np.int64)
        strength = 2.0
        a, b = strength * self.prior_rate, strength * (1.0 - self.prior_rate)
        total = np.zeros(len(features))
        for tree, (pos, tot) in enumerate(zip(self.leaf_positives, self.leaf_totals, strict=True)):
            n, k = tot[leaves[:, tree]], pos[leaves[:, tree]]
            mean = (k + a) / (n + a + b)
            total += mean * (1.0 - mean) / (n + a + b + 1.0)
        return total / max(len(self.leaf_totals), 1)


def fit_ranker(
    features: np.ndarray,
    diverted: np.ndarray,
    params: BoosterParams,
    negative_sample_rate: float,
    seed: int,
    with_leaf_counts: bool = False,
) -> Ranker:
    """LightGBM on all positives and a weighted sample of negatives (fixed rounds, no early stopping)."""
    rng = np.random.default_rng(seed)
    keep = diverted | (rng.random(len(diverted)) < negative_sample_rate)
    x, y = features[keep], diverted[keep]
    weight = np.where(y, 1.0, 1.0 / negative_sample_rate)
    categorical = [FEATURE_SET.columns.index(c) for c in FEATURE_SET.categorical]
    dataset = lgb.Dataset(
        x, label=y.astype(np.float64), weight=weight, feature_name=list(FEATURE_SET.columns),
        categorical_feature=categorical, free_raw_data=True,
    )  # fmt: skip
    booster = lgb.train(params.lightgbm(), dataset, num_boost_round=params.max_rounds)
    positives, totals = [], []
    if with_leaf_counts:
        leaves = booster.predict(x, pred_leaf=True).astype(np.int64)
        for tree in range(leaves.shape[1]):
            size = int(leaves[:, tree].max()) + 1
            totals.append(np.bincount(leaves[:, tree], weights=weight, minlength=size))
            positives.append(np.bincount(leaves[:, tree], weights=y.astype(np.float64), minlength=size))
    prior = float(y.sum() / weight.sum()) if len(y) else 0.0
    return Ranker(booster, positives, totals, prior)


def select(
    strategy: str,
    rows: np.ndarray,
    k: int,
    data: SimulationData,
    ranker: Ranker | None,
    exploration_share: float,
    rng: np.random.Generator,
    features: np.ndarray | None = None,
    red_flag: np.ndarray | None = None,
) -> np.ndarray:
    """Indices (into the full data) of the `k` declarations of `rows` the strategy inspects.

    `features` and `red_flag` are those of `rows` as the strategy sees them (default: the
    data's, computed with every seizure in the file).
    """
    features = data.features[rows] if features is None else features
    red_flag = data.red_flag[rows] if red_flag is None else red_flag
    if strategy == RANDOM:
        return rows[rng.permutation(len(rows))[:k]]
    if strategy == RED_FLAG:
        return rows[np.argsort(-red_flag, kind="stable")[:k]]
    if strategy == ORACLE:
        # True positives first, the largest seized quantity first among them.
        key = np.where(data.diverted[rows], 1.0 + data.seized_kg[rows], 0.0)
        return rows[np.argsort(-key, kind="stable")[:k]]
    scores = ranker.scores(features)
    order = np.argsort(-scores, kind="stable")
    if strategy == MODEL_ONLY:
        return rows[order[:k]]
    explore = int(round(exploration_share * k))
    exploit, rest = order[: k - explore], order[k - explore :]
    if strategy == MODEL_RANDOM:
        explored = rng.choice(rest, size=explore, replace=False) if explore else rest[:0]
    elif strategy == MODEL_UNCERTAINTY:
        variance = ranker.predictive_variance(features[rest]) if explore else np.zeros(0)
        explored = rest[np.argsort(-variance, kind="stable")[:explore]]
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return rows[np.concatenate([exploit, explored])]


def simulate(
    data: SimulationData,
    config: SimulationConfig,
    progress: bool = False,
    knowledge: SeizureKnowledge | None = None,
) -> SimulationResult:
    """Run every configured strategy over the simulated weeks; metrics per week and overall.

    Without `knowledge` (or when it withholds nothing) every strategy sees `data.features`,
    computed with every seizure in the file. With it, each strategy that reads features sees
    the seizures its own inspections found plus those known to all (`SeizureKnowledge`), and
    its features of each week's declarations are computed from that.
    """
    started = time.perf_counter()
    period_from, period_to = simulation_period(
        data.declared_at, config.weeks, config.label_window_days, config.end
    )
    weeks = int(round((period_to - period_from) / pd.Timedelta(weeks=1)))
    week_index = week_of(data.declared_at, period_from, weeks)
    initial = data.declared_at < np.datetime64(period_from.to_datetime64(), "us")
    arms = arms_of(config)
    params = config.booster_params()
    n = len(data.diverted)

    inspected = {arm.name: np.zeros(n, dtype=bool) for arm in arms}
    trained_on = {arm.name: np.zeros(n, dtype=bool) for arm in arms}
    trained_positive = {arm.name: np.zeros(n, dtype=bool) for arm in arms}
    rngs = {arm.name: np.random.default_rng([config.seed, i]) for i, arm in enumerate(arms)}
    rankers: dict[str, Ranker | None] = {arm.name: None for arm in arms}
    exporters_seen = {arm.name: np.zeros(data.exporter.max() + 1 if n else 0, dtype=bool) for arm in arms}
    fits = 0
    fit_seconds = 0.0
    shared_initial: dict[tuple[str, bool], Ranker] = {}
    views = (
        {
            arm.name: ArmView.start(knowledge, week_index)
            for arm in arms
            if arm.strategy not in (RANDOM, ORACLE)
        }
        if knowledge is not None and knowledge.withholds_anything
        else {}
    )

    def retrain(arm: Arm, week: int) -> Ranker:
        nonlocal fits, fit_seconds
        before = initial | ((week_index >= 0) & (week_index < week))
        known = initial | inspected[arm.name]
        rows, labels = training_rows(before, known, data.diverted, arm.label_mode)
        in_period = rows[~initial[rows]]
        trained_on[arm.name][in_period] = True
        trained_positive[arm.name][in_period[labels[~initial[rows]]]] = True
        t0 = time.perf_counter()
        x = views[arm.name].features_of(rows, data.features) if arm.name in views else data.features[rows]
        ranker = fit_ranker(
            x, labels, params, config.negative_sample_rate, config.seed + week,
            with_leaf_counts=arm.strategy == MODEL_UNCERTAINTY,
        )  # fmt: skip
        fit_seconds += time.perf_counter() - t0
        fits += 1
        return ranker

    records: list[dict] = []
    bar = _progress() if progress else None
    task = bar.add_task("simulating weeks", total=weeks) if bar else None
    try:
        if bar:
            bar.start()
        for week in range(weeks):
            rows = np.flatnonzero(week_index == week)
            for arm in arms:
                if arm.uses_model and (week == 0 or week % config.retrain_every_weeks == 0):
                    if week == 0:
                        # Before any inspection every arm of a label mode knows the same labels.
                        key = (arm.label_mode, arm.strategy == MODEL_UNCERTAINTY)
                        if key not in shared_initial:
                            shared_initial[key] = retrain(arm, 0)
                        rankers[arm.name] = shared_initial[key]
                    else:
                        rankers[arm.name] = retrain(arm, week)
                if len(rows) == 0:
                    continue
                k = budget(len(rows), config.inspection_rate)
                view = views.get(arm.name)
                seen = view.see_week(rows) if view is not None else (None, None)
                chosen = select(
                    arm.strategy, rows, k, data, rankers[arm.name], config.exploration_share, rngs[arm.name],
                    *seen,
                )  # fmt: skip
                if view is not None:
                    view.inspected(chosen)
                inspected[arm.name][chosen] = True
                exporters_seen[arm.name][data.exporter[chosen]] = True
                records.append(
                    _week_record(
                        arm, week, period_from, rows, chosen, k, data, int(exporters_seen[arm.name].sum())
                    )
                )
            if bar:
                bar.update(task, advance=1, description=f"week {week + 1}/{weeks} ({fits} fits)")
    finally:
        if bar:
            bar.stop()

    weekly = pd.DataFrame.from_records(records)
    summary = summarise(weekly, arms)
    return SimulationResult(
        config=config,
        period_from=period_from,
        period_to=period_to,
        weekly=weekly,
        summary=summary,
        inspected=inspected,
        trained_on=trained_on,
        trained_positive=trained_positive,
        week_index=week_index,
        fits=fits,
        period_features={name: view.features for name, view in views.items()},
        seconds={
            "simulation": time.perf_counter() - started,
            "fitting": fit_seconds,
            "features": sum(view.seconds for view in views.values()),
        },
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _week_record(
    arm: Arm,
    week: int,
    period_from: pd.Timestamp,
    rows: np.ndarray,
    chosen: np.ndarray,
    k: int,
    data: SimulationData,
    exporters: int,
) -> dict:
    positives = data.diverted[rows]
    kg = np.where(positives, data.seized_kg[rows], 0.0)
    best_kg = float(np.sort(kg)[::-1][:k].sum())
    hit = data.diverted[chosen]
    return {
        "strategy": arm.name,
        "label_mode": arm.label_mode if arm.uses_model else "",
        "week": week,
        "week_start": (period_from + pd.Timedelta(weeks=week)).date().isoformat(),
        "declarations": len(rows),
        "selected": len(chosen),
        "budget": k,
        "positives": int(positives.sum()),
        "hits": int(hit.sum()),
        "oracle_hits": int(min(k, positives.sum())),
        "seized_kg": float(np.where(hit, data.seized_kg[chosen], 0.0).sum()),
        "total_kg": float(kg.sum()),
        "oracle_kg": best_kg,
        "distinct_exporters": exporters,
    }


def _ratio(numerator: pd.Series | float, denominator: pd.Series | float):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(denominator) > 0, np.asarray(numerator) / np.asarray(denominator), np.nan)


def add_rates(weekly: pd.DataFrame) -> pd.DataFrame:
    """Weekly and cumulative precision, recall, seized-kg share, each also over the oracle's."""
    out = weekly.copy()
    out["precision"] = _ratio(out["hits"], out["selected"])
    out["recall"] = _ratio(out["hits"], out["positives"])
    out["kg_share"] = _ratio(out["seized_kg"], out["total_kg"])
    # Hits over the oracle's hits: normalised precision and normalised recall are the same number.
    out["normalised_precision"] = _ratio(out["hits"], out["oracle_hits"])
    out["normalised_kg"] = _ratio(out["seized_kg"], out["oracle_kg"])
    grouped = out.groupby("strategy", sort=False)
    cum = {
        c: grouped[c].cumsum()
        for c in ("hits", "selected", "positives", "oracle_hits", "seized_kg", "total_kg", "oracle_kg")
    }
    out["cum_precision"] = _ratio(cum["hits"], cum["selected"])
    out["cum_recall"] = _ratio(cum["hits"], cum["positives"])
    out["cum_kg_share"] = _ratio(cum["seized_kg"], cum["total_kg"])
    out["cum_normalised_precision"] = _ratio(cum["hits"], cum["oracle_hits"])
    out["cum_normalised_kg"] = _ratio(cum["seized_kg"], cum["oracle_kg"])
    return out


def summarise(weekly: pd.DataFrame, arms: list[Arm]) -> pd.DataFrame:
    """One row per arm: totals over the period and over its last quarter (adaptation to drift)."""
    rows = []
    for arm in arms:
        w = weekly.loc[weekly["strategy"] == arm.name]
        if w.empty:
            continue
        last = w.loc[w["week"] >= w["week"].max() + 1 - max(1, (w["week"].max() + 1) // 4)]
        rows.append(
            {
                "strategy": arm.name,
                "label_mode": arm.label_mode if arm.uses_model else "",
                "inspected": int(w["selected"].sum()),
                "hits": int(w["hits"].sum()),
                "precision": float(_ratio(w["hits"].sum(), w["selected"].sum())),
                "recall": float(_ratio(w["hits"].sum(), w["positives"].sum())),
                "kg_share": float(_ratio(w["seized_kg"].sum(), w["total_kg"].sum())),
                "normalised_precision": float(_ratio(w["hits"].sum(), w["oracle_hits"].sum())),
                "normalised_kg": float(_ratio(w["seized_kg"].sum(), w["oracle_kg"].sum())),
                "last_quarter_normalised_precision": float(
                    _ratio(last["hits"].sum(), last["oracle_hits"].sum())
                ),
                "distinct_exporters": int(w["distinct_exporters"].iloc[-1]),
            }
        )
    return pd.DataFrame(rows)
