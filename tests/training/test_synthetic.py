"""Synthetic export history: contract shape, determinism, label realism, no label leaks in ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import (
    DECLARATION_COLUMNS,
    LABEL_WINDOW_DAYS,
    PAYMENT_TERMS,
    QUANTITY_UNITS,
    SEIZURE_COLUMNS,
    TRANSPORT_MODES,
    column_names,
)
from features.reference import load_reference
from training.synthetic import (
    DRIFT_TYPOLOGY,
    LEGITIMATE,
    TYPOLOGY_RATES,
    WEST_AFRICA,
    generate_history,
    write_history,
)

ROWS = 5_000


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # 40k rows: enough that every typology and seizure kind appears, still about a second.
    return generate_history(rows=40_000, years=3.0, seed=11)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_history(tmp_path / name, rows=ROWS, years=1.0, seed=seed, fmt=fmt)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert set(a) == {f"declarations.{fmt}", f"seizures.{fmt}", f"ground_truth.{fmt}"}
    assert a == b
    assert a[f"declarations.{fmt}"] != c[f"declarations.{fmt}"]


def test_files_pass_contract_validation(tmp_path: Path) -> None:
    validation = pytest.importorskip("features.validation")
    write_history(tmp_path, rows=ROWS, years=1.0, seed=5, fmt="csv")
    tables = validation.load_contract_tables(
        tmp_path / "declarations.csv",
        tmp_path / "seizures.csv",
        None,
        rejects_dir=tmp_path,
        max_reject_share=0.0,
    )
    assert len(tables.declarations) == ROWS


def test_contract_columns_and_enums(history) -> None:
    declarations, seizures, truth = history
    assert list(declarations.columns) == column_names(DECLARATION_COLUMNS)
    assert list(seizures.columns) == column_names(SEIZURE_COLUMNS)
    assert list(truth.columns[:3]) == ["declaration_id", "typology", "diverted"]
    assert declarations["declaration_id"].is_unique and seizures["seizure_id"].is_unique
    assert declarations["declared_at"].is_monotonic_increasing
    assert (declarations["declared_at"].dt.hour != 0).any()  # timestamps, not dates
    assert set(declarations["transport_mode"]) <= set(TRANSPORT_MODES)
    assert set(declarations["quantity_unit"]) <= set(QUANTITY_UNITS)
    assert set(declarations["payment_terms"].dropna()) <= set(PAYMENT_TERMS)
    assert declarations["hs_code"].str.fullmatch(r"\d{6}|\d{8}").all()
    assert declarations["port_of_loading"].str.fullmatch(r"IN[A-Z]{3}").all()
    assert (declarations["quantity"] > 0).all()
    assert (declarations[["gross_weight_kg", "declared_value_usd"]] >= 0).all().all()
    for column in ("consignee_country", "destination_country", "transshipment_country"):
        assert declarations[column].dropna().str.fullmatch(r"[A-Z]{2}").all()
    links = seizures[["declaration_id", "exporter_id", "consignee_id"]].notna().any(axis=1)
    assert links.all()
    assert (truth["declaration_id"] == declarations["declaration_id"]).all()


def test_legitimate_trade_dominates_and_positive_rate_in_band(history) -> None:
    declarations, seizures, truth = history
    assert 0.015 <= truth["diverted"].mean() <= 0.04
    linked = seizures.dropna(subset=["declaration_id"]).merge(declarations, on="declaration_id")
    lag = linked["seized_at"] - linked["declared_at"]
    positive = set(linked.loc[lag <= pd.Timedelta(days=LABEL_WINDOW_DAYS), "declaration_id"])
    rate = declarations["declaration_id"].isin(positive).mean()
    assert 0.007 <= rate <= 0.025
    # Label noise both ways: diverted never seized, and a few legitimate ones seized for paperwork.
    diverted_ids = set(truth.loc[truth["diverted"], "declaration_id"])
    assert len(diverted_ids - positive) > 0.3 * len(diverted_ids)
    seized = set(seizures["declaration_id"].dropna())
    assert 0.4 <= len(diverted_ids & seized) / len(diverted_ids) <= 0.6
    legit_seized = len(positive - diverted_ids)
    assert 0 < legit_seized < 0.005 * len(declarations)


def test_every_typology_present_and_drift_only_when_asked(history) -> None:
    _, _, truth = history
    counts = truth["typology"].value_counts()
    assert set(TYPOLOGY_RATES) | {LEGITIMATE} == set(counts.index)
    drifted = generate_history(rows=20_000, seed=11, drift=True)[2]
    late = drifted.merge(generate_history(rows=20_000, seed=11, drift=True)[0], on="declaration_id")
    drift_rows = late[late["typology"] == DRIFT_TYPOLOGY]
    assert len(drift_rows) > 0
    middle = late["declared_at"].min() + (late["declared_at"].max() - late["declared_at"].min()) / 2
    assert (drift_rows["declared_at"] >= middle - pd.Timedelta(days=2)).all()
    assert set(drift_rows["destination_country"]) <= {"LY", "SD", "YE"}


def test_diverted_rows_show_a_subset_of_red_flags(history) -> None:
    _, _, truth = history
    flags = truth.loc[truth["diverted"], "red_flags"].str.count(";") + 1
    assert flags.min() == 1 and flags.max() == 4
    assert flags.nunique() == 4


def test_seizures_never_before_declaration_and_intelligence_exists(history) -> None:
    declarations, seizures, _ = history
    linked = seizures.dropna(subset=["declaration_id"]).merge(declarations, on="declaration_id")
    assert len(linked) == seizures["declaration_id"].notna().sum()  # every link resolves
    assert (linked["seized_at"] > linked["declared_at"]).all()
    lag_days = (linked["seized_at"] - linked["declared_at"]).dt.days
    assert (lag_days > LABEL_WINDOW_DAYS).any()  # some seizures come too late for the label
    assert seizures["seized_at"].max() <= declarations["declared_at"].max() + pd.Timedelta(days=1)
    intelligence = seizures[seizures["declaration_id"].isna()]
    assert len(intelligence) > 0
    assert (intelligence["exporter_id"].notna() ^ intelligence["consignee_id"].notna()).all()
    assert {"IN"} < set(seizures["country"])


def test_legitimate_controlled_exports_with_authorisation(history) -> None:
    declarations, _, truth = history
    reference = load_reference()
    named = reference.substance_in_text(declarations["goods_description"]).notna().to_numpy()
    controlled = reference.is_controlled(declarations["hs_code"]) | named
    legit = ~truth["diverted"].to_numpy()
    authorised = declarations["export_authorization_id"].notna().to_numpy()
    assert (legit & controlled & authorised).sum() > 100
    # ... and single red flags appear in legitimate trade too.
    legit_rows = declarations[legit]
    assert (legit_rows["transport_mode"].isin(["COURIER", "POST"])).sum() > 50
    assert legit_rows["transshipment_country"].notna().sum() > 100
    assert (legit_rows["payment_terms"] == "ADVANCE").sum() > 100
    assert (legit_rows["consignee_country"] != legit_rows["destination_country"]).sum() > 100
    assert legit_rows["destination_country"].isin(["NG", "GH"]).sum() > 100


def test_legitimate_trade_shows_red_flags_in_combination(history) -> None:
    declarations, _, truth = history
    merged = declarations.merge(truth, on="declaration_id")
    legit = merged[~merged["diverted"]]
    # Licensed tramadol for West African importers, under authorisation.
    tramadol_to_west_africa = (
        legit["goods_description"].str.contains("TRAMADOL")
        & legit["destination_country"].isin(list(WEST_AFRICA))
        & legit["export_authorization_id"].notna()
    )
    assert tramadol_to_west_africa.sum() > 100
    # Parcels to the big retail markets, and hub transshipment paid in advance.
    parcels = legit["transport_mode"].isin(["COURIER", "POST"]) & legit["destination_country"].isin(
        ["US", "GB", "AU"]
    )
    assert parcels.sum() > 300
    assert (legit["transshipment_country"].notna() & (legit["payment_terms"] == "ADVANCE")).sum() > 100
    # Start-ups (first seen after the start) shipping controlled goods under authorisation.
    first_seen = merged.groupby("exporter_id")["declared_at"].transform("min")
    startup = first_seen > merged["declared_at"].min() + pd.Timedelta(days=60)
    young = merged["declared_at"] - first_seen < pd.Timedelta(days=180)
    assert (~merged["diverted"] & startup & young & merged["export_authorization_id"].notna()).sum() > 20


def test_diverters_have_a_history_and_a_seizure_is_no_verdict(history) -> None:
    declarations, seizures, truth = history
    merged = declarations.merge(truth, on="declaration_id").sort_values("declared_at")
    per_exporter = merged[merged["diverted"]].groupby("exporter_id").size()
    assert per_exporter.median() >= 2 and per_exporter.max() >= 10
    # Share of declarations filed after a seizure naming their exporter.
    named = seizures.dropna(subset=["exporter_id"]).sort_values("seized_at")[["exporter_id", "seized_at"]]
    after = pd.merge_asof(
        merged, named, left_on="declared_at", right_on="seized_at", by="exporter_id", direction="backward"
    )
    prior = after["seized_at"].notna()
    diverted = after["diverted"]
    assert 0.15 < prior[diverted].mean() < 0.8  # later shipments of diverters carry the signal
    assert prior[~diverted].mean() > 0.2  # legitimate exporters collect findings too
    assert diverted[prior].mean() < 0.2
    # Diversion is steady over time (deterrence does not drain it).
    half = (
        merged["declared_at"]
        < merged["declared_at"].min() + (merged["declared_at"].max() - merged["declared_at"].min()) / 2
    )
    early, late = merged.loc[half, "diverted"].mean(), merged.loc[~half, "diverted"].mean()
    assert 0.67 < early / late < 1.5


def test_ids_do_not_encode_the_label(history) -> None:
    declarations, _, truth = history
    merged = declarations.merge(truth, on="declaration_id")
    for column, pattern in (
        ("exporter_id", r"\d{10}"),
        ("consignee_id", r"C\d{7}"),
        ("declaration_id", r"SB\d{8}"),
    ):
        assert merged[column].str.fullmatch(pattern).all(), column
        ids = merged[column].str.replace(r"\D", "", regex=True).astype(np.int64)
        div, legit = ids[merged["diverted"]], ids[~merged["diverted"]]
        # Ranges overlap and the medians are close (relative to the spread).
        assert div.min() < legit.max() and legit.min() < div.max(), column
        assert abs(div.median() - legit.median()) < 0.35 * (legit.max() - legit.min()), column
    brokers = merged["customs_broker_id"].dropna()
    assert brokers.str.fullmatch(r"CB\d{5}").all()
    # Diverting exporters also ship ordinary goods.
    diverting = set(merged.loc[merged["diverted"], "exporter_id"])
    assert merged.loc[~merged["diverted"], "exporter_id"].isin(diverting).sum() > 0


def test_exporter_sizes_are_heavy_tailed_and_new_exporters_appear(history) -> None:
    declarations, _, _ = history
    sizes = declarations["exporter_id"].value_counts()
    assert sizes.iloc[0] > 20 * sizes.median()
    first_seen = declarations.groupby("exporter_id")["declared_at"].min()
    start = declarations["declared_at"].min()
    assert (first_seen > start + pd.Timedelta(days=365)).sum() > 20
    assert declarations["destination_country"].nunique() > 40


# --- adversarial preset: diverters imitate legitimate traders and work in networks ------------


@pytest.fixture(scope="module")
def adversarial() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return generate_history(rows=40_000, years=3.0, seed=11, preset="adversarial")


def _red_flag_counts(truth: pd.DataFrame) -> pd.Series:
    diverted = truth.loc[truth["diverted"], "red_flags"].fillna("")
    return diverted.str.count(";") + (diverted != "")


def test_adversarial_preset_is_deterministic_and_leaves_the_default_world_alone(tmp_path: Path) -> None:
    for name, preset in (("a", "adversarial"), ("b", "adversarial"), ("c", "default")):
        write_history(tmp_path / name, rows=ROWS, years=1.0, seed=3, fmt="parquet", preset=preset)
    write_history(tmp_path / "d", rows=ROWS, years=1.0, seed=3, fmt="parquet")
    a, b, c, d = (_digest(tmp_path / n) for n in "abcd")
    assert a == b
    assert c == d  # "default" is the world without a preset
    assert a["declarations.parquet"] != c["declarations.parquet"]
    with pytest.raises(ValueError, match="unknown preset 'sneaky'"):
        generate_history(rows=ROWS, preset="sneaky")


def test_adversarial_diverters_show_fewer_and_milder_red_flags(history, adversarial) -> None:
    reference = load_reference()
    default_flags, adversarial_flags = _red_flag_counts(history[2]), _red_flag_counts(adversarial[2])
    assert adversarial_flags.mean() < default_flags.mean() - 0.3
    assert 0.015 < adversarial[2]["diverted"].mean() < 0.03

    def unauthorised_share(declarations: pd.DataFrame, truth: pd.DataFrame) -> float:
        rows = declarations[truth["diverted"].to_numpy()]
        controlled = pd.notna(reference.controlled_substance_array(rows["hs_code"].to_numpy(dtype=object)))
        named = pd.notna(reference.substance_in_text_array(rows["goods_description"].to_numpy(dtype=object)))
        missing = rows["export_authorization_id"].isna().to_numpy()
        return float(((controlled | named) & missing).mean())

    assert unauthorised_share(adversarial[0], adversarial[2]) < 0.6 * unauthorised_share(
        history[0], history[2]
    )


def test_adversarial_rings_share_shell_consignees_and_complicit_brokers(history, adversarial) -> None:
    def network(declarations: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
        diverted = declarations[truth["diverted"].to_numpy()]
        # consignees receiving diverted goods from several exporters; brokers filing for several diverters
        exporters_per_consignee = diverted.groupby("consignee_id")["exporter_id"].nunique()
        diverters_per_broker = diverted.groupby("customs_broker_id")["exporter_id"].nunique()
        shared = diverted["consignee_id"].map(exporters_per_consignee).ge(3).mean()
        top_brokers = diverters_per_broker.nlargest(6).sum() / diverted["exporter_id"].nunique()
        return float(shared), float(top_brokers)

    default_shared, default_brokers = network(history[0], history[2])
    adversarial_shared, adversarial_brokers = network(adversarial[0], adversarial[2])
    assert adversarial_shared > default_shared + 0.1
    assert adversarial_brokers > default_brokers + 0.2
