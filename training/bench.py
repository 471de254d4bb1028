"""Benchmarks of the data and training paths (`python -m training bench-data`, `bench-train`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def bench_data(rows: int) -> None:
    """Time `generate_history` and `validate_table` on `rows` declarations; print rows/s and seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rich.console import Console
    from rich.table import Table

    from features.contract import DECLARATION_COLUMNS
    from features.validation import read_table, validate_table
    from training.synthetic import generate_history

    console = Console()
    timings: list[tuple[str, int, float]] = []

    began = time.perf_counter()
    declarations, _seizures, _truth = generate_history(rows=rows, progress=True)
    timings.append(("generate_history", len(declarations), time.perf_counter() - began))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "declarations.parquet"
        pq.write_table(pa.Table.from_pandas(declarations, preserve_index=False), path)
        del declarations
        began = time.perf_counter()
        raw = read_table(path)
        timings.append(("read_table (parquet)", len(raw), time.perf_counter() - began))
        began = time.perf_counter()
        valid, rejects, _extra = validate_table(raw, DECLARATION_COLUMNS, str(path))
        timings.append(("validate_table", len(raw), time.perf_counter() - began))

    table = Table(title=f"Data throughput ({rows:,} declarations)")
    for name in ("step", "rows", "seconds", "rows/s"):
        table.add_column(name, justify="left" if name == "step" else "right")
    for step, n, seconds in timings:
        table.add_row(step, f"{n:,}", f"{seconds:.2f}", f"{n / seconds:,.0f}")
    console.print(table)
    console.print(f"valid rows {len(valid):,}, rejects {len(rejects):,}")


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
