"""Baselines the model must beat on the same test window.

- random selection (what an inspection quota without targeting gives),
- red-flag rules (the point system a customs officer would write from the red-flag lists),
- logistic regression on the same features (a transparent statistical model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.contract import TRANSPORT_MODES

_COURIER_OR_POST = (TRANSPORT_MODES.index("COURIER"), TRANSPORT_MODES.index("POST"))
_ADVANCE = 1  # index of ADVANCE in features.contract.PAYMENT_TERMS

#: Red-flag points: (description, points). Applied by `red_flag_scores`.
RED_FLAG_RULES: dict[str, float] = {
    "controlled goods without export authorisation": 5.0,
    "controlled substance named under a non-controlled heading": 4.0,
    "exporter implicated in an earlier seizure": 3.0,
    "controlled goods from an exporter seen for less than 90 days": 3.0,
    "controlled goods by courier or post": 2.0,
    "transshipment through a hub": 1.0,
    "consignee country differs from destination": 1.0,
    "advance payment": 1.0,
    "unit value 2 standard deviations below the tariff norm": 1.0,
}


def random_scores(n: int, seed: int) -> np.ndarray:
    """Uniform random scores: random selection at any inspection rate."""
    return np.random.default_rng(seed).random(n)


def red_flag_scores(features: pd.DataFrame) -> np.ndarray:
    """Officer-style point score; among equal points, the larger declared value first."""
    controlled = (features["controlled_goods"] > 0) | (features["controlled_term_under_generic_heading"] > 0)
    tenure = features["exporter_tenure_days"].fillna(0.0)
    flags = {
        "controlled goods without export authorisation": features["controlled_without_authorisation"] > 0,
        "controlled substance named under a non-controlled heading": features[
            "controlled_term_under_generic_heading"
        ]
        > 0,
        "exporter implicated in an earlier seizure": features["exporter_prior_seizures"] > 0,
        "controlled goods from an exporter seen for less than 90 days": controlled & (tenure < 90),
        "controlled goods by courier or post": controlled & features["transport_mode"].isin(_COURIER_OR_POST),
        "transshipment through a hub": features["transshipment_via_hub"] > 0,
        "consignee country differs from destination": features["consignee_country_differs"] > 0,
        "advance payment": features["payment_terms"] == _ADVANCE,
        "unit value 2 standard deviations below the tariff norm": features["unit_value_vs_tariff_norm"] < -2,
    }
    points = sum(RED_FLAG_RULES[name] * flag.to_numpy(dtype=np.float64) for name, flag in flags.items())
    return points + 1e-3 * features["log_declared_value"].fillna(0.0).to_numpy() / 30.0


def logistic_regression(categorical: tuple[str, ...], numeric: tuple[str, ...], seed: int) -> Pipeline:
    """Imputed, scaled, one-hot logistic regression with balanced class weights."""
    numeric_steps = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    categorical_steps = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=-1.0), OneHotEncoder(handle_unknown="ignore")
    )
    columns = ColumnTransformer(
        [("numeric", numeric_steps, list(numeric)), ("categorical", categorical_steps, list(categorical))]
    )
    return Pipeline(
        [
            ("columns", columns),
            ("model", LogisticRegression(class_weight="balanced", max_iter=2000, C=0.5, random_state=seed)),
        ]
    )
