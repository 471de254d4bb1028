"""The previous release's model, kept as the reference the model's gains are measured against.

Feature set 1.1.0 (today's columns without the network family and the time-decayed seizure
rates that 1.2.0 added) and one LightGBM fit with today's default settings, early-stopped on
the validation window's log-loss (which stopped after about a dozen trees). The benchmarks
fit it beside the current model on the same features and windows, so "how much better" and
"how much slower" are measured in one run.
"""

from __future__ import annotations

from features.definitions import FEATURE_SET
from training.config import TrainingConfig

#: Name of the previous release's model in benchmark tables.
PREVIOUS_RELEASE = "previous release (1.1.0, log-loss)"


def previous_columns() -> tuple[str, ...]:
    """Feature set 1.1.0's columns: today's without the network family and the decayed rates."""
    added = set(FEATURE_SET.families["network"]) | {c for c in FEATURE_SET.columns if c.endswith("_decayed")}
    return tuple(c for c in FEATURE_SET.columns if c not in added)


def previous_config(config: TrainingConfig) -> TrainingConfig:
    """`config` fitted as the previous release did: one fit, early stopping on log-loss
    evaluated every round."""
    return config.model_copy(
        update={
            "trials": 1,
            "search_rows": None,
            "booster": {**config.booster, "metric": "binary_logloss", "eval_every": 1},
        }
    )
