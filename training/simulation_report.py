"""Outputs of the inspection-budget simulation: tables, curves, MLflow run, and the CLI entry point."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from training.simulation import (
    SimulationConfig,
    SimulationData,
    SimulationResult,
    add_rates,
    console,
    simulate,
    simulation_period,
)
from training.simulation_knowledge import SeizureKnowledge


def comparison_markdown(summary: pd.DataFrame) -> str:
    """The summary as a markdown table (precision etc. as decimals, kg and counts as integers)."""
    headers = list(summary.columns)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if h in ("strategy", "label_mode") else "---:" for h in headers) + "|",
    ]
    for _, row in summary.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(weekly: pd.DataFrame, path: Path) -> Path:
    """Weekly and cumulative normalised precision, cumulative recall and kg, distinct exporters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("normalised_precision", "weekly precision / oracle (4-week mean)"),
        ("cum_normalised_precision", "cumulative precision / oracle"),
        ("cum_recall", "cumulative recall (share of all diverted)"),
        ("cum_normalised_kg", "cumulative seized kg / oracle"),
        ("cum_precision", "cumulative precision"),
        ("distinct_exporters", "distinct exporters ever inspected"),
    )
    fig, axes = plt.subplots(2, 3, figsize=(17, 8.5))
    for ax, (column, title) in zip(axes.ravel(), panels, strict=True):
        for name, w in weekly.groupby("strategy", sort=False):
            values = w[column]
            if column == "normalised_precision":
                values = values.rolling(4, min_periods=1).mean()
            style = "--" if "(" in str(name) else "-"
            ax.plot(w["week"], values, style, label=name)
        ax.set_title(title)
        ax.set_xlabel("simulated week")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def inspections_log(result: SimulationResult, data: SimulationData) -> pd.DataFrame:
    """Every simulated inspection: strategy, week, declaration and its (revealed) outcome."""
    parts = []
    for arm, inspected in result.inspected.items():
        rows = np.flatnonzero(inspected)
        parts.append(
            pd.DataFrame(
                {
                    "strategy": arm,
                    "week": result.week_index[rows],
                    "declaration_id": data.declaration_id[rows],
                    "diverted": data.diverted[rows],
                    "seized_kg": data.seized_kg[rows],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def typology_capture(
    result: SimulationResult, data: SimulationData, ground_truth: pd.DataFrame
) -> pd.DataFrame:
    """Synthetic data only: share of each typology's seized declarations that each strategy inspected.

    `ground_truth` (declaration_id, typology) comes from the generator; real data has no such
    file. It shows whether a strategy finds a new diversion route (drift) or only the known ones.
    """
    typology = (
        ground_truth.set_index(ground_truth["declaration_id"].astype("str"))["typology"]
        .reindex(data.declaration_id)
        .to_numpy()
    )
    period_positive = (result.week_index >= 0) & data.diverted
    names = sorted(pd.unique(typology[period_positive]).tolist())
    rows = []
    for arm, inspected in result.inspected.items():
        row: dict[str, object] = {"strategy": arm}
        for name in names:
            positives = period_positive & (typology == name)
            row[name] = float((inspected & positives).sum() / positives.sum())
        rows.append(row)
    counts = {"strategy": "(seized declarations in the period)"}
    counts.update({name: str(int((period_positive & (typology == name)).sum())) for name in names})
    return pd.concat([pd.DataFrame([counts]), pd.DataFrame(rows)], ignore_index=True)


def write_outputs(
    result: SimulationResult, out_dir: Path, data: SimulationData, ground_truth: pd.DataFrame | None = None
) -> dict[str, Path]:
    """weekly.csv, comparison.csv|md, inspections.csv, curves.png (and typology_capture.*) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weekly = add_rates(result.weekly)
    paths = {
        "weekly": out_dir / "weekly.csv",
        "comparison_csv": out_dir / "comparison.csv",
        "comparison_md": out_dir / "comparison.md",
        "curves": out_dir / "curves.png",
    }
    weekly.to_csv(paths["weekly"], index=False, float_format="%.6g")
    result.summary.to_csv(paths["comparison_csv"], index=False, float_format="%.6g")
    c = result.config
    header = (
        f"# Inspection-budget simulation\n\n{result.period_from.date()} to {result.period_to.date()} "
        f"({result.weekly['week'].nunique()} weeks), inspection rate {c.inspection_rate:.0%}, exploration "
        f"share {c.exploration_share:.0%}, retrain every {c.retrain_every_weeks} weeks, label mode "
        f"{c.label_mode}; {result.fits} model fits, {result.seconds['simulation']:.0f}s.\n\n"
    )
    paths["comparison_md"].write_text(header + comparison_markdown(result.summary))
    plot_curves(weekly, paths["curves"])
    paths["inspections"] = out_dir / "inspections.csv"
    inspections_log(result, data).to_csv(paths["inspections"], index=False, float_format="%.6g")
    if ground_truth is not None:
        capture = typology_capture(result, data, ground_truth)
        paths["typology_csv"] = out_dir / "typology_capture.csv"
        paths["typology_md"] = out_dir / "typology_capture.md"
        capture.to_csv(paths["typology_csv"], index=False, float_format="%.6g")
        paths["typology_md"].write_text(
            "# Share of each typology's seized declarations inspected (synthetic ground truth)\n\n"
            + comparison_markdown(capture)
        )
    return paths


def log_to_mlflow(result: SimulationResult, paths: dict[str, Path], data_files: dict[str, Path]) -> str:
    """One run in the simulation experiment: config, summary metrics, tables and plots."""
    import mlflow

    from training.pipeline import configure_tracking

    experiment_id = configure_tracking(result.config.tracking_uri, result.config.experiment)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        config = json.loads(result.config.model_dump_json())
        mlflow.log_dict(config, "config.json")
        mlflow.log_params(
            {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in config.items()}
        )
        mlflow.set_tags({f"data.{k}": str(v) for k, v in data_files.items()})
        mlflow.log_params(
            {"period_from": str(result.period_from.date()), "period_to": str(result.period_to.date())}
        )
        metrics = {}
        for _, row in result.summary.iterrows():
            slug = row["strategy"].replace(" (", "__").replace(")", "")
            for column in ("precision", "recall", "kg_share", "normalised_precision", "normalised_kg",
                           "last_quarter_normalised_precision", "distinct_exporters"):  # fmt: skip
                value = float(row[column])
                if np.isfinite(value):
                    metrics[f"{slug}.{column}"] = value
        metrics["wall_seconds"] = result.seconds["simulation"]
        metrics["model_fits"] = float(result.fits)
        mlflow.log_metrics(metrics)
        for path in paths.values():
            mlflow.log_artifact(str(path))
        return run.info.run_id


def print_summary(result: SimulationResult) -> None:
    table = Table(
        title=f"simulation {result.period_from.date()} .. {result.period_to.date()}: strategies side by side"
    )
    for column in (
        "strategy",
        "precision",
        "recall",
        "kg share",
        "prec/oracle",
        "kg/oracle",
        "last qtr prec/oracle",
        "exporters",
    ):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for _, row in result.summary.iterrows():
        table.add_row(
            row["strategy"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['kg_share']:.3f}",
            f"{row['normalised_precision']:.3f}",
            f"{row['normalised_kg']:.3f}",
            f"{row['last_quarter_normalised_precision']:.3f}",
            f"{row['distinct_exporters']:,}",
        )
    console.print(table)


def _synthetic_ground_truth(declarations: Path) -> pd.DataFrame | None:
    """The generator's ground_truth file beside the declarations, when there is one."""
    path = declarations.with_name("ground_truth" + declarations.suffix)
    if not path.exists():
        return None
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    return frame[["declaration_id", "typology"]]


def knowledge_of(
    declarations: pd.DataFrame, seizures: pd.DataFrame, config: SimulationConfig
) -> SeizureKnowledge:
    """The seizures every strategy knows, and those only its inspections reveal (`seizure_knowledge`)."""
    from features.reference import load_reference

    declared_at = declarations["declared_at"].to_numpy(dtype="datetime64[us]")
    period_from, period_to = simulation_period(
        declared_at, config.weeks, config.label_window_days, config.end
    )
    in_period = (declared_at >= np.datetime64(period_from.to_datetime64(), "us")) & (
        declared_at < np.datetime64(period_to.to_datetime64(), "us")
    )
    return SeizureKnowledge.build(
        declarations, seizures, load_reference(), in_period, config.seizure_knowledge
    )


def run_simulation_cli(declarations: Path, seizures: Path, config: Path | None) -> SimulationResult:
    """`python -m training simulate`: validate, build what each strategy knows, simulate, write, log."""
    from features.validation import load_contract_tables

    started = time.perf_counter()
    settings = SimulationConfig.load(config)
    tables = load_contract_tables(declarations, seizures, None, rejects_dir=settings.output_dir / "rejects")
    console.print(f"[bold]contract[/]: {tables.report.summary()}")
    t0 = time.perf_counter()
    knowledge = knowledge_of(tables.declarations, tables.seizures, settings)
    features = knowledge.features(knowledge.base, np.arange(len(tables.declarations)))
    data = SimulationData.from_tables(
        tables.declarations, tables.seizures, features, settings.label_window_days
    )
    console.print(
        f"features: {len(features):,} declarations in {time.perf_counter() - t0:.1f}s; seizure knowledge "
        f"{settings.seizure_knowledge}: {len(knowledge.withheld):,} of {len(tables.seizures):,} seizures "
        "known to a strategy only when its inspection finds them"
    )
    result = simulate(data, settings, progress=True, knowledge=knowledge)
    paths = write_outputs(result, settings.output_dir, data, _synthetic_ground_truth(declarations))
    run_id = log_to_mlflow(result, paths, {"declarations": declarations, "seizures": seizures})
    print_summary(result)
    total = time.perf_counter() - started
    console.print(
        f"{result.fits} model fits ({result.seconds['fitting']:.0f}s of fitting, "
        f"{result.seconds['features']:.0f}s of per-strategy features); wall time {total:.0f}s; "
        f"tables in {settings.output_dir}/comparison.md|csv; MLflow run {run_id} "
        f"(experiment {settings.experiment!r})"
    )
    return result
