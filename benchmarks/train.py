"""`make bench-train`: wall time and peak memory of each step of training on one machine.

`python -m benchmarks.train --rows 1000000 [--data-dir data/bench] [--no-previous]`

The synthetic history is generated once per size into ``<data-dir>/rows-<N>`` and reused;
generation is reported on its own line, apart from features and training. Peak RSS is
measured per step (Linux: the process's high-water mark is reset before each step), so a
step's figure is the most memory the process held while that step ran. Unless
``--no-previous``, the previous release's fit (`benchmarks.previous_release`) also runs on
the same features, and the ratio of training times is printed.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from pathlib import Path


def _status_gb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the high-water mark of the resident set (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class _Steps:
    """Seconds, peak RSS and RSS after each step, in order."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float, str]] = []
        self.per_step = _reset_peak()
        self._started = time.perf_counter()

    def done(self, name: str, declarations: int | None = None, rate: str = "") -> float:
        seconds = time.perf_counter() - self._started
        if declarations is not None:
            rate = f"{declarations / seconds:,.0f} declarations/s"
        gc.collect()
        peak = _status_gb("VmHWM") if self.per_step else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        after = _status_gb("VmRSS") or float("nan")
        self.rows.append((name, seconds, peak, after, rate))
        print(f"{name}: {seconds:.1f} s, peak RSS {peak:.2f} GB, after {after:.2f} GB {rate}", flush=True)
        self.per_step = _reset_peak()
        self._started = time.perf_counter()
        return seconds


def cached_history(data_dir: Path, rows: int, seed: int = 42) -> tuple[Path, float | None]:
    """The folder holding a synthetic history of `rows` declarations, generated when missing.

    Returns the folder and the generation seconds (None when reused).
    """
    from training.synthetic import write_history

    folder = data_dir / f"rows-{rows}-seed-{seed}"
    done = folder / ".complete"
    if done.exists():
        return folder, None
    started = time.perf_counter()
    write_history(out_dir=folder, rows=rows, years=3.0, seed=seed, fmt="parquet")
    done.touch()
    return folder, time.perf_counter() - started


def bench_train(rows: int, data_dir: Path, compare_previous: bool = True) -> None:
    """Wall time, peak RSS and throughput of each training step at `rows` declarations."""
    from rich.console import Console
    from rich.table import Table

    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import default_windows, fit_and_evaluate
    from training.config import TrainingConfig
    from training.datasets import compact_declarations, features_in_chunks, history_in_chunks

    folder, generation_seconds = cached_history(data_dir, rows)
    steps = _Steps()
    tables = load_contract_tables(folder / "declarations.parquet", folder / "seizures.parquet")
    declarations, seizures = tables.declarations, tables.seizures
    del tables
    n = len(declarations)
    steps.done("load + validate", n)
    reference = load_reference()
    declarations = compact_declarations(declarations)  # as `make train` keeps them: one copy
    history = history_in_chunks(declarations, seizures, reference)
    steps.done("history index (text as categories, indexed in slices)", n)
    features = features_in_chunks(declarations, history, reference)
    del history
    steps.done("point-in-time features (in slices)", n)
    config = TrainingConfig()
    test_from, train_until, test_to = default_windows(
        declarations["declared_at"], config.label_window_days, config.test_days
    )
    previous = None
    if compare_previous:
        from benchmarks.previous_release import previous_columns, previous_config

        result = fit_and_evaluate(
            declarations, seizures, features, previous_config(config), train_until, test_from, test_to,
            columns=previous_columns(),
        )  # fmt: skip
        previous = steps.done(
            f"(fit as the previous release: 1.1.0 columns, log-loss, one fit; "
            f"{result.scorer.metadata['best_iteration']} trees, R@5% {result.metrics['recall_at_5pct']:.3f})",
            rate=f"{int(result.train_mask.sum()):,} training rows",
        )
        del result
    result = fit_and_evaluate(declarations, seizures, features, config, train_until, test_from, test_to)
    steps.done(
        f"fit + calibrate + evaluate + baselines ({config.trials} trials on the latest "
        f"{config.search_rows or 'all'} training rows; {result.scorer.metadata['best_iteration']} trees, "
        f"R@5% {result.metrics['recall_at_5pct']:.3f})",
        rate=f"{int(result.train_mask.sum()):,} training rows",
    )

    table = Table(title=f"bench-train at {n:,} declarations (generation excluded)")
    for column in ("step", "seconds", "peak RSS (GB)", "RSS after (GB)", "rate"):
        table.add_column(column, justify="left" if column in ("step", "rate") else "right")
    if generation_seconds is not None:
        table.add_row(
            "(generate synthetic history)",
            f"{generation_seconds:.1f}",
            "-",
            "-",
            f"{n / generation_seconds:,.0f} declarations/s",
        )
    else:
        table.add_row("(generate synthetic history)", "cached", "-", "-", str(folder))
    for name, seconds, peak, after, rate in steps.rows:
        table.add_row(name, f"{seconds:.1f}", f"{peak:.2f}", f"{after:.2f}", rate)
    total = sum(row[1] for row in steps.rows[1:]) - (previous or 0.0)
    table.add_row(
        "features + training",
        f"{total:.1f}",
        f"{max(row[2] for row in steps.rows):.2f}",
        "",
        f"{n / total:,.0f} declarations/s",
    )
    Console(width=160).print(table)
    if previous is not None:
        before = total - steps.rows[-1][1] + previous
        print(
            f"training time against the previous release's fit, same run: {total:.1f} s / {before:.1f} s = "
            f"{total / before:.2f}x (fit step alone {steps.rows[-1][1]:.1f} s / {previous:.1f} s = "
            f"{steps.rows[-1][1] / previous:.2f}x)"
        )


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.train [--rows N] [--data-dir DIR]`: the per-step table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=bench_train.__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="declarations to featurise and train on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data/bench"),
        help="where generated histories are kept for reuse",
    )
    parser.add_argument(
        "--previous",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit as the previous release did, on the same features, and print the time ratio",
    )
    args = parser.parse_args(argv)
    bench_train(args.rows, args.data_dir, compare_previous=args.previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
