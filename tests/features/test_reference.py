"""Reference tables: packaged CSVs, HS prefix look-ups and substance keywords in text."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from features.reference import ReferenceTables, load_reference


@pytest.fixture(scope="module")
def reference() -> ReferenceTables:
    return load_reference()


def test_tables_load_with_sources(reference: ReferenceTables) -> None:
    for name in ("controlled_hs", "substance_terms", "pharma_hs", "ports", "hubs"):
        frame = getattr(reference, name)
        assert len(frame) > 0, name
        assert "source" in frame.columns, name
        assert (frame["source"].str.len() > 0).all(), name
    assert load_reference() is reference  # cached


def test_controlled_hs_codes_and_status(reference: ReferenceTables) -> None:
    table = reference.controlled_hs.set_index("hs_prefix")
    assert table.index.str.fullmatch(r"\d{4}|\d{6}").all()
    assert set(table["category"]) <= {"precursor", "narcotic", "psychotropic"}
    assert set(table["status"]) <= {"confirmed", "unconfirmed"}
    assert table.loc["293942", "substance"] == "pseudoephedrine"
    assert table.loc["293942", "status"] == "confirmed"
    for unconfirmed in ("292250", "293336", "291431", "293339", "293941"):
        assert table.loc[unconfirmed, "status"] == "unconfirmed", unconfirmed
    # Dosage forms are not controlled by heading: 3004 must not be a controlled prefix.
    assert not table.index.str.startswith("3004").any()


def test_controlled_substance_prefix_match(reference: ReferenceTables) -> None:
    codes = pd.Series(
        ["29224100", "292250", "29225090", "30049099", "293911", "293391", "293399"], index=list("abcdefg")
    )
    result = reference.controlled_substance(codes)
    assert result.index.tolist() == list("abcdefg")
    assert result.isna().tolist() == [True, False, False, True, False, False, True]
    assert result["b"] == "tramadol" and result["c"] == "tramadol" and result["f"] == "benzodiazepines"
    assert reference.is_controlled(codes).tolist() == [False, True, True, False, True, True, False]


def test_four_digit_prefix_falls_back() -> None:
    base = load_reference()
    extra = pd.concat(
        [
            base.controlled_hs,
            pd.DataFrame(
                [
                    {
                        "hs_prefix": "1211",
                        "substance": "test-plant",
                        "category": "narcotic",
                        "status": "unconfirmed",
                        "source": "test",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    tables = ReferenceTables(extra, base.substance_terms, base.pharma_hs, base.ports, base.hubs)
    assert tables.controlled_substance(pd.Series(["12119099", "293942"])).tolist() == [
        "test-plant",
        "pseudoephedrine",
    ]


def test_substance_in_text_word_boundaries(reference: ReferenceTables) -> None:
    descriptions = pd.Series(
        [
            "DICLOFENAC SODIUM TABLETS 50MG",
            "Tramadol 225mg tablets",
            "PSEUDOEPHEDRINE HYDROCHLORIDE USP",
            "DIHYDROCODEINE? no: dihydrocodeine bitartrate",
            "4-ANPP technical",
            None,
            "",
            "ALPRAZOLAM TABLETS 0.5MG",
            "SNACKS (ASSORTED) WITH CODEINE SYRUP",
        ]
    )
    found = reference.substance_in_text(descriptions)
    assert pd.isna(found[0]) and found[1] == "tramadol" and found[2] == "pseudoephedrine"
    assert pd.isna(found[3]) and found[4] == "anpp"
    assert pd.isna(found[5]) and pd.isna(found[6])
    assert found[7] == "benzodiazepines"
    assert found[8] == "codeine"


def test_substance_in_text_is_fast(reference: ReferenceTables) -> None:
    rng = np.random.default_rng(0)
    templates = reference.pharma_hs["description_templates"].str.split("|").explode().tolist()
    templates += ["TRAMADOL HYDROCHLORIDE TABLETS 100MG"]
    descriptions = (
        pd.Series(rng.choice(templates, 1_000_000))
        + " BATCH "
        + pd.Series(rng.integers(0, 5000, 1_000_000)).astype(str)
    )
    start = time.perf_counter()
    found = reference.substance_in_text(descriptions)
    assert time.perf_counter() - start < 15
    assert found.notna().any()


def test_hubs_and_ports(reference: ReferenceTables) -> None:
    assert {"AE", "SG", "HK", "LK", "TG"} <= reference.hub_countries
    assert "IN" not in reference.hub_countries
    ports = reference.ports.set_index("locode")
    assert ports.index.str.fullmatch(r"IN[A-Z]{3}").all()
    assert "SEA" in ports.loc["INNSA", "modes"].split("|")
    assert "COURIER" in ports.loc["INBOM", "modes"].split("|")


def test_pharma_headings_have_values(reference: ReferenceTables) -> None:
    pharma = reference.pharma_hs
    assert pharma["hs_code"].str.fullmatch(r"\d{6}").all()
    assert (pharma["typical_unit_value_usd"] > 0).all()
    assert not reference.is_controlled(pharma["hs_code"]).any()
