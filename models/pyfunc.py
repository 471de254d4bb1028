"""The MLflow model: a pyfunc wrapping `DiversionScorer`, with the reference tables it scored with.

Input: feature rows (`FEATURE_SET.columns`); output: calibrated `risk_score` and `channel`.
The service loads it with `mlflow.pyfunc.load_model(...).unwrap_python_model().scorer`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from models.scorer import DiversionScorer


class DiversionRiskModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: calibrated probabilities (not 0/1 labels) and the inspection channel."""

    scorer: DiversionScorer

    def load_context(self, context) -> None:
        self.scorer = DiversionScorer.load(Path(context.artifacts["scorer"]))
        self.reference_dir = Path(context.artifacts["reference"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        batch = self.scorer.score(model_input, explain=False)
        return pd.DataFrame({"risk_score": batch.risk_score, "channel": batch.channel})


def directory_digest(directory: Path) -> str:
    """sha256 over the names and bytes of every file in a directory (sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
