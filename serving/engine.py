"""Scoring engine: registered model + history store -> scores, channels and reasons.

Loading path (chosen for simplicity and speed): resolve the registry alias (or pinned
version) once with `MlflowClient`, load that version's pyfunc with
`mlflow.pyfunc.load_model`, and call the `DiversionScorer` inside it directly
(`unwrap_python_model().scorer`). Requests then never touch MLflow: scoring is a LightGBM
`Booster.predict` on a float matrix plus a `pred_leaf` gather for the reasons. The
artifact checksums recorded at registration are verified before the model is used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.definitions import FEATURE_SET, compute_online_features
from features.history import History, columns_of
from features.reference import ReferenceTables, load_reference
from models.pyfunc import directory_digest
from models.scorer import DiversionScorer
from serving.history_store import HistoryStore
from serving.settings import ServiceSettings

log = logging.getLogger(__name__)

#: The reference tables packaged with `features` (what the service computes features with).
PACKAGED_REFERENCE_DIR = Path(str(resources.files("features").joinpath("reference")))


class ModelLoadError(RuntimeError):
    """The configured model cannot be served (missing, unreachable, tampered or incompatible)."""


@dataclass(frozen=True)
class LoadedModel:
    scorer: DiversionScorer
    name: str
    version: str
    run_id: str
    uri: str
    test_metrics: dict
    reference: ReferenceTables


def resolve_version(settings: ServiceSettings, client: MlflowClient | None = None):
    """The registry's model version the settings name (pinned version, else the alias)."""
    client = client or MlflowClient(settings.tracking_uri)
    try:
        if settings.model_version:
            return client.get_model_version(settings.model_name, settings.model_version)
        return client.get_model_version_by_alias(settings.model_name, settings.model_alias)
    except Exception as exc:  # registry unreachable, name or alias unknown
        raise ModelLoadError(
            f"cannot resolve {settings.model_uri} in {settings.tracking_uri}: {exc}"
        ) from exc


def resolve_challenger(settings: ServiceSettings, client: MlflowClient | None = None):
    """The version the challenger alias names now, or None when the alias is not set.

    Raises `ModelLoadError` when the registry cannot answer (then the current challenger,
    if any, is kept).
    """
    client = client or MlflowClient(settings.tracking_uri)
    try:
        return client.get_model_version_by_alias(settings.model_name, settings.challenger_alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no such alias (or no such model): no challenger
        raise ModelLoadError(f"cannot resolve challenger alias {settings.challenger_alias!r}: {exc}") from exc
    except Exception as exc:  # registry unreachable
        raise ModelLoadError(f"cannot resolve challenger alias {settings.challenger_alias!r}: {exc}") from exc


def load_model(settings: ServiceSettings, version=None) -> LoadedModel:
    """Resolve, download, verify and open the registered model; raise `ModelLoadError` saying why.

    `version` may pass an already resolved registry `ModelVersion`.
    """
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient()
    version = version or resolve_version(settings, client)
    uri = f"models:/{settings.model_name}/{version.version}"
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:
        raise ModelLoadError(f"cannot download {uri}: {exc}") from exc
    scorer_dir = local / "artifacts" / "scorer"
    expected = version.tags.get("sha256.scorer")
    if not expected:
        raise ModelLoadError(f"{uri} has no recorded checksum (tag sha256.scorer); refusing to serve it")
    actual = directory_digest(scorer_dir) if scorer_dir.exists() else "missing"
    if actual != expected:
        raise ModelLoadError(
            f"{uri} artifact checksum mismatch: recorded {expected[:12]}..., found {actual[:12]}..."
        )
    try:
        # The artifact's integrity is checked above; MLflow's scan of every installed package
        # against the logged requirements only warns, and costs seconds at each start-up.
        model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
        scorer = model.unwrap_python_model().scorer
    except Exception as exc:
        raise ModelLoadError(f"cannot open {uri}: {exc}") from exc
    if tuple(scorer.feature_names) != FEATURE_SET.columns:
        raise ModelLoadError(
            f"{uri} was trained on feature set {scorer.metadata.get('feature_set')}, this service computes "
            f"{FEATURE_SET.name} {FEATURE_SET.version}: retrain or deploy a matching service"
        )
    reference = load_reference()
    recorded_reference = version.tags.get("sha256.reference")
    reference_dir = local / "artifacts" / "reference"
    if recorded_reference and directory_digest(reference_dir) != recorded_reference:
        raise ModelLoadError(f"{uri} reference tables do not match their recorded checksum")
    # Features are computed with the reference tables this service ships: they must be the
    # tables the model was trained with.
    if recorded_reference and directory_digest(PACKAGED_REFERENCE_DIR) != recorded_reference:
        raise ModelLoadError(
            f"{uri} was trained with other reference tables (controlled HS codes, terms, hubs) than "
            f"this service ships in {PACKAGED_REFERENCE_DIR}: retrain or deploy a matching service"
        )
    run = client.get_run(version.run_id)
    metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
    return LoadedModel(
        scorer, settings.model_name, str(version.version), version.run_id, uri, metrics, reference
    )


def declaration_contexts(columns: dict[str, np.ndarray], reference: ReferenceTables) -> list[dict]:
    """Per-row facts the reason sentences quote (substance, HS code, countries)."""
    by_code = reference.controlled_substance_array(columns["hs_code"])
    by_text = reference.substance_in_text_array(columns["goods_description"])
    return [
        {
            "substance": code if code is not None else text,
            "hs_code": hs,
            "destination_country": destination,
            "consignee_country": consignee,
            "transshipment_country": via,
        }
        for code, text, hs, destination, consignee, via in zip(
            by_code,
            by_text,
            columns["hs_code"],
            columns["destination_country"],
            columns["consignee_country"],
            columns["transshipment_country"],
            strict=True,
        )
    ]


class ScoringEngine:
    """What the service does per request, without HTTP: features, score, channel, reasons.

    `model` is replaced whole when the registry alias moves (`follow_alias`); a request
    reads it once, so each answer comes from exactly one version.
    """

    def __init__(
        self, model: LoadedModel, store: HistoryStore, settings: ServiceSettings | None = None
    ) -> None:
        self.model = model
        self.store = store
        self.settings = settings
        #: Versions the alias pointed at that failed verification: {version: reason}.
        self.refused: dict[str, str] = {}
        #: The `@challenger` version scored in shadow (never answered), or None.
        self.challenger: LoadedModel | None = None
        #: Challenger versions that failed to load or verify: {version: reason}.
        self.challenger_refused: dict[str, str] = {}
        #: Requests whose shadow scoring or recording failed (the champion answered them anyway).
        self.challenger_failures = 0
        self.challenger_last_error: str | None = None
        self._stopping = threading.Event()
        self._follower: threading.Thread | None = None

    @classmethod
    def open(cls, settings: ServiceSettings) -> ScoringEngine:
        """Load the model and index the history side by side (start-up time is recovery time).

        The history is indexed with the packaged reference tables; `load_model` checks that
        the model was registered with the same tables, so the two always agree.
        """
        with ThreadPoolExecutor(max_workers=1) as pool:
            history = pool.submit(
                HistoryStore.open,
                settings.history_db,
                settings.history_declarations,
                settings.history_seizures,
                load_reference(),
                settings.compact_every,
                settings.history_poll_seconds,
            )
            try:
                model = load_model(settings)
            finally:
                store = history.result()  # raises the history's own error, if any
        engine = cls(model, store, settings)
        engine.check_challenger()
        follows_challenger = settings.challenger_shadow
        if settings.model_poll_seconds and (not settings.model_version or follows_challenger):
            engine.follow_alias(settings.model_poll_seconds)
        return engine

    def follow_alias(self, poll_seconds: float) -> None:
        """Check the registry alias every `poll_seconds`; load, verify and switch to a new version."""
        self._follower = threading.Thread(
            target=self._follow, args=(poll_seconds,), name="model-follower", daemon=True
        )
        self._follower.start()

    def check_alias(self) -> str | None:
        """Switch to the version the alias names now, if it is new and verifies; the new version or None."""
        settings = self.settings
        if settings is None:
            return None
        try:
            version = resolve_version(settings)
        except ModelLoadError as exc:
            log.warning("model follower: %s", exc)
            return None
        number = str(version.version)
        if number == self.model.version or number in self.refused:
            return None
        try:
            model = load_model(settings, version)
        except ModelLoadError as exc:
            self.refused[number] = str(exc)
            log.error("refused model version %s (still serving v%s): %s", number, self.model.version, exc)
            return None
        previous = self.model.version
        self.model = model  # one reference assignment: requests read it once
        log.warning("now serving model %s v%s (was v%s)", model.name, number, previous)
        return number

    def check_challenger(self) -> str | None:
        """Follow the challenger alias: load and verify a new version, drop it when unset or promoted.

        A challenger that fails to load or verify is refused (listed in `info()`); serving
        goes on with the champion alone. Returns the challenger version now scored, or None.
        """
        settings = self.settings
        if settings is None or not settings.challenger_shadow:
            return None
        try:
            version = resolve_challenger(settings)
        except ModelLoadError as exc:
            log.warning("challenger follower: %s", exc)
            return self.challenger.version if self.challenger else None
        number = None if version is None else str(version.version)
        if number is None or number == self.model.version:
            if self.challenger is not None:
                log.warning("challenger v%s no longer scored in shadow", self.challenger.version)
            self.challenger = None
            return None
        if self.challenger is not None and number == self.challenger.version:
            return number
        if number in self.challenger_refused:
            return None
        try:
            challenger = load_model(settings, version)
        except Exception as exc:  # whatever the cause, the champion serves alone
            self.challenger_refused[number] = str(exc)
            self.challenger = None
            log.error("refused challenger version %s (champion serves alone): %s", number, exc)
            return None
        self.challenger = challenger
        log.warning("challenger %s v%s scores in shadow", challenger.name, number)
        return number

    def _follow(self, poll_seconds: float) -> None:
        while not self._stopping.wait(poll_seconds):
            for check in (self.check_alias, self.check_challenger):
                try:
                    check()
                except Exception as exc:  # never let the follower die; the next round retries
                    log.warning("model follower: %s", exc)

    def close(self) -> None:
        self._stopping.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
        self.store.close()

    def features(
        self,
        declarations: pd.DataFrame | dict[str, np.ndarray],
        history: History | None = None,
        model: LoadedModel | None = None,
    ) -> pd.DataFrame:
        model = model or self.model
        return compute_online_features(declarations, history or self.store.current().history, model.reference)

    def score(
        self,
        declarations: pd.DataFrame | dict[str, np.ndarray],
        explain: bool = True,
        scored_at: dt.datetime | None = None,
        history: History | None = None,
        model: LoadedModel | None = None,
        features: pd.DataFrame | None = None,
    ) -> list[dict]:
        """One result dict per declaration, in input order.

        Against `history` (default: the store's, with every committed append applied) and
        `model` (default: the one serving now). `features`: the batch's feature frame when
        the caller computed it already (`features()`), so rules and the challenger share it.
        """
        model = model or self.model
        columns = columns_of(declarations)
        if features is None:
            features = self.features(columns, history, model)
        contexts = declaration_contexts(columns, model.reference) if explain else None
        batch = model.scorer.score(features, contexts, explain=explain)
        scored_at_text = (scored_at or dt.datetime.now(dt.UTC)).isoformat()
        model_ref = {"name": model.name, "version": model.version}
        ids = columns["declaration_id"].tolist()
        risk = batch.risk_score.tolist()
        percentile = batch.percentile.tolist()
        channel = batch.channel.tolist()
        reasons = batch.reason_dicts if explain else [[] for _ in ids]
        results = []
        for i, declaration_id in enumerate(ids):
            results.append(
                {
                    "declaration_id": declaration_id,
                    "risk_score": risk[i],
                    "percentile": percentile[i],
                    "channel": channel[i],
                    "reasons": reasons[i],
                    "rule_hits": batch.rule_hits[i],
                    "model": model_ref,
                    "scored_at": scored_at_text,
                }
            )
        return results

    def info(self) -> dict:
        model = self.model
        policy = model.scorer.policy
        return {
            "name": model.name,
            "version": model.version,
            "run_id": model.run_id,
            "model_uri": model.uri,
            "feature_set": model.scorer.metadata.get("feature_set", {}),
            "test_metrics": model.test_metrics,
            "refused_versions": dict(self.refused),
            "challenger": self.challenger_info(),
            "history_sequence": self.store.sequence,
            "inspection_policy": json.loads(
                json.dumps({**policy.__dict__, "mandatory_red_rules": list(policy.mandatory_red_rules)})
            ),
        }

    def challenger_info(self) -> dict:
        """What `GET /model` says about the shadow challenger: version, refusals, failures."""
        challenger = self.challenger
        settings = self.settings
        return {
            "alias": settings.challenger_alias if settings else None,
            "enabled": bool(settings and settings.challenger_shadow),
            "version": challenger.version if challenger else None,
            "run_id": challenger.run_id if challenger else None,
            "refused_versions": dict(self.challenger_refused),
            "shadow_failures": self.challenger_failures,
            "last_error": self.challenger_last_error,
        }
