"""`make bench-train`: wall time and peak memory of point-in-time features and training.

`python -m benchmarks.train --rows 1000000`
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bench_train(rows: int) -> None:
    """Wall time and peak memory of point-in-time features and of training at `rows` declarations."""
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
    config = TrainingConfig()
    test_from, train_until, test_to = default_windows(
        declarations["declared_at"], config.label_window_days, config.test_days
    )
    started = time.perf_counter()
    result = fit_and_evaluate(declarations, seizures, features, config, train_until, test_from, test_to)
    train_seconds = time.perf_counter() - started
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
    table.add_row(
        "fit + calibrate + evaluate + baselines",
        f"{train_seconds:.1f}",
        f"{peak_gb():.2f}",
        f"{int(result.train_mask.sum()):,} training rows",
    )
    table.add_row("features + training", f"{feature_seconds + train_seconds:.1f}", f"{peak_gb():.2f}", "")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.train [--rows N]`: the feature and training table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=bench_train.__doc__)
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="declarations to generate, featurise and train on"
    )
    bench_train(parser.parse_args(argv).rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
