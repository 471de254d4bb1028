"""Metrics at inspection budgets: what customs gets for the few percent it can inspect."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

INSPECTION_RATES: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)


def rate_label(rate: float) -> str:
    """0.02 -> '2pct' (metric-name friendly)."""
    return f"{rate * 100:g}pct".replace(".", "_")


def selected_at(scores: np.ndarray, rate: float) -> np.ndarray:
    """Indices of the top `rate` share of declarations by score (ties: earlier rows first)."""
    n = len(scores)
    k = max(1, math.ceil(rate * n)) if n else 0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:k]


def budget_metrics(
    scores: np.ndarray,
    diverted: np.ndarray,
    seized_kg: np.ndarray,
    rates: tuple[float, ...] = INSPECTION_RATES,
) -> dict[str, float]:
    """Precision, recall and share of seized quantity captured at each inspection rate."""
    diverted = np.asarray(diverted, dtype=bool)
    total_positive = diverted.sum()
    total_kg = float(np.sum(np.where(diverted, seized_kg, 0.0)))
    out: dict[str, float] = {}
    for rate in rates:
        chosen = selected_at(scores, rate)
        hits = diverted[chosen]
        label = rate_label(rate)
        out[f"precision_at_{label}"] = float(hits.mean()) if len(chosen) else 0.0
        out[f"recall_at_{label}"] = float(hits.sum() / total_positive) if total_positive else 0.0
        captured = float(np.sum(np.where(hits, seized_kg[chosen], 0.0)))
        out[f"seized_kg_share_at_{label}"] = captured / total_kg if total_kg > 0 else 0.0
    return out


def expected_calibration_error(probabilities: np.ndarray, diverted: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-count bins of predicted probability."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(diverted, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            error += len(chunk) / len(p) * abs(p[chunk].mean() - y[chunk].mean())
    return float(error)


def ranking_metrics(scores: np.ndarray, diverted: np.ndarray) -> dict[str, float]:
    """Threshold-free ranking quality (PR-AUC, ROC-AUC); NaN when one class is absent."""
    y = np.asarray(diverted, dtype=bool)
    if y.all() or not y.any():
        return {"pr_auc": float("nan"), "roc_auc": float("nan")}
    return {"pr_auc": float(average_precision_score(y, scores)), "roc_auc": float(roc_auc_score(y, scores))}


def probability_metrics(probabilities: np.ndarray, diverted: np.ndarray) -> dict[str, float]:
    """Calibration quality of probabilities (Brier score, expected calibration error)."""
    y = np.asarray(diverted, dtype=bool)
    return {
        "brier": float(brier_score_loss(y, probabilities)) if len(y) else float("nan"),
        "calibration_error": expected_calibration_error(probabilities, y),
    }


def evaluate_scores(
    scores: np.ndarray, diverted: np.ndarray, seized_kg: np.ndarray, probabilities: np.ndarray | None = None
) -> dict[str, float]:
    """All test-window metrics of one selection method."""
    metrics = budget_metrics(scores, diverted, seized_kg)
    metrics.update(ranking_metrics(scores, diverted))
    if probabilities is not None:
        metrics.update(probability_metrics(probabilities, diverted))
    metrics["positives"] = float(np.sum(diverted))
    metrics["declarations"] = float(len(diverted))
    return metrics
