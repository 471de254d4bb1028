"""`make bench-train`: wall time and peak memory of point-in-time features and training.

`python -m benchmarks.train --rows 1000000`
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

#: The fit before the search (log-loss early stopping, class weight 5, one fit): the reference row.
LOGLOSS_FIT = {"metric": "binary_logloss", "early_stopping_rounds": 100}


def bench_train(rows: int, trials: tuple[int, ...] = (), logloss_reference: bool = True) -> None:
    """Wall time and peak memory of point-in-time features and of training at `rows` declarations.

    Training is timed once per search budget in `trials` (default: the configured one), in the
    same run on the same features, and — as a reference — once as the fit was before the
    search (`logloss_reference`: one fit, log-loss early stopping, class weight 5).
    """
    import resource

    from rich.console import Console
    from rich.table import Table

    from features.definitions import compute_features
    from features.history import History
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import default_windows, fit_and_evaluate
    from training.config import TrainingConfig
    from training.synthetic import write_history

    def peak_gb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_history(out_dir=folder, rows=rows, years=3.0, seed=42, fmt="parquet")
        tables = load_contract_tables(folder / "declarations.parquet", folder / "seizures.parquet")
    declarations, seizures = tables.declarations, tables.seizures
    reference = load_reference()
    before = peak_gb()
    started = time.perf_counter()
    history = History.build(declarations, seizures, reference)
    features = compute_features(declarations, history, reference)
    feature_seconds = time.perf_counter() - started
    feature_peak = peak_gb()
    default = TrainingConfig()
    test_from, train_until, test_to = default_windows(
        declarations["declared_at"], default.label_window_days, default.test_days
    )
    fits: list[tuple[str, TrainingConfig]] = []
    if logloss_reference:
        fits.append(
            (
                "log-loss early stopping, 1 fit (before the search)",
                TrainingConfig(trials=1, booster=LOGLOSS_FIT),
            )
        )
    for n in trials or (default.trials,):
        label = "default" if n == default.trials else "budget"
        fits.append(
            (f"AP early stopping, search {n} trial{'s' if n > 1 else ''} ({label})", TrainingConfig(trials=n))
        )
    timed = []
    for name, config in fits:
        started = time.perf_counter()
        result = fit_and_evaluate(declarations, seizures, features, config, train_until, test_from, test_to)
        timed.append((name, time.perf_counter() - started, peak_gb(), result))
    train_seconds = timed[-1][1]
    table = Table(title=f"bench-train at {len(declarations):,} declarations")
    for column in ("step", "seconds", "peak RSS (GB)", "rate"):
        table.add_column(column, justify="right" if column != "step" else "left")
    table.add_row("load + validate", "-", f"{before:.2f}", "")
    table.add_row(
        "point-in-time features",
        f"{feature_seconds:.1f}",
        f"{feature_peak:.2f}",
        f"{len(declarations) / feature_seconds:,.0f} declarations/s",
    )
    for name, seconds, peak, result in timed:
        m = result.metrics
        table.add_row(
            f"fit + calibrate + evaluate + baselines: {name}",
            f"{seconds:.1f}",
            f"{peak:.2f}",
            f"{int(result.train_mask.sum()):,} training rows, {result.scorer.booster.num_trees()} trees; "
            f"test P@1/2/5% {m['precision_at_1pct']:.3f}/{m['precision_at_2pct']:.3f}/{m['precision_at_5pct']:.3f}"
            f", R@5% {m['recall_at_5pct']:.3f}, PR-AUC {m['pr_auc']:.3f}",
        )
    table.add_row(
        "features + training (last fit above)",
        f"{feature_seconds + train_seconds:.1f}",
        f"{peak_gb():.2f}",
        "",
    )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.train [--rows N]`: the feature and training table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=bench_train.__doc__)
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="declarations to generate, featurise and train on"
    )
    parser.add_argument(
        "--trials",
        default="",
        help="comma-separated search budgets to time side by side (default: the configured one)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the log-loss single-fit reference row"
    )
    args = parser.parse_args(argv)
    budgets = tuple(int(t) for t in args.trials.split(",") if t.strip())
    bench_train(args.rows, budgets, logloss_reference=not args.no_reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
