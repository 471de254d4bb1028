"""`make train`: validate, build point-in-time features, fit, evaluate, log, register, promote."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table

from features.definitions import FEATURE_SET, MONOTONE
from features.reference import load_reference
from features.validation import ValidationReport, load_contract_tables
from models.estimator import BoosterParams
from models.pyfunc import DiversionRiskModel, directory_digest
from training import plots
from training.backtest import FitResult, build_features, default_windows, fit_and_evaluate
from training.config import TrainingConfig
from training.datasets import compact_declarations
from training.evaluation import INSPECTION_RATES, rate_label
from training.search import SEARCH_RATES, TUNED

log = logging.getLogger(__name__)
console = Console(width=None if Console().is_terminal else 150)

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "features" / "reference"
_LIBRARIES = ("lightgbm", "scikit-learn", "pandas", "numpy", "mlflow", "bentoml", "pandera", "pydantic")


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    model_version: str
    alias: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    promotion_reason: str


def configure_tracking(tracking_uri: str, experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    return found.experiment_id if found else mlflow.create_experiment(experiment)


class LocalEngine:
    """Features and fit in this process (`config.engine == "local"`)."""

    name = "local"
    build_features = staticmethod(build_features)
    refit = None  # the search's own fit (`training.search`)

    def verify(self) -> None:
        """Nothing can be lost between fitting and registering in one process."""

    def record(self) -> dict[str, object]:
        return {"engine": self.name}


def train(config: TrainingConfig) -> TrainOutcome:
    """The whole training job on the configured contract files, on the configured engine."""
    if config.engine == "dask":
        from training.distributed import dask_engine

        with dask_engine(
            config.dask_scheduler,
            workers=config.dask_workers,
            blocks=config.dask_blocks,
            network_timeout_minutes=config.dask_network_timeout_minutes,
        ) as engine:
            return _train(config, engine)
    return _train(config, LocalEngine())


def _train(config: TrainingConfig, engine) -> TrainOutcome:
    """`train` with features and the final fit on `engine` (`LocalEngine` or `training.distributed.DaskEngine`)."""
    started = time.perf_counter()
    tables = load_contract_tables(
        config.declarations,
        config.seizures,
        config.inspections,
        rejects_dir=config.output_dir / "rejects",
        max_reject_share=config.max_reject_share,
    )
    # From here on one copy of the declarations: repetitive text as categories (the same
    # values, content hashes and MLflow digests). The loaded frame goes before indexing.
    declarations, seizures = compact_declarations(tables.declarations), tables.seizures
    tables.declarations = declarations
    console.print(f"[bold]contract[/]: {tables.report.summary()}")
    reference = load_reference()
    t0 = time.perf_counter()
    features = engine.build_features(declarations, seizures, reference)
    console.print(
        f"features ({engine.name}): {len(features):,} declarations in {time.perf_counter() - t0:.1f}s"
    )
    test_from, train_until, test_to = default_windows(
        declarations["declared_at"], config.label_window_days, config.test_days
    )
    console.print(f"search: {config.trials} trials on the validation window (seed {config.seed})")
    result = fit_and_evaluate(
        declarations,
        seizures,
        features,
        config,
        train_until,
        test_from,
        test_to,
        inspections=tables.inspections,
        progress=lambda text: console.print(f"  {text}"),
        refit=engine.refit,
    )
    print_search(result)
    print_comparison(result)
    engine.verify()  # before anything is logged: a run that lost a worker records nothing

    experiment_id = configure_tracking(config.tracking_uri, config.experiment)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{FEATURE_SET.name}-{FEATURE_SET.version}"
    ) as run:
        _log_run(config, declarations, seizures, features, result, tables.report.summary())
        log_search(result, experiment_id)
        log_contract_report(tables.report)
        mlflow.log_dict(engine.record(), "engine.json")
        engine.verify()
        version, digests = _log_and_register(config, result, features)
        alias, reason = promote(config, version, result, features, declarations, seizures)
        mlflow.set_tags({"promotion.alias": alias, "promotion.reason": reason})
        mlflow.log_dict(
            {"version": version, "alias": alias, "reason": reason, "digests": digests}, "promotion.json"
        )
        mlflow.log_metric("wall_seconds", time.perf_counter() - started)
    console.print(
        f"registered [bold]{config.registered_model}[/] version {version} as [bold]{alias}[/]: {reason}"
    )
    return TrainOutcome(run.info.run_id, version, alias, result.metrics, result.baselines, reason)


def _chosen_params(config: TrainingConfig, result: FitResult) -> BoosterParams:
    if result.search is not None:
        return result.search.params
    return config.booster_params(monotone=[MONOTONE.get(c, 0) for c in FEATURE_SET.columns])


def print_search(result: FitResult) -> None:
    """The search's trials on the validation window, the chosen one marked."""
    if result.search is None:
        return
    table = Table(title="search: validation window (the test window is not used to choose)")
    shown = ["trial", *TUNED, "best_iteration"]
    metrics = [
        "validation_average_precision",
        *(f"validation_recall_at_{rate_label(r)}" for r in SEARCH_RATES),
    ]
    for column in shown + metrics:
        table.add_column(column.replace("validation_", "val ").replace("_", " "), justify="right")
    for _, row in result.search.trials.iterrows():
        cells = [f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in shown + metrics]
        if row["chosen"]:
            cells[0] = f"[bold]{cells[0]} *[/]"
        table.add_row(*cells)
    console.print(table)


def log_search(result: FitResult, experiment_id: str) -> None:
    """The search in the active (parent) run: chosen settings as params, the trial table as
    `search/trials.csv` and `search/trials.md`, and one nested child run per trial with its
    settings and validation metrics."""
    search = result.search
    if search is None:
        return
    chosen = search.chosen()
    mlflow.log_params(
        {
            "search.trials": len(search.trials),
            "search.chosen_trial": search.chosen_trial,
            "search.objective": "validation average precision",
            **{f"search.chosen.{name}": chosen[name] for name in TUNED},
        }
    )
    mlflow.log_metrics(
        {f"search_chosen_{k}": float(v) for k, v in chosen.items() if k.startswith("validation_")}
    )
    mlflow.log_text(search.trials.to_csv(index=False), "search/trials.csv")
    mlflow.log_text(search.markdown(), "search/trials.md")
    for _, row in search.trials.iterrows():
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"search-trial-{int(row['trial']):03d}", nested=True
        ):
            mlflow.log_params({name: row[name] for name in (*TUNED, "best_iteration")})
            mlflow.log_metrics(
                {k: float(row[k]) for k in row.index if k.startswith("validation_") or k == "seconds"}
            )
            mlflow.set_tags(
                {"search.trial": str(int(row["trial"])), "search.chosen": str(bool(row["chosen"]))}
            )


def print_comparison(result: FitResult) -> None:
    table = Table(title="test window: model against baselines")
    table.add_column("method")
    for rate in INSPECTION_RATES:
        table.add_column(f"P@{rate:.0%}", justify="right")
        table.add_column(f"R@{rate:.0%}", justify="right")
    table.add_column("PR-AUC", justify="right")
    rows = {"lightgbm": result.metrics, **result.baselines}
    for name, metrics in rows.items():
        cells = []
        for rate in INSPECTION_RATES:
            cells += [
                f"{metrics[f'precision_at_{rate_label(rate)}']:.3f}",
                f"{metrics[f'recall_at_{rate_label(rate)}']:.3f}",
            ]
        table.add_row(name, *cells, f"{metrics['pr_auc']:.3f}")
    console.print(table)
    m = result.metrics
    console.print(
        f"test window {result.windows.test_from.date()} .. {result.windows.test_to.date()}: "
        f"{int(m['declarations']):,} declarations, {int(m['positives'])} diverted; "
        f"ROC-AUC {m['roc_auc']:.3f}, Brier {m['brier']:.4f}, calibration error {m['calibration_error']:.4f}"
    )


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10
        ).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _content_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def _log_run(
    config: TrainingConfig,
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    features: pd.DataFrame,
    result: FitResult,
    contract_summary: str,
) -> None:
    mlflow.log_dict(json.loads(config.model_dump_json()), "config.json")
    mlflow.log_params(
        {
            **{k: v for k, v in json.loads(config.model_dump_json()).items() if k != "booster"},
            # the settings the search chose (the config's `booster` overrides are its starting point)
            **{f"booster.{k}": v for k, v in _chosen_params(config, result).lightgbm().items()},
            "best_iteration": result.scorer.metadata["best_iteration"],
        }
    )
    mlflow.set_tags(
        {
            "feature_set.name": FEATURE_SET.name,
            "feature_set.version": FEATURE_SET.version,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            **{f"library.{lib}": metadata.version(lib) for lib in _LIBRARIES},
            "contract": contract_summary,
        }
    )
    mlflow.log_dict(
        {"name": FEATURE_SET.name, "version": FEATURE_SET.version, "columns": FEATURE_SET.descriptions},
        "feature_set.json",
    )
    windows = {
        "train": result.train_mask,
        "validation": result.validation_mask,
        "test": result.test_mask,
    }
    lineage = {}
    for name, mask in windows.items():
        frame = declarations.loc[mask]
        dataset = mlflow.data.from_pandas(frame, source=str(config.declarations), name=f"declarations-{name}")
        mlflow.log_input(dataset, context=name)
        lineage[name] = {
            "rows": int(mask.sum()),
            "from": str(frame["declared_at"].min()),
            "to": str(frame["declared_at"].max()),
            "sha256": _content_hash(frame),
            "mlflow_digest": dataset.digest,
        }
    seizure_dataset = mlflow.data.from_pandas(seizures, source=str(config.seizures), name="seizures")
    mlflow.log_input(seizure_dataset, context="labels")
    lineage["seizures"] = {"rows": len(seizures), "sha256": _content_hash(seizures)}
    lineage["windows"] = result.windows.as_dict()
    mlflow.log_dict(lineage, "lineage.json")

    mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items() if np.isfinite(v)})
    mlflow.log_metrics({f"validation_{k}": v for k, v in result.validation_metrics.items() if np.isfinite(v)})
    for name, metrics in result.baselines.items():
        mlflow.log_metrics({f"baseline_{name}_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    policy = result.scorer.policy
    mlflow.log_dict(
        {**policy.__dict__, "mandatory_red_rules": list(policy.mandatory_red_rules)}, "inspection_policy.json"
    )

    diverted = result.test_labels.diverted
    methods = {"lightgbm": result.test_scores, **result.baseline_scores}
    gains = result.scorer.booster.feature_importance("gain")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.budget_curves(methods, diverted, folder / "precision_recall_at_inspection_rate.png")
        if diverted.any():
            plots.pr_curve(methods, diverted, folder / "pr_curve.png")
            plots.calibration_plot(result.test_scores, diverted, folder / "calibration.png")
        plots.importance_plot(list(result.scorer.feature_names), gains, folder / "feature_importance.png")
        mlflow.log_artifacts(tmp, "plots")
    mlflow.log_text(evaluation_report(result, lineage), "evaluation_report.md")


def log_contract_report(report: ValidationReport) -> None:
    """Record what validation did: rows read, valid and rejected per table as metrics, the
    counts as ``contract/report.json`` and every table's reject lines as
    ``contract/<table>_rejects.csv`` (header only when none), so a model's run shows exactly
    which input rows it was not trained on and why."""
    for name, table in report.tables.items():
        mlflow.log_metrics(
            {
                f"contract_{name}_rows_read": table.rows_read,
                f"contract_{name}_rows_valid": table.rows_valid,
                f"contract_{name}_rows_rejected": table.rows_rejected,
                f"contract_{name}_reject_share": table.reject_share,
            }
        )
        mlflow.log_text(table.rejects.to_csv(index=False), f"contract/{name}_rejects.csv")
    mlflow.log_dict(report.as_dict(), "contract/report.json")


def evaluation_report(result: FitResult, lineage: dict) -> str:
    """A short markdown report: windows, model against baselines, policy."""
    lines = [
        f"# Evaluation report: {FEATURE_SET.name} {FEATURE_SET.version}",
        "",
        "## Windows",
        "",
        "| window | rows | from | to |",
        "|---|---:|---|---|",
    ]
    for name in ("train", "validation", "test"):
        w = lineage[name]
        lines.append(f"| {name} | {w['rows']:,} | {w['from']} | {w['to']} |")
    lines += ["", "## Test window: model against baselines", ""]
    header = "| method | " + " | ".join(f"P@{r:.0%} | R@{r:.0%}" for r in INSPECTION_RATES) + " | PR-AUC |"
    lines += [header, "|---" * (2 * len(INSPECTION_RATES) + 2) + "|"]
    for name, metrics in {"lightgbm": result.metrics, **result.baselines}.items():
        cells = " | ".join(
            f"{metrics[f'precision_at_{rate_label(r)}']:.3f} | {metrics[f'recall_at_{rate_label(r)}']:.3f}"
            for r in INSPECTION_RATES
        )
        lines.append(f"| {name} | {cells} | {metrics['pr_auc']:.3f} |")
    if result.search is not None:
        lines += [
            "",
            f"## Search on the validation window ({len(result.search.trials)} trials, chosen by average precision)",
            "",
            result.search.markdown().rstrip("\n"),
        ]
    m = result.metrics
    policy = result.scorer.policy
    lines += [
        "",
        f"Calibration: Brier {m['brier']:.4f}, expected calibration error {m['calibration_error']:.4f}.",
        "",
        f"Inspection policy: RED at score >= {policy.red_threshold:.4f} ({policy.red_rate:.0%} of validation),"
        f" YELLOW at >= {policy.yellow_threshold:.4f} (next {policy.yellow_rate:.0%});"
        f" mandatory RED rules: {', '.join(policy.mandatory_red_rules) or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def _log_and_register(config: TrainingConfig, result: FitResult, features: pd.DataFrame) -> tuple[str, dict]:
    """Log the pyfunc with its scorer and reference tables; register it; record checksums."""
    columns = list(result.scorer.feature_names)
    example = features.loc[result.test_mask, columns].head(5)
    with tempfile.TemporaryDirectory() as tmp:
        scorer_dir = Path(tmp) / "scorer"
        result.scorer.save(scorer_dir)
        digests = {"scorer": directory_digest(scorer_dir), "reference": directory_digest(REFERENCE_DIR)}
        scoring = DiversionRiskModel()
        scoring.scorer = result.scorer
        output = scoring.predict(None, example)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DiversionRiskModel(),  # stateless: load_context reads the artifacts
            artifacts={"scorer": str(scorer_dir), "reference": str(REFERENCE_DIR)},
            signature=infer_signature(example, output),
            input_example=example,
            registered_model_name=config.registered_model,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for name, digest in digests.items():
        client.set_model_version_tag(config.registered_model, version, f"sha256.{name}", digest)
    client.set_model_version_tag(config.registered_model, version, "feature_set.version", FEATURE_SET.version)
    return version, digests


def load_scorer(model_uri: str):
    """The `DiversionScorer` inside a registered pyfunc (e.g. `models:/diversion-risk@champion`)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().scorer


def promote(
    config: TrainingConfig,
    version: str,
    result: FitResult,
    features: pd.DataFrame,
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
) -> tuple[str, str]:
    """`champion` moves only when the new model beats the current one on the same test window."""
    client = MlflowClient()
    name, metric = config.registered_model, config.primary_metric
    try:
        current = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        current = None
    if current is None:
        client.set_registered_model_alias(name, "champion", version)
        return "champion", "first registered model"
    champion = load_scorer(f"models:/{name}@champion")
    columns = list(champion.feature_names)
    if not set(columns) <= set(features.columns):
        client.set_registered_model_alias(name, "challenger", version)
        return "challenger", f"champion v{current.version} uses other features; compare manually"
    from training.evaluation import evaluate_scores

    champion_scores = champion.predict_proba(features.loc[result.test_mask, columns])
    champion_metrics = evaluate_scores(
        champion_scores,
        result.test_labels.diverted,
        result.test_labels.seized_kg,
        probabilities=champion_scores,
    )
    mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items() if np.isfinite(v)})
    new, old = result.metrics[metric], champion_metrics[metric]
    new_pr, old_pr = result.metrics["pr_auc"], champion_metrics["pr_auc"]
    comparison = (
        f"{metric} {new:.4f} vs champion v{current.version} {old:.4f}; PR-AUC {new_pr:.4f} vs {old_pr:.4f}"
    )
    if new > old or (new == old and new_pr > old_pr + 1e-9):
        client.set_registered_model_alias(name, "champion", version)
        return "champion", f"beats champion: {comparison}"
    client.set_registered_model_alias(name, "challenger", version)
    return "challenger", f"does not beat champion: {comparison}"
