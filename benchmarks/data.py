"""`make bench-data`: rows per second of synthetic generation, reading and contract validation.

`python -m benchmarks.data --rows 1000000`
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.data [--rows N]`: the data throughput table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data", description=bench_data.__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate and validate")
    bench_data(parser.parse_args(argv).rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
