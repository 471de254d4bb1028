"""The robustness harness: kinds × seeds on a tiny history, mean ± std, ablation by feature family."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.previous_release import PREVIOUS_RELEASE
from benchmarks.robustness import (
    ALL_FEATURES,
    METHODS,
    RobustnessSettings,
    evaluate_robustness,
    feature_families,
    generator_options,
    history_writer,
    reachable_recall,
    truth_recall,
)
from features.definitions import FEATURE_SET


def test_harness_runs_on_a_tiny_history_with_ablation(tmp_path) -> None:
    settings = RobustnessSettings(
        kinds=("default", "no-such-preset"),
        seeds=(1, 2),
        rows=20_000,
        years=2.0,
        trials=1,
        ablation=True,
        out=tmp_path,
        booster={"max_rounds": 40},  # fast: the harness's plumbing, not the model, is under test
    )
    said: list[str] = []
    report = evaluate_robustness(settings, say=said.append)
    families = feature_families()
    records = report.records
    assert set(records["kind"]) == {"default"} and set(records["seed"]) == {1, 2}
    full = records.loc[records["variant"] == ALL_FEATURES]
    assert len(full) == 2 * len(METHODS)
    # the model once per dropped family and seed, and the previous release's model once per seed
    assert len(records) - len(full) == 2 * (len(families) + 1)
    previous = records.loc[records["variant"] == PREVIOUS_RELEASE]
    assert list(previous["method"]) == ["lightgbm", "lightgbm"]
    over = report.gain_over_previous().set_index("kind")
    model_r5 = full.loc[full["method"] == "lightgbm"].set_index("seed")["recall_at_5pct"]
    assert over.loc["default", "recall_at_5pct_mean"] == np.mean(
        model_r5 - previous.set_index("seed")["recall_at_5pct"]
    )
    assert PREVIOUS_RELEASE in list(report.kind_table("default")["method"])

    summary = report.summary()
    shown = summary.loc[summary["variant"] == ALL_FEATURES]
    assert list(shown["method"]) == list(METHODS) and (shown["seeds"] == 2).all()
    model = full.loc[full["method"] == "lightgbm", "precision_at_2pct"]
    row = shown.loc[shown["method"] == "lightgbm"].iloc[0]
    assert row["precision_at_2pct_mean"] == np.mean(model)
    assert row["precision_at_2pct_std"] == np.std(model, ddof=1)

    gains = report.family_gains()
    assert set(gains["family"]) == set(families)
    assert np.isfinite(gains["recall_at_5pct_mean"]).all()

    # ground truth read from the generated history: the ceiling bounds every method's recall at 5 %
    assert full["reachable_recall_at_5pct"].notna().all()
    assert (full["recall_at_5pct"] <= full["reachable_recall_at_5pct"] + 1e-12).all()
    assert full["truth_recall_at_5pct"].between(0.0, 1.0).all()
    room = report.headroom().set_index("kind")
    reachable = full.loc[full["method"] == "lightgbm"].set_index("seed")["reachable_recall_at_5pct"]
    before = previous.set_index("seed")["recall_at_5pct"]
    assert room.loc["default", "gain_mean"] == over.loc["default", "recall_at_5pct_mean"]
    assert np.isclose(room.loc["default", "closed_mean"], np.mean((model_r5 - before) / (reachable - before)))

    assert "no-such-preset" in report.skipped  # an unknown kind is skipped with why, not a crash
    assert any("skipping kind 'no-such-preset'" in line for line in said)
    text = (tmp_path / "robustness.md").read_text()
    assert "### default (2 seeds)" in text and " ± " in text and "ablation" in text
    assert "minus the previous release" in text and "against its ceiling" in text
    assert (tmp_path / "records.csv").exists()


def test_kinds_map_to_generator_options() -> None:
    def with_preset(out_dir, rows, years, seed, fmt, drift=False, preset=None): ...

    def without_preset(out_dir, rows, years, seed, fmt, drift=False): ...

    assert generator_options("default", without_preset) == ({}, "")
    assert generator_options("drift", without_preset) == ({"drift": True}, "")
    assert generator_options("adversarial", with_preset) == ({"preset": "adversarial"}, "")
    options, why = generator_options("adversarial", without_preset)
    assert options is None and "adversarial" in why


def test_the_independent_kind_is_written_apart_from_the_project_generator() -> None:
    from benchmarks.independent_history import write_independent_history
    from training.synthetic import write_history

    assert history_writer("independent") == (write_independent_history, {}, "")
    assert history_writer("adversarial") == (write_history, {"preset": "adversarial"}, "")
    write, _, why = history_writer("no-such-preset")
    assert write is None and "no-such-preset" in why


def test_feature_families_cover_every_column_once() -> None:
    families = feature_families()
    columns = [c for cols in families.values() for c in cols]
    assert sorted(columns) == sorted(FEATURE_SET.columns) and len(families) >= 3

    @dataclass(frozen=True)
    class WithFamilies:
        columns: tuple[str, ...] = ("a", "b", "c")
        families: tuple = (("network", ("a", "c")), ("shipment", ("b",)))

    assert feature_families(WithFamilies()) == {"network": ("a", "c"), "shipment": ("b",)}


def test_truth_recall_counts_every_diverted_declaration_in_the_budget() -> None:
    scores = np.linspace(1.0, 0.0, 40)  # row i ranks i-th
    diverted = np.zeros(40, dtype=bool)
    diverted[[0, 3, 30]] = True  # seized or not: ground truth
    assert truth_recall(scores, diverted, 0.05) == 1 / 3  # top 2 rows
    assert truth_recall(scores, diverted, 0.10) == 2 / 3  # top 4 rows
    assert truth_recall(scores[::-1], diverted, 0.05) == 0.0
    assert np.isnan(truth_recall(scores, np.zeros(40, dtype=bool), 0.05))


def test_reachable_recall_finds_labelled_diverters_first_and_noise_only_by_chance() -> None:
    n = 1_000
    diverted = np.zeros(n, dtype=bool)
    diverted[:30] = True
    labels = np.zeros(n, dtype=bool)
    labels[:20] = True  # 20 seizures of diverted goods
    labels[500:505] = True  # 5 seizures of legitimate goods (label noise)
    # a 5 % budget (50) holds all 30 diverted and 20 of 970 others: the 20 labelled diverters
    # always, the noise only by chance
    reached = [reachable_recall(labels, diverted, 0.05, seed) for seed in range(40)]
    assert all(20 / 25 <= r <= 1.0 for r in reached)
    assert np.mean(reached) < 20 / 25 + 0.05
    # a budget smaller than the diverted declarations leaves some seizures out
    assert reachable_recall(labels, diverted, 0.01, 1) <= 10 / 25
