"""Profile a contract history: sizes, period, label rate and, for synthetic data, typologies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.contract import LABEL_WINDOW_DAYS

_ID_COLUMNS = ("declaration_id", "exporter_id", "consignee_id", "seizure_id")


def _read(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={c: str for c in _ID_COLUMNS}, keep_default_na=True)


def _load(declarations_path: Path, seizures_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validated tables when `features.validation` is available, else the files as read."""
    try:
        from features.validation import load_contract_tables
    except ImportError:
        declarations, seizures = _read(declarations_path), _read(seizures_path)
    else:
        tables = load_contract_tables(
            declarations_path, seizures_path, None, rejects_dir=Path(declarations_path).parent / "rejects",
            max_reject_share=0.01,
        )  # fmt: skip
        declarations, seizures = tables.declarations, tables.seizures
    declarations = declarations.assign(declared_at=pd.to_datetime(declarations["declared_at"]))
    seizures = seizures.assign(seized_at=pd.to_datetime(seizures["seized_at"]))
    return declarations, seizures


def label_declarations(declarations: pd.DataFrame, seizures: pd.DataFrame) -> pd.Series:
    """Contract label: a seizure names the declaration within LABEL_WINDOW_DAYS after filing."""
    linked = seizures.dropna(subset=["declaration_id"])[["declaration_id", "seized_at"]]
    merged = linked.merge(declarations[["declaration_id", "declared_at"]], on="declaration_id", how="inner")
    lag = merged["seized_at"] - merged["declared_at"]
    in_window = (lag >= pd.Timedelta(0)) & (lag <= pd.Timedelta(days=LABEL_WINDOW_DAYS))
    positive = set(merged.loc[in_window, "declaration_id"])
    return declarations["declaration_id"].isin(positive).rename("label")


def profile_history(declarations_path: Path, seizures_path: Path) -> dict:
    """Print and return row counts, date range, positive rate, seizure kinds and typology counts."""
    from rich.console import Console
    from rich.table import Table

    declarations, seizures = _load(declarations_path, seizures_path)
    label = label_declarations(declarations, seizures)
    first, last = declarations["declared_at"].min(), declarations["declared_at"].max()
    mature = declarations["declared_at"] <= last - pd.Timedelta(days=LABEL_WINDOW_DAYS)
    linked = seizures["declaration_id"].notna()
    result: dict = {
        "declarations": len(declarations),
        "seizures": len(seizures),
        "first_declared_at": first,
        "last_declared_at": last,
        "exporters": int(declarations["exporter_id"].nunique()),
        "consignees": int(declarations["consignee_id"].nunique()),
        "positives": int(label.sum()),
        "positive_rate": float(label.mean()),
        "positive_rate_mature": float(label[mature].mean()) if mature.any() else float("nan"),
        "seizures_with_declaration": int(linked.sum()),
        "seizures_entity_only": int((~linked).sum()),
        "typologies": None,
    }
    decl_path = Path(declarations_path)
    truth_path = decl_path.with_name(f"ground_truth{decl_path.suffix}")
    if truth_path.is_file():
        truth = _read(truth_path)
        joined = truth.merge(label.to_frame().assign(declaration_id=declarations["declaration_id"]),
                             on="declaration_id", how="left")  # fmt: skip
        per_typology = joined.groupby("typology").agg(declarations=("declaration_id", "size"),
                                                      labelled=("label", "sum"))  # fmt: skip
        per_typology["share"] = per_typology["declarations"] / len(truth)
        result["typologies"] = per_typology.sort_values("declarations", ascending=False)

    console = Console()
    table = Table(title="Export history profile", show_header=False)
    table.add_row("declarations", f"{result['declarations']:,}")
    table.add_row("period", f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}")
    table.add_row("exporters / consignees", f"{result['exporters']:,} / {result['consignees']:,}")
    table.add_row("seizures", f"{result['seizures']:,}")
    table.add_row("  naming a declaration", f"{result['seizures_with_declaration']:,}")
    table.add_row("  naming only an exporter or consignee", f"{result['seizures_entity_only']:,}")
    table.add_row(f"positives (seized within {LABEL_WINDOW_DAYS} days)", f"{result['positives']:,}")
    table.add_row("positive rate", f"{result['positive_rate']:.3%}")
    table.add_row(f"positive rate, labels mature (> {LABEL_WINDOW_DAYS} days old)",
                  f"{result['positive_rate_mature']:.3%}")  # fmt: skip
    console.print(table)
    if result["typologies"] is not None:
        typ = Table(title=f"Typologies ({truth_path.name})")
        for name in ("typology", "declarations", "share", "labelled positive"):
            typ.add_column(name, justify="left" if name == "typology" else "right")
        for name, rec in result["typologies"].iterrows():
            typ.add_row(
                str(name), f"{int(rec['declarations']):,}", f"{rec['share']:.3%}", f"{int(rec['labelled']):,}"
            )
        console.print(typ)
    return result
