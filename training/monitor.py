"""Drift report (`python -m training monitor`): recent declarations against the training window.

- population stability index (PSI) of every feature of `features.definitions.FEATURE_SET`,
- PSI of model scores, from a model fitted on the training window,
- channel-rate shift: share of recent declarations above the training window's RED (top 2 %)
  and YELLOW (top 10 %) score thresholds.

PSI above 0.1 is a warning, above 0.25 drift. The report is HTML with embedded plots
(outputs/monitor/report.html) and a rich table on the console.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.contract import LABEL_WINDOW_DAYS
from features.definitions import FEATURE_SET
from models.estimator import BoosterParams

console = Console(width=None if Console().is_terminal else 150)

PSI_WARN = 0.10
PSI_DRIFT = 0.25
RED_RATE = 0.02
YELLOW_RATE = 0.10  # RED and YELLOW together: the top 10 % of training-window scores
_EPSILON = 1e-4  # floor of a bin's share, so an empty bin does not make PSI infinite


def drift_status(psi: float) -> str:
    """'stable', 'warn' (PSI > 0.1) or 'drift' (PSI > 0.25)."""
    if psi > PSI_DRIFT:
        return "drift"
    if psi > PSI_WARN:
        return "warn"
    return "stable"


def _bin_shares(reference: np.ndarray, recent: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares of both samples per bin: one bin per value when the reference has few values,
    else reference quantile bins; missing values are a bin of their own."""
    ref_missing, new_missing = np.isnan(reference), np.isnan(recent)
    ref, new = reference[~ref_missing], recent[~new_missing]
    values = np.unique(ref)
    if len(values) <= bins:
        # Discrete (flags, categories, small counts): the last bin takes values the reference never had.
        ref_idx = np.searchsorted(values, ref)
        new_idx = np.where(np.isin(new, values), np.searchsorted(values, new), len(values))
        n_bins = len(values) + 1
    else:
        edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1))[1:-1])
        ref_idx = np.searchsorted(edges, ref, side="right")
        new_idx = np.searchsorted(edges, new, side="right")
        n_bins = len(edges) + 1
    ref_counts = np.append(np.bincount(ref_idx, minlength=n_bins), ref_missing.sum())
    new_counts = np.append(np.bincount(new_idx, minlength=n_bins), new_missing.sum())
    return ref_counts / max(len(reference), 1), new_counts / max(len(recent), 1)


def population_stability_index(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """PSI = sum over bins of (recent - reference) * ln(recent / reference)."""
    ref_share, new_share = _bin_shares(
        np.asarray(reference, dtype=np.float64), np.asarray(recent, dtype=np.float64), bins
    )
    ref_share, new_share = np.maximum(ref_share, _EPSILON), np.maximum(new_share, _EPSILON)
    return float(np.sum((new_share - ref_share) * np.log(new_share / ref_share)))


@dataclass(frozen=True)
class MonitorReport:
    """Everything the drift report shows."""

    training_from: pd.Timestamp
    training_to: pd.Timestamp
    recent_from: pd.Timestamp
    recent_to: pd.Timestamp
    training_declarations: int
    recent_declarations: int
    feature_psi: pd.DataFrame  # feature, psi, status, reference_mean, recent_mean
    score_psi: float
    channel_rates: pd.DataFrame  # channel, training_share, recent_share, ratio
    training_scores: np.ndarray
    recent_scores: np.ndarray

    @property
    def score_status(self) -> str:
        return drift_status(self.score_psi)


def monitor_windows(
    declared_at: pd.Series, recent_days: int, label_window_days: int
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """Training window (labels mature when the recent window opens) and the recent window."""
    recent_to = declared_at.max() + pd.Timedelta(seconds=1)
    recent_from = recent_to - pd.Timedelta(days=recent_days)
    training_to = recent_from - pd.Timedelta(days=label_window_days)
    training_from = declared_at.min()
    if training_to <= training_from:
        raise ValueError(
            f"no training window: the recent window starts {recent_from.date()} and labels need "
            f"{label_window_days} days to mature, which is before the first declaration "
            f"({training_from.date()}); use a shorter --recent-days or a longer history"
        )
    return training_from, training_to, recent_from, recent_to


def build_report(
    declarations: pd.DataFrame,
    seizures: pd.DataFrame,
    features: pd.DataFrame,
    recent_days: int,
    label_window_days: int = LABEL_WINDOW_DAYS,
    seed: int = 42,
) -> MonitorReport:
    """Compare the last `recent_days` with the window a model fitted today would train on."""
    from training.labels import declaration_labels
    from training.simulation import fit_ranker

    declared_at = declarations["declared_at"]
    training_from, training_to, recent_from, recent_to = monitor_windows(
        declared_at, recent_days, label_window_days
    )
    training = (declared_at < training_to).to_numpy()
    recent = (declared_at >= recent_from).to_numpy()
    columns = list(FEATURE_SET.columns)
    rows = []
    for name in columns:
        ref, new = (
            features.loc[training, name].to_numpy(np.float64),
            features.loc[recent, name].to_numpy(np.float64),
        )
        psi = population_stability_index(ref, new)
        rows.append(
            {
                "feature": name,
                "psi": psi,
                "status": drift_status(psi),
                "training_mean": float(np.nanmean(ref)) if np.isfinite(ref).any() else float("nan"),
                "recent_mean": float(np.nanmean(new)) if np.isfinite(new).any() else float("nan"),
            }
        )
    feature_psi = pd.DataFrame(rows).sort_values("psi", ascending=False, ignore_index=True)

    # The model a deployment would have: trained on labels known when the recent window opens.
    labels = declaration_labels(declarations, seizures, label_window_days, known_before=recent_from)
    matrix = features[columns].to_numpy(np.float64)
    params = BoosterParams(max_rounds=200, learning_rate=0.1, num_threads=1, seed=seed)
    ranker = fit_ranker(matrix[training], labels.diverted[training], params, 0.2, seed)
    training_scores, recent_scores = ranker.scores(matrix[training]), ranker.scores(matrix[recent])
    red, yellow = np.quantile(training_scores, [1.0 - RED_RATE, 1.0 - YELLOW_RATE])
    channel_rates = pd.DataFrame(
        [
            {
                "channel": "RED (top 2 % of training scores)",
                "threshold": float(red),
                "training_share": float(np.mean(training_scores >= red)),
                "recent_share": float(np.mean(recent_scores >= red)),
            },
            {
                "channel": "RED or YELLOW (top 10 %)",
                "threshold": float(yellow),
                "training_share": float(np.mean(training_scores >= yellow)),
                "recent_share": float(np.mean(recent_scores >= yellow)),
            },
        ]
    )
    channel_rates["ratio"] = channel_rates["recent_share"] / channel_rates["training_share"]
    return MonitorReport(
        training_from=pd.Timestamp(training_from),
        training_to=pd.Timestamp(training_to),
        recent_from=pd.Timestamp(recent_from),
        recent_to=pd.Timestamp(recent_to),
        training_declarations=int(training.sum()),
        recent_declarations=int(recent.sum()),
        feature_psi=feature_psi,
        score_psi=population_stability_index(training_scores, recent_scores),
        channel_rates=channel_rates,
        training_scores=training_scores,
        recent_scores=recent_scores,
    )


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(report: MonitorReport) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"stable": "tab:green", "warn": "tab:orange", "drift": "tab:red"}
    out = {}
    psi = report.feature_psi.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(psi) + 1.5))
    ax.barh(psi["feature"], psi["psi"], color=[colours[s] for s in psi["status"]])
    for x, style in ((PSI_WARN, ":"), (PSI_DRIFT, "--")):
        ax.axvline(x, color="grey", linestyle=style)
    ax.set_xlabel("population stability index (recent vs training window)")
    fig.tight_layout()
    out["feature_psi"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    edges = np.quantile(report.training_scores, np.linspace(0, 1, 41))
    edges = np.unique(np.concatenate([[0.0], edges, [1.0]]))
    ax.hist(report.training_scores, bins=edges, density=True, alpha=0.5, label="training window")
    ax.hist(report.recent_scores, bins=edges, density=True, alpha=0.5, label="recent")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("model score")
    ax.set_title(f"score distribution (PSI {report.score_psi:.3f}, {report.score_status})")
    ax.legend()
    fig.tight_layout()
    out["scores"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(report.channel_rates))
    ax.bar(x - 0.2, report.channel_rates["training_share"] * 100, 0.4, label="training window")
    ax.bar(x + 0.2, report.channel_rates["recent_share"] * 100, 0.4, label="recent")
    ax.set_xticks(x, ["RED", "RED+YELLOW"])
    ax.set_ylabel("% of declarations above threshold")
    ax.legend()
    fig.tight_layout()
    out["channels"] = _png(fig)
    plt.close(fig)
    return out


def render_html(report: MonitorReport) -> str:
    """A self-contained HTML page (plots embedded as base64 PNG)."""
    images = _plots(report)
    style = {"stable": "#e6f4ea", "warn": "#fff4e5", "drift": "#fde8e8"}
    feature_rows = "".join(
        f"<tr style='background:{style[r.status]}'><td>{html.escape(r.feature)}</td><td>{r.psi:.3f}</td>"
        f"<td>{r.status}</td><td>{r.training_mean:.4g}</td><td>{r.recent_mean:.4g}</td></tr>"
        for r in report.feature_psi.itertuples()
    )
    channel_rows = "".join(
        f"<tr><td>{html.escape(r.channel)}</td><td>{r.threshold:.4f}</td><td>{r.training_share:.2%}</td>"
        f"<td>{r.recent_share:.2%}</td><td>{r.ratio:.2f}</td></tr>"
        for r in report.channel_rates.itertuples()
    )
    counts = report.feature_psi["status"].value_counts()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Diversion-risk drift report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>Drift report</h1>
<p>Training window {report.training_from.date()} to {report.training_to.date()}
({report.training_declarations:,} declarations, labels mature when the recent window opens);
recent window {report.recent_from.date()} to {report.recent_to.date()} ({report.recent_declarations:,}).
PSI &gt; {PSI_WARN} warns, &gt; {PSI_DRIFT} is drift.</p>
<h2>Summary</h2><ul>
<li>Score PSI: <b>{report.score_psi:.3f}</b> ({report.score_status})</li>
<li>Features: {counts.get("drift", 0)} drift, {counts.get("warn", 0)} warn, {counts.get("stable", 0)} stable</li></ul>
<h2>Channel rates</h2><table><tr><th>channel</th><th>score threshold</th><th>training</th><th>recent</th>
<th>recent / training</th></tr>{channel_rows}</table>
<img src="data:image/png;base64,{images["channels"]}" alt="channel rates">
<h2>Score distribution</h2><img src="data:image/png;base64,{images["scores"]}" alt="score distribution">
<h2>Features</h2><img src="data:image/png;base64,{images["feature_psi"]}" alt="feature PSI">
<table><tr><th>feature</th><th>PSI</th><th>status</th><th>training mean</th><th>recent mean</th></tr>
{feature_rows}</table>
<p>Cumulative history counts (prior declarations, tenure) grow with the history itself, so their PSI
rises with time even without a change in behaviour; read them together with the rates and shares.</p>
</body></html>
"""


def print_report(report: MonitorReport) -> None:
    colour = {"stable": "green", "warn": "yellow", "drift": "red"}
    table = Table(
        title=f"drift: recent {report.recent_from.date()}..{report.recent_to.date()} vs training "
        f"{report.training_from.date()}..{report.training_to.date()}"
    )
    for column in ("feature", "PSI", "status", "training mean", "recent mean"):
        table.add_column(column, justify="left" if column in ("feature", "status") else "right")
    table.add_row(
        "[bold]model score[/]", f"{report.score_psi:.3f}", _status(report.score_status, colour), "", ""
    )
    for r in report.feature_psi.itertuples():
        table.add_row(
            r.feature,
            f"{r.psi:.3f}",
            _status(r.status, colour),
            f"{r.training_mean:.4g}",
            f"{r.recent_mean:.4g}",
        )
    console.print(table)
    for r in report.channel_rates.itertuples():
        console.print(
            f"{r.channel}: training {r.training_share:.2%} -> recent {r.recent_share:.2%} (x{r.ratio:.2f})"
        )


def _status(status: str, colour: dict[str, str]) -> str:
    return f"[{colour[status]}]{status}[/]"


def run_monitor_cli(declarations: Path, seizures: Path, recent_days: int) -> MonitorReport:
    """`python -m training monitor`: validate, build features, compare, write the HTML report."""
    from features.reference import load_reference
    from features.validation import load_contract_tables
    from training.backtest import build_features

    out_dir = Path("outputs/monitor")
    tables = load_contract_tables(declarations, seizures, None, rejects_dir=out_dir / "rejects")
    features = build_features(tables.declarations, tables.seizures, load_reference())
    report = build_report(tables.declarations, tables.seizures, features, recent_days)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(render_html(report))
    report.feature_psi.to_csv(out_dir / "feature_psi.csv", index=False, float_format="%.6g")
    print_report(report)
    console.print(f"report: {path}")
    return report
