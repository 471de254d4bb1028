"""Model review report: one self-contained HTML page about one registered model version.

For auditors who will not open MLflow: the data the model learned from (lineage, time
windows, content hashes), how it does against the baselines at each inspection budget,
why it was (or was not) promoted, the features it uses and what they mean, the inspection
policy, the evaluation plots (embedded), and the code and library versions that built it.
Everything is read from what the training run logged; the page is logged back to that
run as `model_review.html`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from training.evaluation import INSPECTION_RATES, rate_label

REPORT_ARTIFACT = "model_review.html"
_ANCHOR_METRIC = f"precision_at_{rate_label(INSPECTION_RATES[0])}"  # logged for every method, never NaN
#: (metric suffix, column title, format); budget metrics repeat per inspection rate.
_BUDGET_COLUMNS = (
    ("precision_at", "precision", ".3f"),
    ("recall_at", "recall", ".3f"),
    ("seized_kg_share_at", "seized kg", ".3f"),
)
_OVERALL_COLUMNS = (
    ("pr_auc", "PR-AUC", ".3f"),
    ("roc_auc", "ROC-AUC", ".3f"),
    ("brier", "Brier", ".4f"),
    ("calibration_error", "ECE", ".4f"),
)


@dataclass(frozen=True)
class _MetricRow:
    method: str
    window: str
    cells: list[str]
    is_model: bool


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def _metric_rows(metrics: dict[str, float]) -> tuple[list[str], list[_MetricRow]]:
    """Header and rows of the model-against-baselines table from a run's metrics."""
    header = [f"{title} @{rate:.0%}" for rate in INSPECTION_RATES for _, title, _ in _BUDGET_COLUMNS]
    header += [title for _, title, _ in _OVERALL_COLUMNS]

    def row(prefix: str, method: str, window: str, is_model: bool = False) -> _MetricRow:
        cells = [
            _fmt(metrics.get(f"{prefix}{suffix}_{rate_label(rate)}"), spec)
            for rate in INSPECTION_RATES
            for suffix, _, spec in _BUDGET_COLUMNS
        ]
        cells += [_fmt(metrics.get(f"{prefix}{suffix}"), spec) for suffix, _, spec in _OVERALL_COLUMNS]
        return _MetricRow(method, window, cells, is_model)

    rows = [row("test_", "this model", "test", is_model=True)]
    if f"champion_{_ANCHOR_METRIC}" in metrics:
        rows.append(row("champion_", "champion at training time", "test"))
    baselines = sorted(
        key.removeprefix("baseline_").removesuffix(f"_{_ANCHOR_METRIC}")
        for key in metrics
        if key.startswith("baseline_") and key.endswith(f"_{_ANCHOR_METRIC}")
    )
    rows += [row(f"baseline_{name}_", f"baseline: {name.replace('_', ' ')}", "test") for name in baselines]
    if f"validation_{_ANCHOR_METRIC}" in metrics:
        rows.append(row("validation_", "this model", "validation"))
    return header, rows


def _download_json(client: MlflowClient, run_id: str, path: str, folder: Path) -> dict | None:
    try:
        return json.loads(Path(client.download_artifacts(run_id, path, str(folder))).read_text())
    except (MlflowException, OSError):
        return None  # not logged by this run (older pipeline): the page says "not recorded"


def _embedded_plots(client: MlflowClient, run_id: str, folder: Path) -> list[dict]:
    plots = []
    for item in client.list_artifacts(run_id, "plots"):
        if item.is_dir or not item.path.endswith(".png"):
            continue
        data = Path(client.download_artifacts(run_id, item.path, str(folder))).read_bytes()
        title = Path(item.path).stem.replace("_", " ")
        plots.append(
            {"title": title, "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii")}
        )
    return plots


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Model review: {{ name }} v{{ version }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.model td { font-weight: 600; background: #f3f7ff; }
code { font-size: .85rem; } .muted { color: #666; } figure { display: inline-block; margin: .5rem; }
img { max-width: 34rem; border: 1px solid #ddd; } .pre { white-space: pre-line; }
</style></head>
<body>
<h1>Model review: {{ name }} version {{ version }}</h1>
<p class="muted">Generated {{ generated_at }} from MLflow run <code>{{ run_id }}</code> ({{ tracking_uri }}).</p>

<h2 id="summary">Summary</h2>
<table>
<tr><th>registered model</th><td>{{ name }} v{{ version }}{% if aliases %} (aliases: {{ aliases | join(", ") }}){% endif %}</td></tr>
<tr><th>registered at</th><td>{{ registered_at }}</td></tr>
<tr><th>status</th><td>{{ status }}</td></tr>
<tr><th>feature set</th><td>{{ feature_set_name }} {{ feature_set_version }}</td></tr>
<tr><th>promotion</th><td>{{ promotion_alias or "not recorded" }}{% if promotion_reason %}: {{ promotion_reason }}{% endif %}</td></tr>
</table>

<h2 id="lineage">Data lineage and windows</h2>
{% if lineage %}
<table>
<tr><th>data</th><th>rows</th><th>from</th><th>to</th><th>content SHA-256</th><th>MLflow dataset digest</th></tr>
{% for name, w in lineage_windows %}
<tr><td>{{ name }}</td><td class="num">{{ "{:,}".format(w.rows) }}</td><td>{{ w.get("from", "") }}</td><td>{{ w.get("to", "") }}</td>
<td><code>{{ w.get("sha256", "") }}</code></td><td><code>{{ w.get("mlflow_digest", "") }}</code></td></tr>
{% endfor %}
</table>
{% if lineage.get("windows") %}
<table><tr><th>window boundary</th><th>time</th></tr>
{% for key, value in lineage.windows.items() %}<tr><td>{{ key }}</td><td>{{ value }}</td></tr>{% endfor %}
</table>
{% endif %}
{% if contract %}<p class="pre">Contract validation: {{ contract }}</p>{% endif %}
{% else %}<p>lineage.json not recorded for this run.</p>{% endif %}

<h2 id="metrics">Test window: model against baselines</h2>
<p>Precision, recall and share of seized quantity captured when customs inspects the top-scored
{{ rates }} of declarations; threshold-free ranking and calibration quality on the right.
{% if test_size %}Test window: {{ test_size }}.{% endif %}</p>
<table id="metrics-table">
<tr><th>method</th><th>window</th>{% for h in metric_header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in metric_rows %}
<tr{% if row.is_model and row.window == "test" %} class="model"{% endif %}><td>{{ row.method }}</td><td>{{ row.window }}</td>
{% for cell in row.cells %}<td class="num">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>

<h2 id="promotion">Promotion decision</h2>
{% if promotion %}
<table>
{% for key, value in promotion.items() if key != "digests" %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}
{% for key, value in (promotion.get("digests") or {}).items() %}<tr><th>SHA-256 of {{ key }}</th><td><code>{{ value }}</code></td></tr>{% endfor %}
</table>
{% else %}<p>promotion.json not recorded; tags say: {{ promotion_alias or "nothing" }}.</p>{% endif %}
{% if version_tags %}
<table><tr><th>model version tag</th><th>value</th></tr>
{% for key, value in version_tags %}<tr><td>{{ key }}</td><td><code>{{ value }}</code></td></tr>{% endfor %}
</table>
{% endif %}

<h2 id="features">Feature set{% if feature_set %}: {{ feature_set.name }} {{ feature_set.version }}{% endif %}</h2>
{% if feature_set %}
<p>Every history feature is computed as of the declaration's filing time, from what was known strictly before it.</p>
<table><tr><th>feature</th><th>meaning</th></tr>
{% for column, description in feature_set.columns.items() %}<tr><td><code>{{ column }}</code></td><td>{{ description }}</td></tr>{% endfor %}
</table>
{% else %}<p>feature_set.json not recorded for this run.</p>{% endif %}

<h2 id="policy">Inspection policy</h2>
{% if policy %}
<table>
<tr><th>RED</th><td>score &ge; {{ "%.6f" | format(policy.red_threshold) }} (the top {{ "{:.1%}".format(policy.red_rate) }} of validation scores)</td></tr>
<tr><th>YELLOW</th><td>score &ge; {{ "%.6f" | format(policy.yellow_threshold) }} (the next {{ "{:.1%}".format(policy.yellow_rate) }})</td></tr>
<tr><th>mandatory RED rules</th><td>{{ policy.mandatory_red_rules | join(", ") or "none" }}</td></tr>
</table>
{% else %}<p>inspection_policy.json not recorded for this run.</p>{% endif %}

<h2 id="plots">Evaluation plots</h2>
{% for plot in plots %}<figure><img alt="{{ plot.title }}" src="{{ plot.src }}"><figcaption>{{ plot.title }}</figcaption></figure>
{% else %}<p>no plots recorded for this run.</p>{% endfor %}

<h2 id="provenance">Code and libraries</h2>
<table>
<tr><th>git commit</th><td><code>{{ git_commit }}</code></td></tr>
<tr><th>python</th><td>{{ python }}</td></tr>
{% for lib, v in libraries %}<tr><th>{{ lib }}</th><td>{{ v }}</td></tr>{% endfor %}
</table>
<h3>Training parameters</h3>
<table>{% for key, value in params %}<tr><td>{{ key }}</td><td><code>{{ value }}</code></td></tr>{% endfor %}</table>
</body></html>
"""


def render_model_report(client: MlflowClient, registered_model: str, version: str, tracking_uri: str) -> str:
    """The review page of one registered model version, as HTML text."""
    model_version = client.get_model_version(registered_model, version)
    run = client.get_run(model_version.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lineage = _download_json(client, run.info.run_id, "lineage.json", folder)
        promotion = _download_json(client, run.info.run_id, "promotion.json", folder)
        feature_set = _download_json(client, run.info.run_id, "feature_set.json", folder)
        policy = _download_json(client, run.info.run_id, "inspection_policy.json", folder)
        plots = _embedded_plots(client, run.info.run_id, folder)
    aliases = list(getattr(model_version, "aliases", []) or [])
    metric_header, metric_rows = _metric_rows(metrics)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(_TEMPLATE).render(
        name=registered_model,
        version=version,
        run_id=run.info.run_id,
        tracking_uri=_without_password(tracking_uri),
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        registered_at=dt.datetime.fromtimestamp(model_version.creation_timestamp / 1000, dt.UTC).isoformat(
            timespec="seconds"
        ),
        status=model_version.status,
        aliases=aliases,
        feature_set_name=tags.get("feature_set.name", "not recorded"),
        feature_set_version=tags.get("feature_set.version", ""),
        promotion_alias=tags.get("promotion.alias") or (promotion or {}).get("alias"),
        promotion_reason=tags.get("promotion.reason") or (promotion or {}).get("reason"),
        lineage=lineage,
        lineage_windows=[(k, v) for k, v in (lineage or {}).items() if isinstance(v, dict) and "rows" in v],
        contract=tags.get("contract"),
        test_size=_test_size(metrics),
        rates=", ".join(f"{r:.0%}" for r in INSPECTION_RATES),
        metric_header=metric_header,
        metric_rows=metric_rows,
        promotion=promotion,
        version_tags=sorted(model_version.tags.items()),
        feature_set=feature_set,
        policy=policy,
        plots=plots,
        git_commit=tags.get("git_commit", "not recorded"),
        python=tags.get("python", "not recorded"),
        libraries=sorted(
            (k.removeprefix("library."), v) for k, v in tags.items() if k.startswith("library.")
        ),
        params=sorted(run.data.params.items()),
    )


def _test_size(metrics: dict[str, float]) -> str | None:
    if "test_declarations" not in metrics:
        return None
    return f"{int(metrics['test_declarations']):,} declarations, {int(metrics.get('test_positives', 0)):,} diverted"


def _without_password(uri: str) -> str:
    # A tracking URI may carry credentials (postgresql://user:secret@host/db); never print them.
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        credentials, _, host = rest.partition("@")
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}" if ":" in credentials else uri
    return uri


def model_report(
    version: str,
    registered_model: str = "diversion-risk",
    tracking_uri: str | None = None,
    out: Path | None = None,
) -> Path:
    """Write the review page of `registered_model` version `version`, log it to its run; return the path.

    `tracking_uri` defaults to `MLFLOW_TRACKING_URI` (else `sqlite:///mlflow.db`, as in
    training); `out` defaults to `outputs/audit/model-v{version}.html`. The page is logged
    to the model's training run as `model_review.html` (a newer report replaces it).
    """
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    client = MlflowClient(tracking_uri=tracking_uri)
    html = render_model_report(client, registered_model, str(version), tracking_uri)
    out = Path(out) if out is not None else Path("outputs/audit") / f"model-v{version}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    run_id = client.get_model_version(registered_model, str(version)).run_id
    with tempfile.TemporaryDirectory() as tmp:
        logged = Path(tmp) / REPORT_ARTIFACT  # the artifact keeps the file's name
        logged.write_text(html, encoding="utf-8")
        client.log_artifact(run_id, str(logged))
    return out


def model_report_cli(version: str) -> None:
    """Write and log the review page of a `diversion-risk` version; print where it is."""
    from rich.console import Console

    path = model_report(version)
    Console().print(
        f"model review of diversion-risk v{version}: [bold]{path}[/] (also logged as {REPORT_ARTIFACT})"
    )
