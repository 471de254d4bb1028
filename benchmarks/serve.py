"""`make bench-serve`: this service against `mlflow models serve` on the same registered model.

`python -m benchmarks.serve [--declarations ...] [--seizures ...] [--singles N] [--batches N]`

Both servers run on loopback in the same run and are measured with the same client:
p50/p99 latency of sequential single-declaration requests, and declarations per second
for 1,000-declaration batches. Our path includes request validation, point-in-time
features from the history store, the model, the channel and five reasons per row; the
MLflow server gets precomputed feature rows (model only), so the comparison flatters it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.definitions import FEATURE_SET
from serving.demo import split_history
from serving.process import free_port, running_service, wait_until

console = Console()

OURS = "this service (full path)"
SHADOW = "this service + a challenger in shadow"
FLOOR = "validation floor (BentoML + request schema only)"
MLFLOW = "mlflow models serve (model only)"
FLOOR_SERVICE = "benchmarks.serve_floor:ValidationFloor"


def _measure(
    client: httpx.Client, url: str, singles: list[dict], batches: list[tuple[dict, int]]
) -> dict[str, float]:
    # Bodies are encoded before the clock starts (as a load generator replays prepared
    # requests), so both servers are timed on the same bytes and not on the client's JSON encoder.
    single_bodies = [orjson.dumps(body) for body in singles]
    batch_bodies = [(orjson.dumps(body), rows) for body, rows in batches]
    headers = {"content-type": "application/json"}
    for body in single_bodies[:50]:  # warm-up
        client.post(url, content=body, headers=headers).raise_for_status()
    for body, _ in batch_bodies[:2]:
        client.post(url, content=body, headers=headers).raise_for_status()
    latencies = []
    for body in single_bodies:
        started = time.perf_counter()
        client.post(url, content=body, headers=headers).raise_for_status()
        latencies.append(time.perf_counter() - started)
    rates = []
    for body, rows in batch_bodies:
        started = time.perf_counter()
        client.post(url, content=body, headers=headers).raise_for_status()
        rates.append(rows / (time.perf_counter() - started))
    ms = np.array(latencies) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rows_per_s": float(np.median(rates)),
    }


def print_log_check() -> None:
    """The per-request log check's cost on each store (`python -m benchmarks.serve --only log-check`)."""
    from benchmarks.replicas import log_check_cost

    table = Table(title="per-request history log check (HistoryStore.current(), nothing new), 3,000 calls")
    for column in ("store", "p50 us", "p99 us"):
        table.add_column(column, justify="right" if column != "store" else "left")
    for name, r in log_check_cost().items():
        table.add_row(name, f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}")
    console.print(table)


def run_workers(env: dict[str, str], records: list[dict], out: Path, clients: int = 4) -> None:
    """One and two workers under `clients` concurrent clients, same run."""
    from benchmarks.replicas import concurrent_throughput

    rates = {n: concurrent_throughput(env, records, n, out, clients=clients) for n in (1, 2)}
    table = Table(title=f"workers under {clients} concurrent clients (loopback, same run)")
    for column in ("workers", "single declarations/s", "batch declarations/s"):
        table.add_column(column, justify="right")
    for n, r in rates.items():
        table.add_row(str(n), f"{r['singles_per_s']:,.0f}", f"{r['rows_per_s']:,.0f}")
    console.print(table)
    console.print(
        f"2 workers / 1 worker: singles {rates[2]['singles_per_s'] / rates[1]['singles_per_s']:.2f}x, "
        f"batches {rates[2]['rows_per_s'] / rates[1]['rows_per_s']:.2f}x"
    )


def run_bench(
    declarations: Path, seizures: Path, singles: int = 1000, batches: int = 20, workers: bool = True
) -> None:
    out = Path("outputs/bench-serve")
    history_declarations, history_seizures, records = split_history(declarations, seizures, 2000, out)
    env = _bench_env(out, history_declarations, history_seizures)
    for stale in ("history.db", "audit.db"):
        (out / stale).unlink(missing_ok=True)
    ours_single = [{"declarations": [r]} for r in (records * (singles // len(records) + 1))[:singles]]
    ours_batch = [
        ({"declarations": records[i * 1000 % 1000 : i * 1000 % 1000 + 1000]}, 1000) for i in range(batches)
    ]
    results: dict[str, dict[str, float]] = {}
    with httpx.Client(timeout=120) as client:
        with running_service(env, log_path=out / "service.log") as base:
            results[OURS] = _measure(client, f"{base}/score", ours_single, ours_batch)
            features = _features_via_engine(history_declarations, history_seizures, records)
            features = features.astype(object).where(features.notna(), None)  # JSON has no NaN: null
        shadow_uri = _registry_with_a_challenger(out)
        if shadow_uri is not None:
            with running_service(
                {**env, "MLFLOW_TRACKING_URI": shadow_uri}, log_path=out / "shadow.log"
            ) as base:
                info = client.get(f"{base}/model").json()
                if not (info.get("challenger") or {}).get("version"):
                    raise RuntimeError(
                        f"the service scores no challenger in shadow: {info.get('challenger')}"
                    )
                results[SHADOW] = _measure(client, f"{base}/score", ours_single, ours_batch)
        with running_service(env, log_path=out / "floor.log", service=FLOOR_SERVICE) as base:
            results[FLOOR] = _measure(client, f"{base}/score", ours_single, ours_batch)
        mlflow_single = [
            {"dataframe_split": features.iloc[[i % len(features)]].to_dict(orient="split")}
            for i in range(singles)
        ]
        mlflow_batch = [
            ({"dataframe_split": features.iloc[:1000].to_dict(orient="split")}, 1000) for _ in range(batches)
        ]
        for body in mlflow_single + [b for b, _ in mlflow_batch]:
            body["dataframe_split"].pop("index", None)
        port = free_port()
        uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "models",
                "serve",
                "-m",
                "models:/diversion-risk@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env={
                **os.environ,
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # its uvicorn
                "MLFLOW_TRACKING_URI": uri,
                "MLFLOW_DISABLE_TELEMETRY": "true",
            },
            stdout=open(out / "mlflow-serve.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(f"http://127.0.0.1:{port}/ping", 180, process)
            results[MLFLOW] = _measure(
                client, f"http://127.0.0.1:{port}/invocations", mlflow_single, mlflow_batch
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            process.wait(timeout=30)
    table = Table(title="serving benchmark (loopback, sequential client, same run)")
    for column in ("server", "single p50 ms", "single p99 ms", "batch rows/s"):
        table.add_column(column, justify="right" if column != "server" else "left")
    for name, r in results.items():
        table.add_row(name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['rows_per_s']:,.0f}")
    console.print(table)
    ours, floor, theirs = results[OURS], results[FLOOR], results[MLFLOW]
    for name, other in ((MLFLOW, theirs), (FLOOR, floor)):
        console.print(
            f"{name} / ours: single p50 {other['p50_ms'] / ours['p50_ms']:.2f}x, "
            f"p99 {other['p99_ms'] / ours['p99_ms']:.2f}x; batch throughput ours / it "
            f"{ours['rows_per_s'] / other['rows_per_s']:.2f}x"
        )
    console.print(
        "scoring beyond the floor (features, model, reasons, audit commit): "
        f"single p50 +{ours['p50_ms'] - floor['p50_ms']:.2f} ms, "
        f"per 1,000-declaration batch +{1000 / ours['rows_per_s'] * 1000 - 1000 / floor['rows_per_s'] * 1000:.1f} ms"
    )
    if SHADOW in results:
        shadow = results[SHADOW]
        console.print(
            f"{SHADOW} / without: single p50 {shadow['p50_ms'] / ours['p50_ms']:.2f}x "
            f"(+{shadow['p50_ms'] - ours['p50_ms']:.2f} ms); batch throughput "
            f"{shadow['rows_per_s'] / ours['rows_per_s']:.2f}x"
        )
    print_log_check()
    if workers:
        run_workers(env, records, out)


def _registry_with_a_challenger(out: Path) -> str | None:
    """A copy of the SQLite model registry whose `@challenger` is a second version of the champion.

    The service then scores every request twice (the champion answers, the challenger is
    recorded in shadow): what shadow scoring costs. The user's registry is not changed.
    Returns the copy's tracking URI, or None (with a message) when the registry is not a
    SQLite file.
    """
    import shutil

    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    if not uri.startswith("sqlite:///"):
        console.print(f"shadow scoring not measured: the registry {uri} is not a SQLite file")
        return None
    copy = out / "mlflow-shadow.db"
    shutil.copyfile(uri.removeprefix("sqlite:///"), copy)
    shadow_uri = f"sqlite:///{copy}"
    client = MlflowClient(tracking_uri=shadow_uri, registry_uri=shadow_uri)
    champion = client.get_model_version_by_alias("diversion-risk", "champion")
    # with the champion's tags: the service verifies the recorded checksums before it loads a version
    second = client.create_model_version(
        "diversion-risk", champion.source, run_id=champion.run_id, tags=champion.tags
    )
    client.set_registered_model_alias("diversion-risk", "challenger", second.version)
    return shadow_uri


def _bench_env(out: Path, history_declarations: Path, history_seizures: Path) -> dict[str, str]:
    return {
        "DIVERSION_HISTORY_DECLARATIONS": str(history_declarations),
        "DIVERSION_HISTORY_SEIZURES": str(history_seizures),
        "DIVERSION_HISTORY_DB": f"sqlite:///{out}/history.db",
        "DIVERSION_AUDIT_DB": f"sqlite:///{out}/audit.db",
        "DIVERSION_DEMO_MODE": "true",
    }


def _features_via_engine(
    history_declarations: Path, history_seizures: Path, records: list[dict]
) -> pd.DataFrame:
    """Feature rows of the benchmark declarations (what the MLflow server is sent)."""
    from features.definitions import compute_online_features
    from features.history import History
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from serving.frames import declaration_columns
    from serving.schemas import Declaration

    reference = load_reference()
    tables = load_contract_tables(history_declarations, history_seizures, None, rejects_dir=None)
    history = History.build(tables.declarations, tables.seizures, reference)
    columns = declaration_columns([Declaration.model_validate(r).model_dump() for r in records])
    return compute_online_features(columns, history, reference).loc[:, list(FEATURE_SET.columns)]


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.serve`: this service against `mlflow models serve`, side by side, same run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=main.__doc__)
    parser.add_argument("--declarations", type=Path, default=Path("data/synthetic/declarations.parquet"))
    parser.add_argument("--seizures", type=Path, default=Path("data/synthetic/seizures.parquet"))
    parser.add_argument(
        "--singles", type=int, default=1000, help="sequential single-declaration requests per server"
    )
    parser.add_argument("--batches", type=int, default=20, help="1,000-declaration batches per server")
    parser.add_argument(
        "--only", choices=["log-check", "workers"], help="run one part: the log check or the workers rows"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if args.only == "log-check":
        print_log_check()
    elif args.only == "workers":
        out = Path("outputs/bench-serve")
        history_declarations, history_seizures, records = split_history(
            args.declarations, args.seizures, 2000, out
        )
        run_workers(_bench_env(out, history_declarations, history_seizures), records, out)
    else:
        run_bench(args.declarations, args.seizures, singles=args.singles, batches=args.batches)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
