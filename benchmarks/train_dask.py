"""`make bench-train-dask`: features and fit in one process against the same on a Dask cluster.

`python -m benchmarks.train_dask --rows 1000000 [--scheduler tcp://host:8786] [--workers 2]`

Prints wall seconds of the point-in-time features and of search + fit + calibrate + evaluate
on each engine (the search's trials run in the driver on both; on Dask the refit on the whole
training window runs on the cluster), the peak resident memory of the driver and of the
busiest worker, checks that both engines' features are identical, and the rounds each fit ran.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.train import _reset_peak, _status_gb, cached_history


def _peak_gb() -> float:
    """Runs anywhere (driver or worker): this process's resident-memory high-water mark, GB."""
    return _status_gb("VmHWM") or float("nan")


def _reset_worker_peaks(client) -> None:
    client.run(_reset_peak)


def bench_train_dask(rows: int, data_dir: Path, scheduler: str | None, workers: int, blocks: int) -> None:
    """Wall time and peak memory of features and fit, one process against Dask, on one history."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features, default_windows, fit_and_evaluate
    from training.config import TrainingConfig
    from training.distributed import dask_engine

    folder, _ = cached_history(data_dir, rows)
    tables = load_contract_tables(
        folder / "declarations.parquet", folder / "seizures.parquet", rejects_dir=None
    )
    declarations, seizures = tables.declarations, tables.seizures
    reference = load_reference()
    config = TrainingConfig()
    test_from, train_until, test_to = default_windows(
        declarations["declared_at"], config.label_window_days, config.test_days
    )
    bounds = (train_until, test_from, test_to)
    console = Console(width=180)

    _reset_peak()
    started = time.perf_counter()
    local_features = build_features(declarations, seizures, reference)
    local_feature_seconds = time.perf_counter() - started
    local_feature_peak = _peak_gb()
    console.print(f"one process: features {local_feature_seconds:.1f} s, peak {local_feature_peak:.2f} GB")
    _reset_peak()
    started = time.perf_counter()
    local = fit_and_evaluate(declarations, seizures, local_features, config, *bounds)
    local_fit_seconds = time.perf_counter() - started
    local_fit_peak = _peak_gb()
    console.print(f"one process: search + fit + evaluate {local_fit_seconds:.1f} s")

    with dask_engine(scheduler, workers=workers, blocks=blocks) as engine:
        client = engine.client
        _reset_peak()
        _reset_worker_peaks(client)
        started = time.perf_counter()
        dask_features = engine.build_features(declarations, seizures, reference)
        dask_feature_seconds = time.perf_counter() - started
        driver_feature_peak = _peak_gb()
        worker_feature_peak = max(client.run(_peak_gb).values())
        console.print(
            f"dask: features {dask_feature_seconds:.1f} s, worker peak {worker_feature_peak:.2f} GB"
        )
        _reset_peak()
        _reset_worker_peaks(client)
        started = time.perf_counter()
        distributed = fit_and_evaluate(
            declarations, seizures, dask_features, config, *bounds, refit=engine.refit
        )
        dask_fit_seconds = time.perf_counter() - started
        driver_fit_peak = _peak_gb()
        worker_fit_peak = max(client.run(_peak_gb).values())
        n_workers = len(engine.workers_at_start)
        rounds = engine.rounds_trained
        feature_blocks = engine.timings.get("feature_blocks")
    a, b = local_features.to_numpy(), dask_features.to_numpy()
    identical = bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())

    table = Table(
        title=f"bench-train-dask at {len(declarations):,} declarations "
        f"({n_workers} Dask workers, {feature_blocks} feature blocks)"
    )
    for column in (
        "engine",
        "features (s)",
        "search + fit + evaluate (s)",
        "total (s)",
        "peak driver (GB)",
        "peak worker (GB)",
        "rounds",
        "test R@5%",
    ):
        table.add_column(column, justify="left" if column == "engine" else "right")
    table.add_row(
        "one process",
        f"{local_feature_seconds:.1f}",
        f"{local_fit_seconds:.1f}",
        f"{local_feature_seconds + local_fit_seconds:.1f}",
        f"{max(local_feature_peak, local_fit_peak):.2f}",
        "-",
        f"{local.scorer.metadata['best_iteration']} (early stopping)",
        f"{local.metrics['recall_at_5pct']:.3f}",
    )
    table.add_row(
        "dask",
        f"{dask_feature_seconds:.1f}",
        f"{dask_fit_seconds:.1f}",
        f"{dask_feature_seconds + dask_fit_seconds:.1f}",
        f"{max(driver_feature_peak, driver_fit_peak):.2f}",
        f"features {worker_feature_peak:.2f}, fit {worker_fit_peak:.2f}",
        f"{rounds} trained, best {distributed.scorer.metadata['best_iteration']}",
        f"{distributed.metrics['recall_at_5pct']:.3f}",
    )
    console.print(table)
    console.print(
        f"features identical on both engines: {identical}; "
        f"features one process / dask: {local_feature_seconds / dask_feature_seconds:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address; none: a LocalCluster")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (without --scheduler)")
    parser.add_argument(
        "--blocks", type=int, default=0, help="time blocks of the feature step (0: one per worker)"
    )
    args = parser.parse_args()
    bench_train_dask(args.rows, args.data_dir, args.scheduler or None, args.workers, args.blocks)


if __name__ == "__main__":
    main()
