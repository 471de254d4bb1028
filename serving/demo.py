"""The end of `make demo`: start the service, score new declarations, show the riskiest, stop.

The last `new` declarations of the history play the part of newly filed ones: the
service's history store holds everything filed before them (and the seizures known by
then), exactly the situation of a live deployment.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.validation import load_contract_tables
from serving.process import running_service

console = Console(width=None if Console().is_terminal else 150)


def request_records(frame: pd.DataFrame) -> list[dict]:
    """Contract rows as JSON-able request dicts (missing optional values omitted)."""
    records = json.loads(frame.to_json(orient="records", date_format="iso", date_unit="s"))
    return [{k: v for k, v in record.items() if v is not None} for record in records]


def split_history(declarations: Path, seizures: Path, new: int, out: Path) -> tuple[Path, Path, list[dict]]:
    """History files without the last `new` declarations, and those declarations as requests."""
    tables = load_contract_tables(declarations, seizures, None, rejects_dir=None)
    frame = tables.declarations.sort_values("declared_at", kind="stable")
    history, fresh = frame.iloc[:-new], frame.iloc[-new:]
    cutoff = fresh["declared_at"].iloc[0]
    known_seizures = tables.seizures.loc[tables.seizures["seized_at"] < cutoff]
    out.mkdir(parents=True, exist_ok=True)
    history.to_parquet(out / "history_declarations.parquet", index=False)
    known_seizures.to_parquet(out / "history_seizures.parquet", index=False)
    return out / "history_declarations.parquet", out / "history_seizures.parquet", request_records(fresh)


def run_demo(
    declarations: Path, seizures: Path, new: int = 2000, top: int = 12, out: Path = Path("outputs/demo")
) -> None:
    history_declarations, history_seizures, records = split_history(declarations, seizures, new, out)
    env = {
        "DIVERSION_HISTORY_DECLARATIONS": str(history_declarations),
        "DIVERSION_HISTORY_SEIZURES": str(history_seizures),
        "DIVERSION_HISTORY_DB": f"sqlite:///{out}/history.db",
        "DIVERSION_AUDIT_DB": f"sqlite:///{out}/audit.db",
        "DIVERSION_DEMO_MODE": os.environ.get("DIVERSION_DEMO_MODE", "true"),
    }
    for stale in ("history.db", "audit.db"):
        (out / stale).unlink(missing_ok=True)
    console.print(f"starting the service on {len(records):,} new declarations' history ...")
    started = time.perf_counter()
    with running_service(env, log_path=out / "service.log") as base:
        console.print(f"service ready in {time.perf_counter() - started:.1f}s at {base}")
        model = httpx.get(f"{base}/model", timeout=30).json()
        scores: list[dict] = []
        t0 = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            for i in range(0, len(records), 500):
                response = client.post(f"{base}/score", json={"declarations": records[i : i + 500]})
                response.raise_for_status()
                scores += response.json()["scores"]
        elapsed = time.perf_counter() - t0
    channels = pd.Series([s["channel"] for s in scores]).value_counts()
    console.print(
        f"model [bold]{model['name']}[/] v{model['version']} (feature set {model['feature_set'].get('version')}): "
        f"scored {len(scores):,} declarations in {elapsed:.2f}s; channels: "
        + ", ".join(f"{k} {v}" for k, v in channels.items())
    )
    by_id = {r["declaration_id"]: r for r in records}
    table = Table(title=f"the {top} riskiest new declarations", show_lines=True)
    for column in ("declaration", "score", "pct", "channel", "goods", "route", "reasons"):
        table.add_column(column, overflow="fold")
    for item in sorted(scores, key=lambda s: -s["risk_score"])[:top]:
        record = by_id[item["declaration_id"]]
        reasons = [r["sentence"] for r in item["reasons"][:3]] + [f"rule: {h}" for h in item["rule_hits"]]
        table.add_row(
            item["declaration_id"],
            f"{item['risk_score']:.3f}",
            f"{item['percentile']:.1f}",
            item["channel"],
            f"{record['hs_code']} {record.get('goods_description', '')[:40]}",
            f"{record['transport_mode']} -> {record['destination_country']}",
            "\n".join(reasons),
        )
    console.print(table)
