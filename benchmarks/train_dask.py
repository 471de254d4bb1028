"""`make bench-train-dask`: features and fit in one process against the same on a Dask LocalCluster.

`python -m benchmarks.train_dask --rows 1000000 [--scheduler tcp://host:8786] [--workers 2]`

Prints wall seconds of the point-in-time features and of fit + calibrate + evaluate on each
engine, checks that both engines' features are identical, and the rounds each fit ran.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bench_train_dask(rows: int, scheduler: str | None, workers: int, chunk_rows: int) -> None:
    """Wall time of features and fit, one process against Dask, on one synthetic history of `rows`."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features, default_windows, fit_and_evaluate
    from training.config import TrainingConfig
    from training.distributed import dask_engine
    from training.synthetic import write_history

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_history(out_dir=folder, rows=rows, years=3.0, seed=42, fmt="parquet")
        tables = load_contract_tables(folder / "declarations.parquet", folder / "seizures.parquet")
    declarations, seizures = tables.declarations, tables.seizures
    reference = load_reference()
    config = TrainingConfig()
    windows = default_windows(declarations["declared_at"], config.label_window_days, config.test_days)
    test_from, train_until, test_to = windows
    bounds = (train_until, test_from, test_to)

    started = time.perf_counter()
    local_features = build_features(declarations, seizures, reference)
    local_feature_seconds = time.perf_counter() - started
    started = time.perf_counter()
    local = fit_and_evaluate(declarations, seizures, local_features, config, *bounds)
    local_fit_seconds = time.perf_counter() - started

    with dask_engine(scheduler, workers=workers, chunk_rows=chunk_rows) as engine:
        started = time.perf_counter()
        dask_features = engine.build_features(declarations, seizures, reference)
        dask_feature_seconds = time.perf_counter() - started
        started = time.perf_counter()
        distributed = fit_and_evaluate(declarations, seizures, dask_features, config, *bounds, fit=engine.fit)
        dask_fit_seconds = time.perf_counter() - started
        n_workers = len(engine.workers_at_start)
        rounds = engine.rounds_trained
    a, b = local_features.to_numpy(), dask_features.to_numpy()
    identical = bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())

    table = Table(title=f"bench-train-dask at {len(declarations):,} declarations ({n_workers} Dask workers)")
    for column in ("engine", "features (s)", "fit + evaluate (s)", "total (s)", "rounds", "test PR-AUC"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    table.add_row(
        "one process",
        f"{local_feature_seconds:.1f}",
        f"{local_fit_seconds:.1f}",
        f"{local_feature_seconds + local_fit_seconds:.1f}",
        f"{local.scorer.metadata['best_iteration']} (early stopping)",
        f"{local.metrics['pr_auc']:.3f}",
    )
    table.add_row(
        "dask",
        f"{dask_feature_seconds:.1f}",
        f"{dask_fit_seconds:.1f}",
        f"{dask_feature_seconds + dask_fit_seconds:.1f}",
        f"{rounds} trained, best {distributed.scorer.metadata['best_iteration']}",
        f"{distributed.metrics['pr_auc']:.3f}",
    )
    console = Console()
    console.print(table)
    console.print(f"features identical on both engines: {identical}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address; none: a LocalCluster")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (without --scheduler)")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    args = parser.parse_args()
    bench_train_dask(args.rows, args.scheduler or None, args.workers, args.chunk_rows)


if __name__ == "__main__":
    main()
