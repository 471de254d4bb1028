"""`make evaluate-robustness`: the chosen fit over several generator seeds and kinds of history.

`python -m benchmarks.robustness [--seeds 3] [--rows 100000]
[--kinds default,drift,adversarial,independent] [--trials N] [--ablation]`

For every kind of history and generator seed: generate a history, build point-in-time
features, choose and fit the model exactly as `make train` does (search on the validation
window) and evaluate once on the test window against logistic regression and the red-flag
rules. `independent` is a history written apart from the project's generator
(`benchmarks.independent_history`), with diversion mechanisms of its own. Prints mean ±
standard deviation over seeds of precision at 1/2/5 %, recall at 5 % and
PR-AUC per kind. `--ablation` also refits with one feature family dropped at a time and
prints each family's gain (all features minus without the family). Runs in-process; nothing
is logged to MLflow or registered.
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.previous_release import PREVIOUS_RELEASE, previous_columns, previous_config
from training.evaluation import selected_at

#: The kind of history written apart from the project's generator (`benchmarks.independent_history`).
INDEPENDENT = "independent"
#: Kinds of history: the generator's default, its drift option, generator presets by name, and
#: the independent history.
DEFAULT_KINDS: tuple[str, ...] = ("default", "drift", "adversarial", INDEPENDENT)
#: Methods compared (FitResult names).
METHODS: tuple[str, ...] = ("lightgbm", "logistic_regression", "red_flag_rules")
#: Metrics shown: (column title, metric name).
SHOWN: tuple[tuple[str, str], ...] = (
    ("P@1%", "precision_at_1pct"),
    ("P@2%", "precision_at_2pct"),
    ("P@5%", "precision_at_5pct"),
    ("R@5%", "recall_at_5pct"),
    ("PR-AUC", "pr_auc"),
)
ALL_FEATURES = "all features"
#: Inspection rate of the ground-truth figures (recall of all diverted declarations, the ceiling).
HEADROOM_RATE = 0.05
HEADROOM_TITLE = "Recall at 5 % against its ceiling (ground truth, paired by seed)"
#: Headroom columns: (title, column).
HEADROOM_SHOWN: tuple[tuple[str, str], ...] = (
    ("reachable R@5%", "reachable"),
    ("previous R@5%", "previous"),
    ("model R@5%", "model"),
    ("gain", "gain"),
    ("headroom closed", "closed"),
    ("all diverted: previous", "truth_previous"),
    ("all diverted: model", "truth_model"),
)


@dataclass(frozen=True)
class RobustnessSettings:
    """What the harness runs: kinds, seeds, history size, search budget, ablation."""

    kinds: tuple[str, ...] = DEFAULT_KINDS
    seeds: tuple[int, ...] = (1, 2, 3)
    rows: int = 100_000
    years: float = 3.0
    trials: int = 6
    ablation: bool = False
    out: Path | None = Path("outputs/robustness")
    booster: dict = field(default_factory=dict)  # BoosterParams overrides (e.g. max_rounds in tests)
    bagging: int = 0  # > 1: also measure validation AP of that many seeds averaged against one


@dataclass
class RobustnessReport:
    """One row per (kind, seed, variant, method) with test-window metrics; skipped kinds with why."""

    records: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over seeds per kind, variant and method."""
        grouped = self.records.groupby(["kind", "variant", "method"], sort=False)
        metrics = [m for _, m in SHOWN]
        mean = grouped[metrics].mean().add_suffix("_mean")
        std = grouped[metrics].std(ddof=1).fillna(0.0).add_suffix("_std")
        seeds = grouped["seed"].nunique().rename("seeds")
        return pd.concat([mean, std, seeds], axis=1).reset_index()

    def family_gains(self) -> pd.DataFrame:
        """Per kind and family: the model's metric with all features minus without the family
        (mean and standard deviation over seeds, paired by seed)."""
        model = self.records.loc[self.records["method"] == "lightgbm"]
        full = model.loc[model["variant"] == ALL_FEATURES].set_index(["kind", "seed"])
        rows = []
        ablated = model.loc[model["variant"].str.startswith("without ")]
        for (kind, variant), part in ablated.groupby(["kind", "variant"], sort=False):
            paired = part.set_index(["kind", "seed"])
            row: dict[str, object] = {
                "kind": kind,
                "family": variant.removeprefix("without "),
                "seeds": len(part),
            }
            for _, metric in SHOWN:
                gain = full.loc[paired.index, metric] - paired[metric]
                row[f"{metric}_mean"] = float(gain.mean())
                row[f"{metric}_std"] = float(gain.std(ddof=1)) if len(gain) > 1 else 0.0
            rows.append(row)
        return pd.DataFrame(rows)

    def kind_table(self, kind: str) -> pd.DataFrame:
        """One kind's rows: each method with all features, then the previous release's model."""
        summary = self.summary()
        part = summary.loc[summary["kind"] == kind]
        current = part.loc[part["variant"] == ALL_FEATURES]
        previous = part.loc[(part["variant"] == PREVIOUS_RELEASE) & (part["method"] == "lightgbm")]
        previous = previous.assign(method=PREVIOUS_RELEASE)
        return pd.concat([current, previous], ignore_index=True)

    def gain_over_previous(self) -> pd.DataFrame:
        """Per kind: the model minus the previous release's model (paired by seed, mean and std)."""
        rows = []
        for kind, full, before in _paired_with_previous(
            self.records.loc[self.records["method"] == "lightgbm"]
        ):
            row: dict[str, object] = {"kind": kind, "seeds": len(full)}
            for _, metric in SHOWN:
                gain = full[metric] - before[metric]
                row[f"{metric}_mean"] = float(gain.mean())
                row[f"{metric}_std"] = float(gain.std(ddof=1)) if len(gain) > 1 else 0.0
            rows.append(row)
        return pd.DataFrame(rows)

    def headroom(self) -> pd.DataFrame:
        """Per kind, on histories with ground truth (paired by seed, mean and std): the reachable
        recall at 5 % of the seizures, the previous release's and the model's, the share of the
        previous release's headroom the model closes, and both models' recall of every really
        diverted declaration (seized or not)."""
        if "reachable_recall_at_5pct" not in self.records:
            return pd.DataFrame()
        model = self.records.loc[self.records["method"] == "lightgbm"].dropna(
            subset=["reachable_recall_at_5pct"]
        )
        rows = []
        for kind, full, before in _paired_with_previous(model):
            columns = {
                "reachable": full["reachable_recall_at_5pct"],
                "previous": before["recall_at_5pct"],
                "model": full["recall_at_5pct"],
                "gain": full["recall_at_5pct"] - before["recall_at_5pct"],
                "closed": (full["recall_at_5pct"] - before["recall_at_5pct"])
                / (full["reachable_recall_at_5pct"] - before["recall_at_5pct"]),
                "truth_previous": before["truth_recall_at_5pct"],
                "truth_model": full["truth_recall_at_5pct"],
            }
            row: dict[str, object] = {"kind": kind, "seeds": len(full)}
            for name, values in columns.items():
                row[f"{name}_mean"] = float(values.mean())
                row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append(row)
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        """The summary (and family gains, when measured) as markdown tables."""
        lines = []
        for kind in self.records["kind"].unique():
            part = self.kind_table(kind)
            lines += [f"### {kind} ({int(part['seeds'].iloc[0])} seeds)", ""]
            lines += ["| method | " + " | ".join(t for t, _ in SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
            for _, row in part.iterrows():
                cells = [f"{row[f'{m}_mean']:.3f} ± {row[f'{m}_std']:.3f}" for _, m in SHOWN]
                lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
            lines.append("")
        over = self.gain_over_previous()
        if not over.empty:
            lines += ["### The model minus the previous release's model (paired by seed)", ""]
            lines += ["| kind | " + " | ".join(t for t, _ in SHOWN) + " |", "|---" * (len(SHOWN) + 1) + "|"]
            for _, row in over.iterrows():
                cells = [f"{row[f'{m}_mean']:+.3f} ± {row[f'{m}_std']:.3f}" for _, m in SHOWN]
                lines.append(f"| {row['kind']} | " + " | ".join(cells) + " |")
            lines.append("")
        room = self.headroom()
        if not room.empty:
            lines += [f"### {HEADROOM_TITLE}", ""]
            lines += [
                "| kind | " + " | ".join(t for t, _ in HEADROOM_SHOWN) + " |",
                "|---" * (len(HEADROOM_SHOWN) + 1) + "|",
            ]
            for _, row in room.iterrows():
                cells = [_signed(row, name) for _, name in HEADROOM_SHOWN]
                lines.append(f"| {row['kind']} | " + " | ".join(cells) + " |")
            lines.append("")
        gains = self.family_gains()
        if not gains.empty:
            lines += ["### Feature-family ablation: gain of each family (all features minus without it)", ""]
            lines += [
                "| kind | family | " + " | ".join(t for t, _ in SHOWN) + " |",
                "|---" * (len(SHOWN) + 2) + "|",
            ]
            for _, row in gains.iterrows():
                cells = [f"{row[f'{m}_mean']:+.3f} ± {row[f'{m}_std']:.3f}" for _, m in SHOWN]
                lines.append(f"| {row['kind']} | {row['family']} | " + " | ".join(cells) + " |")
            lines.append("")
        if "validation_ap_bagged" in self.records:
            bag = self.records.loc[self.records["method"] == "lightgbm"].dropna(
                subset=["validation_ap_bagged"]
            )
            gain = bag["validation_ap_bagged"] - bag["validation_ap_single"]
            lines += [
                "### Seed bagging (validation average precision, bagged minus one seed)",
                "",
                f"{gain.mean():+.4f} ± {gain.std(ddof=1) if len(gain) > 1 else 0.0:.4f} over {len(gain)} histories",
                "",
            ]
        for kind, why in self.skipped.items():
            lines.append(f"- {kind}: skipped ({why})")
        return "\n".join(lines).rstrip("\n") + "\n"


def _paired_with_previous(model: pd.DataFrame):
    """Per kind: the model's records with all features and the previous release's, indexed by
    seed, on the seeds both have (kinds without any are left out)."""
    for kind, part in model.groupby("kind", sort=False):
        full = part.loc[part["variant"] == ALL_FEATURES].set_index("seed")
        before = part.loc[part["variant"] == PREVIOUS_RELEASE].set_index("seed")
        seeds = full.index.intersection(before.index)
        if len(seeds):
            yield kind, full.loc[seeds], before.loc[seeds]


def _signed(row: pd.Series, name: str) -> str:
    """`mean ± std` of one headroom column (gains signed)."""
    sign = "+" if name in ("gain", "closed") else ""
    return f"{row[f'{name}_mean']:{sign}.3f} ± {row[f'{name}_std']:.3f}"


def feature_families(feature_set=None) -> dict[str, tuple[str, ...]]:
    """Feature family -> its columns.

    Uses the feature set's own `families` mapping when it has one (family -> columns, or
    column -> family); otherwise derives families from the column names (replace this
    fallback once every feature set carries its families).
    """
    if feature_set is None:
        from features.definitions import FEATURE_SET as feature_set
    declared = getattr(feature_set, "families", None)
    families: dict[str, list[str]] = {}
    if declared:
        for key, value in dict(declared).items():
            if isinstance(value, str):  # column -> family
                families.setdefault(value, []).append(key)
            else:  # family -> columns
                families.setdefault(key, []).extend(value)
    else:
        for column in feature_set.columns:
            families.setdefault(_family_from_name(column), []).append(column)
    return {
        family: tuple(c for c in feature_set.columns if c in set(columns))
        for family, columns in families.items()
    }


def _family_from_name(column: str) -> str:
    if column.endswith("_seizure_rate"):
        return "seizure rates"
    if column.startswith(("exporter_", "weight_vs_exporter")):
        return "exporter history"
    if column.startswith(("consignee_", "pair_")):
        return "consignee and relationship"
    return "shipment"


def generator_options(kind: str, write_history: Callable) -> tuple[dict[str, object] | None, str]:
    """Keyword options of `write_history` for a kind of history, or None and why it cannot run."""
    if kind == "default":
        return {}, ""
    if kind == "drift":
        return {"drift": True}, ""
    if "preset" not in inspect.signature(write_history).parameters:
        return None, f"the generator has no preset option, so no {kind!r} preset, in this version"
    from training.synthetic import PRESETS

    if kind not in PRESETS:
        return None, f"the generator has no {kind!r} preset (it has {', '.join(PRESETS)})"
    return {"preset": kind}, ""


def history_writer(kind: str) -> tuple[Callable | None, dict[str, object], str]:
    """The function that writes a kind of history, its keyword options, and why not when it cannot.

    `independent` is the history written apart from the project's generator
    (`benchmarks.independent_history`); every other kind is the project's generator.
    """
    if kind == INDEPENDENT:
        from benchmarks.independent_history import write_independent_history

        return write_independent_history, {}, ""
    from training.synthetic import write_history

    options, why = generator_options(kind, write_history)
    return (None, {}, why) if options is None else (write_history, options, "")


def evaluate_history(
    kind: str,
    seed: int,
    settings: RobustnessSettings,
    write: Callable,
    options: dict[str, object],
    families: dict[str, tuple[str, ...]],
    say: Callable[[str], None] = print,
) -> list[dict[str, object]]:
    """Generate one history, fit as `make train` does (and per dropped family), evaluate on test."""
    from features.definitions import FEATURE_SET
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features, default_windows, fit_and_evaluate
    from training.config import TrainingConfig

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(out_dir=folder, rows=settings.rows, years=settings.years, seed=seed, fmt="parquet", **options)
        tables = load_contract_tables(folder / "declarations.parquet", folder / "seizures.parquet")
        truth = ground_truth(folder, tables.declarations["declaration_id"])
    declarations, seizures = tables.declarations, tables.seizures
    features = build_features(declarations, seizures, load_reference())
    config = TrainingConfig(trials=settings.trials, booster=settings.booster)
    bounds = default_windows(declarations["declared_at"], config.label_window_days, config.test_days)
    test_from, train_until, test_to = bounds
    variants: dict[str, tuple[str, ...] | None] = {ALL_FEATURES: None, PREVIOUS_RELEASE: previous_columns()}
    if settings.ablation:
        for family, columns in families.items():
            variants[f"without {family}"] = tuple(c for c in FEATURE_SET.columns if c not in set(columns))
    records = []
    for variant, columns in variants.items():
        began = time.perf_counter()
        fit_config = previous_config(config) if variant == PREVIOUS_RELEASE else config
        result = fit_and_evaluate(
            declarations, seizures, features, fit_config, train_until, test_from, test_to, columns=columns
        )
        results = {"lightgbm": result.metrics, **result.baselines}
        scores = {"lightgbm": result.test_scores, **result.baseline_scores}
        diverted = None if truth is None else truth[result.test_mask]
        for method in METHODS if variant == ALL_FEATURES else ("lightgbm",):
            record = {
                "kind": kind,
                "seed": seed,
                "variant": variant,
                "method": method,
                **{metric: results[method][metric] for _, metric in SHOWN},
                "positives": results[method]["positives"],
            }
            if diverted is not None:
                record.update(
                    truth_recall_at_5pct=truth_recall(scores[method], diverted, HEADROOM_RATE),
                    reachable_recall_at_5pct=reachable_recall(
                        result.test_labels.diverted, diverted, HEADROOM_RATE, seed
                    ),
                )
            records.append(record)
        if variant == ALL_FEATURES and settings.bagging > 1:
            single, bagged = seed_bagging_gain(
                result, declarations, seizures, features, config, settings.bagging
            )
            for record in records[-len(METHODS) :]:
                record.update(validation_ap_single=single, validation_ap_bagged=bagged)
            say(
                f"{kind} seed {seed}: validation AP one seed {single:.4f}, {settings.bagging} seeds {bagged:.4f}"
            )
        m = result.metrics
        say(
            f"{kind} seed {seed} {variant}: P@1/2/5% {m['precision_at_1pct']:.3f}/{m['precision_at_2pct']:.3f}/"
            f"{m['precision_at_5pct']:.3f}, R@5% {m['recall_at_5pct']:.3f}, PR-AUC {m['pr_auc']:.3f} "
            f"({int(m['positives'])} diverted in test; {time.perf_counter() - began:.0f}s)"
        )
    return records


def ground_truth(folder: Path, declaration_ids: pd.Series) -> np.ndarray | None:
    """Whether each declaration was really diverted (the generator's ground truth, in the
    order of `declaration_ids`), or None when the history has no ground-truth file."""
    path = folder / "ground_truth.parquet"
    if not path.exists():
        return None
    truth = pd.read_parquet(path, columns=["declaration_id", "diverted"]).set_index("declaration_id")
    return declaration_ids.map(truth["diverted"]).fillna(False).to_numpy(dtype=bool)


def truth_recall(scores: np.ndarray, diverted: np.ndarray, rate: float) -> float:
    """Share of the really diverted declarations (seized or not) inside the top `rate` by score."""
    diverted = np.asarray(diverted, dtype=bool)
    if not diverted.any():
        return float("nan")
    return float(diverted[selected_at(scores, rate)].sum() / diverted.sum())


def reachable_recall(labels: np.ndarray, diverted: np.ndarray, rate: float, seed: int) -> float:
    """Recall at `rate` of the labels (seizures) reached by a ranking that knows the ground truth:
    every really diverted declaration first, the rest in random order. No model can expect more:
    seizures of legitimate goods (label noise) are found only by chance, and a budget smaller
    than the diverted declarations leaves some out. The ceiling a recall gain is measured against."""
    noise = np.random.default_rng(seed).random(len(diverted))
    ranking = np.asarray(diverted, dtype=np.float64) + 0.5 * noise
    labels = np.asarray(labels, dtype=bool)
    return float(labels[selected_at(ranking, rate)].sum() / labels.sum()) if labels.any() else float("nan")


def seed_bagging_gain(result, declarations, seizures, features, config, seeds: int) -> tuple[float, float]:
    """Validation average precision of the chosen settings with one seed and with `seeds` seeds
    averaged (raw scores), on the validation window the search used — whether bagging pays."""
    from dataclasses import replace

    from features.definitions import FEATURE_SET
    from models.estimator import fit_booster
    from training.labels import declaration_labels
    from training.search import validation_metrics

    columns = list(result.scorer.feature_names)
    categorical = tuple(c for c in FEATURE_SET.categorical if c in columns)
    known = declaration_labels(
        declarations, seizures, config.label_window_days, known_before=result.windows.train_until
    )
    train, validation = result.train_mask, result.validation_mask
    x_train, x_validation = features.loc[train, columns], features.loc[validation, columns]
    y_train, y_validation = known.diverted[train], known.diverted[validation]
    matrix = x_validation.to_numpy(np.float64)
    scores = [result.scorer.booster.predict(matrix, raw_score=True)]
    for extra in range(1, seeds):
        params = replace(result.search.params, seed=result.search.params.seed + 1000 * extra)
        booster = fit_booster(x_train, y_train, x_validation, y_validation, categorical, params)
        scores.append(booster.predict(matrix, raw_score=True))
    single = validation_metrics(scores[0], y_validation)["average_precision"]
    bagged = validation_metrics(np.mean(scores, axis=0), y_validation)["average_precision"]
    return single, bagged


def evaluate_robustness(settings: RobustnessSettings, say: Callable[[str], None] = print) -> RobustnessReport:
    """Every kind × seed (× dropped family); kinds the generator cannot produce are skipped with why."""
    families = feature_families()
    records: list[dict[str, object]] = []
    skipped: dict[str, str] = {}
    for kind in settings.kinds:
        write, options, why = history_writer(kind)
        if write is None:
            say(f"skipping kind {kind!r}: {why}")
            skipped[kind] = why
            continue
        for seed in settings.seeds:
            records += evaluate_history(kind, seed, settings, write, options, families, say)
    report = RobustnessReport(records=pd.DataFrame(records), skipped=skipped)
    if settings.out is not None and records:
        settings.out.mkdir(parents=True, exist_ok=True)
        report.records.to_csv(settings.out / "records.csv", index=False)
        (settings.out / "robustness.md").write_text(report.markdown())
    return report


def print_report(report: RobustnessReport) -> None:
    """Rich tables of the summary and the family gains."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 150)
    if report.records.empty:
        console.print("no history was evaluated")
    else:
        for kind in report.records["kind"].unique():
            part = report.kind_table(kind)
            table = Table(title=f"{kind}: test window, mean ± std over {int(part['seeds'].iloc[0])} seeds")
            table.add_column("method")
            for title, _ in SHOWN:
                table.add_column(title, justify="right")
            for _, row in part.iterrows():
                table.add_row(
                    row["method"], *(f"{row[f'{m}_mean']:.3f} ± {row[f'{m}_std']:.3f}" for _, m in SHOWN)
                )
            console.print(table)
        over = report.gain_over_previous()
        if not over.empty:
            table = Table(title="the model minus the previous release's model (paired by seed)")
            table.add_column("kind")
            for title, _ in SHOWN:
                table.add_column(title, justify="right")
            for _, row in over.iterrows():
                table.add_row(
                    row["kind"], *(f"{row[f'{m}_mean']:+.3f} ± {row[f'{m}_std']:.3f}" for _, m in SHOWN)
                )
            console.print(table)
        room = report.headroom()
        if not room.empty:
            table = Table(title=HEADROOM_TITLE)
            table.add_column("kind")
            for title, _ in HEADROOM_SHOWN:
                table.add_column(title, justify="right")
            for _, row in room.iterrows():
                table.add_row(row["kind"], *(_signed(row, name) for _, name in HEADROOM_SHOWN))
            console.print(table)
        gains = report.family_gains()
        if not gains.empty:
            table = Table(title="ablation: gain of each feature family (all features minus without it)")
            table.add_column("kind")
            table.add_column("family")
            for title, _ in SHOWN:
                table.add_column(title, justify="right")
            for _, row in gains.iterrows():
                table.add_row(
                    row["kind"],
                    row["family"],
                    *(f"{row[f'{m}_mean']:+.3f} ± {row[f'{m}_std']:.3f}" for _, m in SHOWN),
                )
            console.print(table)
    if "validation_ap_bagged" in report.records:
        section = report.markdown().split("### Seed bagging")[1].split("\n\n")[1]
        console.print(f"seed bagging, validation AP bagged minus one seed: {section}")
    for kind, why in report.skipped.items():
        console.print(f"[yellow]{kind}: skipped ({why})[/]")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.robustness`: mean ± std over seeds and kinds of history (and ablation)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.robustness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="comma-separated kinds of history")
    parser.add_argument("--seeds", type=int, default=3, help="generator seeds 1..N")
    parser.add_argument("--rows", type=int, default=100_000, help="declarations per history")
    parser.add_argument("--years", type=float, default=3.0, help="years per history")
    parser.add_argument("--trials", type=int, default=6, help="search trials per fit (as make train)")
    parser.add_argument("--ablation", action="store_true", help="also drop one feature family at a time")
    parser.add_argument(
        "--bagging", type=int, default=0, help="N > 1: validation AP of N seeds averaged against one seed"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/robustness"), help="records.csv, robustness.md"
    )
    args = parser.parse_args(argv)
    settings = RobustnessSettings(
        kinds=_csv(args.kinds),
        seeds=tuple(range(1, args.seeds + 1)),
        rows=args.rows,
        years=args.years,
        trials=args.trials,
        ablation=args.ablation,
        out=args.out,
        bagging=args.bagging,
    )
    report = evaluate_robustness(settings)
    print_report(report)
    if settings.out is not None and not report.records.empty:
        print(f"-> {settings.out}/robustness.md, {settings.out}/records.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
