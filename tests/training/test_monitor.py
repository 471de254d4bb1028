"""Drift monitor: population stability index and the report."""

from __future__ import annotations

import numpy as np

from features.definitions import FEATURE_SET
from training.monitor import drift_status, population_stability_index, render_html


def test_psi_is_zero_for_identical_distributions() -> None:
    sample = np.random.default_rng(0).normal(size=20_000)
    assert population_stability_index(sample, sample) < 1e-9
    other_draw = np.random.default_rng(1).normal(size=20_000)
    assert population_stability_index(sample, other_draw) < 0.01


def test_psi_is_large_for_a_shifted_distribution() -> None:
    rng = np.random.default_rng(0)
    reference, shifted = rng.normal(size=20_000), rng.normal(loc=1.0, size=20_000)
    assert population_stability_index(reference, shifted) > 0.25
    assert drift_status(population_stability_index(reference, shifted)) == "drift"


def test_psi_of_discrete_and_missing_values() -> None:
    reference = np.array([0.0] * 900 + [1.0] * 100)
    assert population_stability_index(reference, reference.copy()) < 1e-9
    flipped = np.array([0.0] * 500 + [1.0] * 500)
    assert population_stability_index(reference, flipped) > 0.25
    # A value never seen in training and a surge of missing values both count as shift.
    unseen = np.array([0.0] * 700 + [2.0] * 300)
    assert population_stability_index(reference, unseen) > 0.25
    missing = np.where(np.arange(1000) < 400, np.nan, reference)
    assert population_stability_index(reference, missing) > 0.25


def test_drift_thresholds() -> None:
    assert drift_status(0.05) == "stable"
    assert drift_status(0.15) == "warn"
    assert drift_status(0.3) == "drift"


def test_report_on_a_small_history() -> None:
    from features.reference import load_reference
    from training.backtest import build_features
    from training.monitor import build_report
    from training.synthetic import generate_history

    declarations, seizures, _ = generate_history(rows=20_000, years=2.0, seed=5)
    features = build_features(declarations, seizures, load_reference())
    report = build_report(declarations, seizures, features, recent_days=90)
    assert len(report.feature_psi) == len(FEATURE_SET.columns)
    assert report.feature_psi["psi"].ge(0).all()
    assert np.isfinite(report.score_psi)
    red = report.channel_rates.iloc[0]
    assert abs(red["training_share"] - 0.02) < 0.005
    page = render_html(report)
    assert page.count("data:image/png;base64,") == 3
    assert "Score PSI" in page
