"""Evaluation plots logged with every run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from training.evaluation import selected_at  # noqa: E402

_RATES = np.array([0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20])


def budget_curves(scores_by_method: dict[str, np.ndarray], diverted: np.ndarray, path: Path) -> Path:
    """Precision and recall against inspection rate, model and baselines side by side."""
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
    total = max(int(diverted.sum()), 1)
    for name, scores in scores_by_method.items():
        precision, recall = [], []
        for rate in _RATES:
            hits = diverted[selected_at(scores, rate)]
            precision.append(hits.mean())
            recall.append(hits.sum() / total)
        ax_p.plot(_RATES * 100, precision, marker="o", label=name)
        ax_r.plot(_RATES * 100, recall, marker="o", label=name)
    for ax, title in ((ax_p, "precision"), (ax_r, "recall")):
        ax.set_xlabel("inspection rate (%)")
        ax.set_title(f"{title} at inspection rate (test window)")
        ax.grid(alpha=0.3)
    ax_p.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pr_curve(scores_by_method: dict[str, np.ndarray], diverted: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, scores in scores_by_method.items():
        precision, recall, _ = precision_recall_curve(diverted, scores)
        ax.plot(recall, precision, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall (test window)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(probabilities: np.ndarray, diverted: np.ndarray, path: Path) -> Path:
    observed, predicted = calibration_curve(diverted, probabilities, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, max(predicted.max(), observed.max())], [0, max(predicted.max(), observed.max())], "k--", lw=1)
    ax.plot(predicted, observed, marker="o")
    ax.set_xlabel("predicted diversion probability")
    ax.set_ylabel("observed diverted share")
    ax.set_title("calibration (test window, quantile bins)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def importance_plot(names: list[str], gains: np.ndarray, path: Path) -> Path:
    order = np.argsort(gains)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.barh(np.array(names)[order], gains[order])
    ax.set_xlabel("total gain")
    ax.set_title("feature importance (LightGBM gain)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
