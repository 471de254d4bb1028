"""Leaf path attributions: exact decomposition, and the reasons are what moved the score."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.attribution import LeafAttribution
from models.estimator import PlattCalibration
from models.scorer import DiversionScorer, InspectionPolicy


@pytest.fixture(scope="module")
def toy_model():
    """A booster where `driver` matters a lot, `minor` a little and `noise` not at all."""
    rng = np.random.default_rng(0)
    n = 6000
    frame = pd.DataFrame(
        {"driver": rng.normal(size=n), "minor": rng.normal(size=n), "noise": rng.normal(size=n)}
    )
    logit = 2.5 * (frame["driver"] > 1.0) + 0.4 * frame["minor"] - 3.0
    labels = rng.random(n) < 1 / (1 + np.exp(-logit))
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 15, "seed": 1, "deterministic": True},
        lgb.Dataset(frame, label=labels),
        num_boost_round=80,
    )
    raw = booster.predict(frame.to_numpy(), raw_score=True)
    scorer = DiversionScorer(
        booster=booster,
        feature_names=("driver", "minor", "noise"),
        calibration=PlattCalibration.fit(raw, labels),
        policy=InspectionPolicy.from_scores(raw, 0.02, 0.08, ()),
        reference_quantiles=np.quantile(raw, np.linspace(0, 1, 101)),
    )
    return scorer, frame


def test_contributions_sum_exactly_to_the_raw_score(toy_model) -> None:
    scorer, frame = toy_model
    attribution = LeafAttribution.from_booster(scorer.booster)
    matrix = frame.head(500).to_numpy()
    contributions = attribution.contributions(scorer.booster.predict(matrix, pred_leaf=True))
    raw = scorer.booster.predict(matrix, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1) + attribution.expected_value, raw, atol=1e-9)


def test_agrees_with_lightgbm_exact_contributions_on_which_feature_matters(toy_model) -> None:
    scorer, frame = toy_model
    matrix = frame.loc[frame["driver"] > 1.5].head(200).to_numpy()  # rows where one feature clearly decides
    ours = LeafAttribution.from_booster(scorer.booster).contributions(
        scorer.booster.predict(matrix, pred_leaf=True)
    )
    shap = scorer.booster.predict(matrix, pred_contrib=True)[:, :-1]
    agree = np.mean(np.argmax(np.abs(ours), axis=1) == np.argmax(np.abs(shap), axis=1))
    assert agree > 0.9


def test_top_reason_is_the_feature_that_moved_the_score(toy_model) -> None:
    """Resetting the top reason's feature to a typical value lowers the score more than resetting the last one."""
    scorer, frame = toy_model
    risky = frame.loc[frame["driver"] > 1.5].head(50).reset_index(drop=True)
    batch = scorer.score(risky, explain=True)
    typical = frame.median()
    for i, reasons in enumerate(batch.reasons):
        assert reasons, "a high score has reasons"
        assert reasons[0].feature == "driver"
        assert all(r.contribution > 0 for r in reasons)
        row = risky.iloc[[i]].copy()
        row["driver"] = typical["driver"]
        assert scorer.predict_proba(row)[0] < batch.risk_score[i]
    assert not any(rs[0].feature == "noise" for rs in batch.reasons)


def test_reason_contributions_are_the_attributions_rounded_to_six_decimals(toy_model) -> None:
    scorer, frame = toy_model
    batch = scorer.score(frame.head(400), explain=True)
    checked = 0
    for row, reasons in zip(batch.contributions, batch.reason_dicts, strict=True):
        by_feature = dict(zip(scorer.feature_names, row.tolist(), strict=True))
        for reason in reasons:
            exact = by_feature[reason["feature"]]
            assert round(reason["contribution"], 6) == reason["contribution"]  # six decimals at most
            assert abs(reason["contribution"] - exact) <= 5e-7 + 1e-12
            checked += 1
    assert checked > 100
