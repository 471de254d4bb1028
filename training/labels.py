"""Labels from seizures, under the contract's label window, and time windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Labels:
    """Per-declaration outcome: diverted (seized within the window) and seized quantity."""

    diverted: np.ndarray  # bool, aligned with the declarations frame
    seized_kg: np.ndarray  # float, kg seized on label-window seizures of the declaration


def inspection_seizures(inspections: pd.DataFrame | None) -> pd.DataFrame:
    """Inspections that found a seizure, as seizure-like rows (declaration, time, no quantity)."""
    if inspections is None or inspections.empty:
        return pd.DataFrame(
            {
                "declaration_id": pd.Series([], dtype="str"),
                "seized_at": pd.Series([], dtype="datetime64[us]"),
                "quantity_kg": pd.Series([], dtype="float64"),
            }
        )
    found = inspections.loc[inspections["result"] == "SEIZURE"]
    return pd.DataFrame(
        {
            "declaration_id": found["declaration_id"].astype("str").to_numpy(),
            "seized_at": found["inspected_at"].to_numpy(),
            "quantity_kg": np.nan,
        }
    )


def declaration_labels(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    label_window_days: int,
    known_before: pd.Timestamp | None = None,
    inspections: pd.DataFrame | None = None,
) -> Labels:
    """A declaration is diverted when a seizure naming it falls within the label window
    (from its filing day to `label_window_days` after its filing time).

    An inspection whose result is SEIZURE counts as a seizure of that declaration at the
    inspection time. With `known_before`, only outcomes reported strictly before that time
    count (what a model trained at that time could have known).
    """
    linked = seizures.loc[seizures["declaration_id"].notna(), ["declaration_id", "seized_at", "quantity_kg"]]
    extra = inspection_seizures(inspections)
    if len(extra):
        linked = pd.concat([linked, extra], ignore_index=True)
    if known_before is not None:
        linked = linked.loc[linked["seized_at"] < known_before]
    filed = pd.Series(
        declarations["declared_at"].to_numpy(), index=declarations["declaration_id"].astype("str")
    )
    declared_at = filed.reindex(linked["declaration_id"].astype("str").to_numpy()).to_numpy()
    seized_at = linked["seized_at"].to_numpy()
    window = np.timedelta64(label_window_days, "D")
    # From the filing *day*: a seizure recorded by date only (midnight) on the filing day of
    # a timestamped declaration counts. Earlier days cannot occur: validation rejects them.
    filing_day = declared_at.astype("datetime64[D]")
    inside = (seized_at >= filing_day) & (seized_at - declared_at <= window)
    hits = linked.loc[inside]
    per_declaration = hits.groupby(hits["declaration_id"].astype("str"))["quantity_kg"].agg(
        lambda q: float(np.nansum(q.to_numpy(dtype=np.float64, na_value=np.nan)))
    )
    ids = declarations["declaration_id"].astype("str")
    diverted = ids.isin(per_declaration.index).to_numpy()
    seized_kg = per_declaration.reindex(ids.to_numpy()).fillna(0.0).to_numpy(dtype=np.float64)
    return Labels(diverted=diverted, seized_kg=seized_kg)


def inspected_before(
    declarations: pd.DataFrame, inspections: pd.DataFrame | None, known_before: pd.Timestamp | None = None
) -> np.ndarray:
    """Whether each declaration had a customs examination reported (before `known_before`)."""
    if inspections is None or inspections.empty:
        return np.zeros(len(declarations), dtype=bool)
    reported = (
        inspections if known_before is None else inspections.loc[inspections["inspected_at"] < known_before]
    )
    return (
        declarations["declaration_id"]
        .astype("str")
        .isin(set(reported["declaration_id"].astype("str")))
        .to_numpy()
    )


@dataclass(frozen=True)
class Windows:
    """Time windows of one fit: train and validation (labels mature at `train_until`), test."""

    train_from: pd.Timestamp
    validation_from: pd.Timestamp
    mature_until: pd.Timestamp
    train_until: pd.Timestamp
    test_from: pd.Timestamp
    test_to: pd.Timestamp

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def fit_windows(
    declared_at: pd.Series,
    train_until: pd.Timestamp,
    test_from: pd.Timestamp,
    test_to: pd.Timestamp,
    label_window_days: int,
    validation_share: float,
) -> Windows:
    """Train/validation split of the declarations whose labels are mature at `train_until`.

    Only declarations filed at least one label window before `train_until` have labels a
    model trained then could know; the latest `validation_share` of them (by time) is the
    validation window used for early stopping, calibration and the inspection policy.
    """
    mature_until = train_until - pd.Timedelta(days=label_window_days)
    mature = declared_at.loc[declared_at < mature_until]
    if mature.empty:
        raise ValueError(
            f"no declaration filed before {mature_until} (train-until minus the {label_window_days}-day label "
            "window): nothing has a mature label to train on; move --train-until later"
        )
    validation_from = mature.quantile(1.0 - validation_share)
    return Windows(
        train_from=mature.min(),
        validation_from=pd.Timestamp(validation_from),
        mature_until=mature_until,
        train_until=train_until,
        test_from=test_from,
        test_to=test_to,
    )
