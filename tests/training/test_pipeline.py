"""The training pipeline: registration, promotion by alias, the MLflow record, reproducibility."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from features.definitions import FEATURE_SET
from training.cli import app


def test_first_run_registers_champion_with_full_record(trained) -> None:
    config, outcome = trained
    mlflow.set_tracking_uri(config.tracking_uri)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(config.registered_model, "champion")
    assert str(champion.version) == outcome.model_version
    assert outcome.alias == "champion"
    run = client.get_run(outcome.run_id)
    assert run.data.tags["feature_set.name"] == FEATURE_SET.name
    assert run.data.tags["feature_set.version"] == FEATURE_SET.version
    assert "git_commit" in run.data.tags and "library.lightgbm" in run.data.tags
    for name in ("random", "red_flag_rules", "logistic_regression"):
        assert f"baseline_{name}_precision_at_2pct" in run.data.metrics
    for metric in ("precision_at_1pct", "recall_at_5pct", "seized_kg_share_at_10pct", "pr_auc", "brier"):
        assert f"test_{metric}" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {
        "config.json",
        "lineage.json",
        "feature_set.json",
        "inspection_policy.json",
        "evaluation_report.md",
    } <= artifacts
    plots = {a.path for a in client.list_artifacts(outcome.run_id, "plots")}
    assert (
        "plots/precision_recall_at_inspection_rate.png" in plots and "plots/feature_importance.png" in plots
    )
    lineage = json.loads(mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/lineage.json"))
    assert lineage["train"]["rows"] > 0 and len(lineage["test"]["sha256"]) == 64
    assert pd.Timestamp(lineage["train"]["to"]) < pd.Timestamp(lineage["validation"]["from"])
    assert pd.Timestamp(lineage["validation"]["to"]) < pd.Timestamp(lineage["test"]["from"])
    inputs = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert {"declarations-train", "declarations-validation", "declarations-test"} <= inputs
    assert champion.tags["sha256.scorer"]


def test_run_records_what_validation_rejected_in_the_configured_experiment(trained) -> None:
    config, outcome = trained
    mlflow.set_tracking_uri(config.tracking_uri)
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    assert run.info.experiment_id == client.get_experiment_by_name(config.experiment).experiment_id
    metrics = run.data.metrics
    for table in ("declarations", "seizures"):
        assert metrics[f"contract_{table}_rows_read"] == metrics[f"contract_{table}_rows_valid"] > 0
        assert metrics[f"contract_{table}_rows_rejected"] == metrics[f"contract_{table}_reject_share"] == 0
    logged = {a.path for a in client.list_artifacts(outcome.run_id, "contract")}
    assert logged == {
        "contract/report.json",
        "contract/declarations_rejects.csv",
        "contract/seizures_rejects.csv",
    }
    report = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/contract/report.json")
    assert report["tables"]["declarations"]["rows_rejected"] == 0
    assert report["max_reject_share"] == config.max_reject_share


def test_same_data_and_seed_reproduce_the_model_and_stay_challenger(trained) -> None:
    from training.pipeline import train

    config, first = trained
    second = train(config)
    assert second.metrics == first.metrics
    assert second.alias == "challenger"
    assert "does not beat champion" in second.promotion_reason
    client = MlflowClient()
    assert (
        str(client.get_model_version_by_alias(config.registered_model, "champion").version)
        == first.model_version
    )


def test_logged_model_predicts_calibrated_probabilities(trained, small_history) -> None:
    config, outcome = trained
    mlflow.set_tracking_uri(config.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{config.registered_model}/{outcome.model_version}")
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features

    tables = load_contract_tables(small_history / "declarations.parquet", small_history / "seizures.parquet")
    features = build_features(tables.declarations.tail(500), tables.seizures, load_reference())
    predicted = model.predict(features)
    assert set(predicted.columns) == {"risk_score", "channel"}
    assert predicted["risk_score"].between(0, 1).all()
    assert predicted["risk_score"].nunique() > 10  # probabilities, not 0/1 labels


def test_backtest_cli_writes_scores_and_metrics_for_exactly_the_test_window(small_history, tmp_path) -> None:
    declarations = pd.read_parquet(small_history / "declarations.parquet")
    seizures = pd.read_parquet(small_history / "seizures.parquet")
    # only the contract's required columns, as CSV
    from features.contract import DECLARATION_COLUMNS, SEIZURE_COLUMNS

    required_d = [c.name for c in DECLARATION_COLUMNS if c.required]
    required_s = [c.name for c in SEIZURE_COLUMNS if c.required] + [
        "declaration_id",
        "exporter_id",
        "consignee_id",
    ]
    declarations[required_d].to_csv(tmp_path / "d.csv", index=False)
    seizures[required_s].to_csv(tmp_path / "s.csv", index=False)
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--declarations",
            str(tmp_path / "d.csv"),
            "--seizures",
            str(tmp_path / "s.csv"),
            "--train-until",
            "2023-04-01",
            "--test-from",
            "2023-04-01",
            "--test-to",
            "2023-06-01",
            "--out",
            str(tmp_path / "bt"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "bt" / "scores.csv", dtype={"declaration_id": str})
    at = pd.to_datetime(declarations["declared_at"])
    expected = declarations.loc[(at >= "2023-04-01") & (at < "2023-06-01"), "declaration_id"]
    assert list(scores.columns) == ["declaration_id", "risk_score"]
    assert sorted(scores["declaration_id"]) == sorted(expected)
    assert scores["risk_score"].between(0, 1).all()
    metrics = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert {
        "precision_at_1pct",
        "recall_at_2pct",
        "seized_kg_share_at_5pct",
        "pr_auc",
        "roc_auc",
        "brier",
        "calibration_error",
    } <= set(metrics["model"])
    assert set(metrics["baselines"]) == {"random", "red_flag_rules", "logistic_regression"}
    contract = metrics["contract"]["tables"]
    assert (
        contract["declarations"]["rows_read"] == contract["declarations"]["rows_valid"] == len(declarations)
    )
    assert contract["declarations"]["rows_rejected"] == contract["seizures"]["rows_rejected"] == 0


def test_nothing_after_train_until_influences_the_fitted_model(small_history) -> None:
    """Changing every seizure and declaration after --train-until leaves the model unchanged."""
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features, fit_and_evaluate
    from training.config import TrainingConfig

    tables = load_contract_tables(small_history / "declarations.parquet", small_history / "seizures.parquet")
    declarations, seizures = tables.declarations, tables.seizures
    train_until, test_from, test_to = (pd.Timestamp(d) for d in ("2023-04-01", "2023-04-01", "2023-06-01"))
    reference = load_reference()
    config = TrainingConfig()
    base = fit_and_evaluate(
        declarations,
        seizures,
        build_features(declarations, seizures, reference),
        config,
        train_until,
        test_from,
        test_to,
    )
    # the future: drop half the later seizures and invent seizures for later declarations
    later = seizures["seized_at"] >= train_until
    rng = np.random.default_rng(0)
    kept = seizures.loc[~later | (rng.random(len(seizures)) < 0.5)]
    invented = declarations.loc[declarations["declared_at"] >= train_until].sample(200, random_state=0)
    extra = pd.DataFrame(
        {
            "seizure_id": ("FAKE" + invented["declaration_id"]).astype("str"),
            "seized_at": invented["declared_at"] + pd.Timedelta(days=3),
            "declaration_id": invented["declaration_id"],
            "exporter_id": invented["exporter_id"],
            "consignee_id": pd.Series([None] * len(invented), dtype="str", index=invented.index),
            "country": pd.Series(["IN"] * len(invented), dtype="str", index=invented.index),
            "substance": pd.Series(["tramadol"] * len(invented), dtype="str", index=invented.index),
            "quantity_kg": 1.0,
            "agency": pd.Series(["NCB"] * len(invented), dtype="str", index=invented.index),
        }
    )
    future = pd.concat([kept, extra], ignore_index=True)
    changed = fit_and_evaluate(
        declarations,
        future,
        build_features(declarations, future, reference),
        config,
        train_until,
        test_from,
        test_to,
    )
    assert base.scorer.booster.model_to_string() == changed.scorer.booster.model_to_string()
    assert base.scorer.calibration == changed.scorer.calibration
    assert base.scorer.policy == changed.scorer.policy
    # ... while the evaluation itself does see the changed test-window labels
    assert not np.array_equal(base.test_labels.diverted, changed.test_labels.diverted)


def test_train_refuses_bad_contract_files_with_a_clear_message(tmp_path) -> None:
    (tmp_path / "d.csv").write_text("declaration_id,declared_at\nX,2024-01-01\n")
    (tmp_path / "s.csv").write_text(
        "seizure_id,seized_at,country,substance,exporter_id\nS,2024-01-01,IN,tramadol,E\n"
    )
    result = CliRunner().invoke(
        app, ["train", "--declarations", str(tmp_path / "d.csv"), "--seizures", str(tmp_path / "s.csv")]
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("rate", [0.01, 0.02, 0.05, 0.10])
def test_budget_metrics_count_the_top_share(rate: float) -> None:
    from training.evaluation import budget_metrics

    n = 1000
    scores = np.linspace(1, 0, n)
    diverted = np.zeros(n, dtype=bool)
    diverted[:10] = True  # the ten highest scores
    kg = np.where(diverted, 2.0, 0.0)
    metrics = budget_metrics(scores, diverted, kg, rates=(rate,))
    label = f"{rate * 100:g}pct"
    selected = int(np.ceil(rate * n))
    assert metrics[f"precision_at_{label}"] == pytest.approx(min(10, selected) / selected)
    assert metrics[f"recall_at_{label}"] == pytest.approx(min(10, selected) / 10)
    assert metrics[f"seized_kg_share_at_{label}"] == pytest.approx(min(10, selected) / 10)
