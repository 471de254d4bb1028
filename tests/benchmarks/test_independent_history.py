"""The independent history generator: contract, determinism, diversion share, timing, imitation, networks.

One 30,000-row history (seed 7) is shared by the property tests. Each property is measured
by a small function that the last test also applies to deliberately broken copies, so a
tolerance that could never fail would show up there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.independent_history import MECHANISMS, main, write_independent_history
from features.validation import load_contract_tables

ROWS = 30_000
SEED = 7
#: Weighted mean |median log(value/kg)| gap, diverted vs legitimate, over the same goods.
#: Legitimate spread of log(value/kg) inside one kind of goods is about 0.3-0.35 (exporter
#: price level, per-shipment noise, packing), so 0.25 (about 28 % in price) is "within the
#: crowd"; a world where diverters priced at half the norm (gap 0.69) fails.
VALUE_GAP_LIMIT = 0.25
#: Total-variation distance between diverted transport-mode shares and legitimate shares of
#: the same goods (reweighted to the diverted goods mix). Two mechanisms differ on purpose:
#: courier parcels (about 6-8 % of diverted rows) and a codeine network that also moves
#: goods overland to Bangladesh; everything else uses the legitimate rule. 0.20 still fails
#: when diverters ship mostly by air, or a quarter of them switch mode.
MODE_DISTANCE_LIMIT = 0.20


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("independent")
    write_independent_history(folder, rows=ROWS, years=2.5, seed=SEED)
    return folder


@pytest.fixture(scope="module")
def frames(history: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (
        pd.read_parquet(history / "declarations.parquet"),
        pd.read_parquet(history / "seizures.parquet"),
        pd.read_parquet(history / "ground_truth.parquet"),
    )


# --------------------------------------------------------------------------- measures


def _labelled(declarations: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    frame = declarations.merge(truth, on="declaration_id", validate="one_to_one")
    first_word = frame["goods_description"].str.split().str[0].fillna("")
    return frame.assign(
        goods=frame["hs_code"] + "|" + first_word,
        log_value_per_kg=np.log(frame["declared_value_usd"] / frame["gross_weight_kg"]),
    )


def _comparable_goods(frame: pd.DataFrame, minimum: int = 20) -> pd.Series:
    """Diverted row counts for goods with at least `minimum` diverted and legitimate rows."""
    diverted = frame[frame["diverted"]].groupby("goods").size()
    legitimate = frame[~frame["diverted"]].groupby("goods").size()
    both = diverted.index.intersection(legitimate[legitimate >= minimum].index)
    return diverted[both][diverted[both] >= minimum]


def value_gap(frame: pd.DataFrame) -> float:
    counts = _comparable_goods(frame)
    medians = (
        frame[frame["goods"].isin(counts.index)].groupby(["goods", "diverted"])["log_value_per_kg"].median()
    )
    gap = (medians.xs(True, level="diverted") - medians.xs(False, level="diverted"))[counts.index]
    return float(np.average(gap.abs(), weights=counts))


def mode_distance(frame: pd.DataFrame) -> float:
    counts = _comparable_goods(frame)
    chosen = frame[frame["goods"].isin(counts.index)]
    legitimate = chosen[~chosen["diverted"]]
    shares = (
        legitimate.groupby("goods")["transport_mode"].value_counts(normalize=True).unstack(fill_value=0.0)
    )
    expected = shares.loc[counts.index].mul(counts / counts.sum(), axis=0).sum()
    observed = chosen[chosen["diverted"]]["transport_mode"].value_counts(normalize=True)
    return float(0.5 * observed.sub(expected, fill_value=0.0).abs().sum())


def buyer_sharing(frame: pd.DataFrame) -> tuple[int, float]:
    """Diversion buyers supplied by 3+ diverting exporters, and the share of diverted rows
    that go to buyers supplied by 2+ diverting exporters."""
    diverted = frame[frame["diverted"]]
    exporters = diverted.groupby("consignee_id")["exporter_id"].nunique()
    return int((exporters >= 3).sum()), float(diverted["consignee_id"].map(exporters).ge(2).mean())


# --------------------------------------------------------------------------- tests


def test_tables_pass_the_contract_loader_with_nothing_rejected(history: Path, tmp_path: Path) -> None:
    tables = load_contract_tables(
        history / "declarations.parquet", history / "seizures.parquet", rejects_dir=tmp_path
    )
    assert tables.report.rows_rejected == {"declarations": 0, "seizures": 0}
    assert len(tables.declarations) == ROWS
    assert len(tables.seizures) > 100
    assert tables.report.warnings == []  # no extra columns


def test_csv_output_passes_the_contract_loader(tmp_path: Path) -> None:
    write_independent_history(tmp_path, rows=8_000, years=2.0, seed=3, fmt="csv")
    tables = load_contract_tables(tmp_path / "declarations.csv", tmp_path / "seizures.csv")
    assert tables.report.rows_rejected == {"declarations": 0, "seizures": 0}
    assert tables.declarations["hs_code"].str.fullmatch(r"\d{8}").all()  # leading digits kept as text
    truth = pd.read_csv(tmp_path / "ground_truth.csv")
    assert len(truth) == 8_000


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    names = ("declarations.parquet", "seizures.parquet", "ground_truth.parquet")
    for folder, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_independent_history(tmp_path / folder, rows=6_000, years=2.0, seed=seed)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_diverted_share_and_mechanisms(frames) -> None:
    declarations, _, truth = frames
    share = truth["diverted"].mean()
    assert 0.015 <= share <= 0.025
    assert set(truth["mechanism"]) <= set(MECHANISMS)
    assert (truth.loc[truth["diverted"], "mechanism"].value_counts(normalize=True) < 0.35).all()
    assert truth.loc[truth["diverted"], "mechanism"].nunique() >= 7


def test_ground_truth_is_aligned_with_declarations(frames) -> None:
    declarations, _, truth = frames
    assert truth.columns.tolist() == ["declaration_id", "diverted", "mechanism"]
    assert truth["declaration_id"].tolist() == declarations["declaration_id"].tolist()
    assert declarations["declaration_id"].is_unique
    assert truth["diverted"].dtype == bool
    assert ((truth["mechanism"] == "legitimate") == ~truth["diverted"]).all()
    assert declarations["declared_at"].is_monotonic_increasing
    span = declarations["declared_at"].max() - declarations["declared_at"].min()
    assert span > pd.Timedelta(days=2.4 * 365)


def test_seizures_tied_to_a_declaration_come_after_its_filing(frames) -> None:
    declarations, seizures, truth = frames
    tied = seizures[seizures["declaration_id"] != ""].merge(
        declarations[["declaration_id", "declared_at", "exporter_id"]],
        on="declaration_id",
        how="left",
        suffixes=("", "_declared"),
        validate="many_to_one",
    )
    assert tied["declared_at"].notna().all()  # every named declaration exists
    lag = tied["seized_at"] - tied["declared_at"].dt.floor("D")
    assert (lag >= pd.Timedelta(0)).all()
    assert (lag > pd.Timedelta(days=180)).any()  # some seizures come after the label window
    named = tied["exporter_id"] != ""
    assert (tied.loc[named, "exporter_id"] == tied.loc[named, "exporter_id_declared"]).all()
    # Only part of the diverted declarations are ever seized; a few legitimate ones are.
    seized = declarations["declaration_id"].isin(tied["declaration_id"])
    assert 0.25 <= seized[truth["diverted"]].mean() <= 0.65
    assert 0 < seized[~truth["diverted"]].mean() < 0.002
    assert ((seizures["declaration_id"] == "") & (seizures["exporter_id"] == "")).any()  # consignee-only


def test_diverted_shipments_imitate_legitimate_ones_of_the_same_goods(frames) -> None:
    declarations, _, truth = frames
    frame = _labelled(declarations, truth)
    counts = _comparable_goods(frame)
    assert counts.sum() >= 0.6 * frame["diverted"].sum()  # the comparison covers most diverted rows
    assert value_gap(frame) <= VALUE_GAP_LIMIT
    assert mode_distance(frame) <= MODE_DISTANCE_LIMIT


def test_several_exporters_share_diversion_buyers(frames) -> None:
    declarations, _, truth = frames
    widely_supplied, shared_rows = buyer_sharing(_labelled(declarations, truth))
    assert widely_supplied >= 5
    assert shared_rows >= 0.5


def test_the_measures_catch_broken_worlds(frames) -> None:
    declarations, _, truth = frames
    frame = _labelled(declarations, truth)
    diverted = frame["diverted"]

    cheap = frame.copy()
    cheap.loc[diverted, "log_value_per_kg"] += np.log(0.5)
    assert value_gap(cheap) > VALUE_GAP_LIMIT

    flown = frame.copy()
    flown.loc[diverted, "transport_mode"] = "AIR"
    assert mode_distance(flown) > MODE_DISTANCE_LIMIT
    shifted = frame.copy()
    sea = shifted.index[diverted & (shifted["transport_mode"] == "SEA")]
    shifted.loc[sea[: int(0.45 * len(sea))], "transport_mode"] = "AIR"
    assert mode_distance(shifted) > MODE_DISTANCE_LIMIT

    private = frame.copy()
    private.loc[diverted, "consignee_id"] = [f"X{i}" for i in range(int(diverted.sum()))]
    assert buyer_sharing(private) == (0, 0.0)


def test_command_line_prints_one_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path), "--rows", "3000", "--years", "1.5", "--seed", "2", "--format", "csv"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "3,000 declarations" in lines[0] and "diverted" in lines[0]
    assert {p.name for p in tmp_path.iterdir()} == {"declarations.csv", "seizures.csv", "ground_truth.csv"}
