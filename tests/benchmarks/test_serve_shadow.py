"""`make bench-serve`'s shadow variant: a registry copy whose challenger the service accepts."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmarks.serve import _registry_with_a_challenger


def test_the_shadow_registry_is_a_copy_with_a_challenger_the_service_loads(trained, tmp_path, monkeypatch):
    from serving.engine import load_model, resolve_challenger
    from serving.settings import ServiceSettings

    config, outcome = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", config.tracking_uri)
    original = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    before = original.get_registered_model("diversion-risk").aliases

    shadow_uri = _registry_with_a_challenger(tmp_path)

    assert shadow_uri == f"sqlite:///{tmp_path / 'mlflow-shadow.db'}"
    assert original.get_registered_model("diversion-risk").aliases == before  # the user's registry
    settings = ServiceSettings(tracking_uri=shadow_uri)
    challenger = resolve_challenger(settings)
    assert challenger is not None and challenger.version != outcome.model_version
    loaded = load_model(settings, challenger)  # checksums verified, as the service does
    assert loaded.version == str(challenger.version)


def test_a_registry_that_is_not_a_sqlite_file_is_left_alone(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://postgres@127.0.0.1:5432/test")
    assert _registry_with_a_challenger(tmp_path) is None
    assert not (tmp_path / "mlflow-shadow.db").exists()
