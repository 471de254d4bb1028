"""Training beyond one machine: point-in-time features and the LightGBM fit on a Dask cluster.

`python -m training train --engine dask [--scheduler tcp://host:8786]` runs the same job as
`make train` (`training.pipeline.train`): the same contract validation, labels, windows,
search, calibration, evaluation against baselines, MLflow record, registration and
promotion. Two steps run on the cluster instead of in the driver process:

- **features**: the declarations are cut into time blocks (`training.datasets.block_bounds`,
  one per worker by default); one task per block indexes what was known before the block
  ends (`known_before`: the declarations filed before it, the seizures reported before it
  and the declarations those name) and runs the single-machine `History` and
  `compute_features` on the block's rows (`block_features`). A feature reads only what
  was known strictly before its declaration, so every block answers exactly as one whole
  build does, for every column of the feature set, network features included (tested bit
  for bit). Each block's rows are sent to the cluster once; later blocks' tasks fetch the
  earlier blocks from the workers holding them.
- **fit**: the search's trials run in the driver on the latest `search_rows` training rows
  (`training.search`); the chosen settings are then refitted on the whole training window
  with `lightgbm.dask.DaskLGBMClassifier`. LightGBM's Dask interface has no early stopping
  (hangs are reported when it is set), so it trains `max_rounds` rounds; the best round is
  chosen on the validation window (average precision of the local booster after each
  round) and the registered booster is cut to that round.

What is logged and registered is always the *local* booster (`to_local()`), never the
distributed estimator. A run whose cluster lost a worker before registration fails
(`ClusterFault`) and registers nothing: a lost worker takes scattered inputs with it and
can leave LightGBM's network half-built or hanging (lightgbm#5920, #3775).

Limits today (docs/training-dask.md): the driver reads and validates the contract files
and holds the feature matrix (calibration, baselines, evaluation and the MLflow record
need it), and the task of the last block indexes the whole history, as one process does.
The engine spreads the CPU work of features and fit over machines; one machine's memory is
still the ceiling.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from features.events import to_seconds
from features.reference import ReferenceTables
from models.estimator import BoosterParams
from training.datasets import assemble_blocks, block_bounds, block_features, block_of, named_later

log = logging.getLogger(__name__)


class ClusterFault(RuntimeError):
    """The cluster lost a worker during the run: nothing is registered from it."""


def _worker_server_ids(dask_scheduler) -> list[str]:
    """Runs on the scheduler: one unique id per worker process it knows."""
    return [f"{ws.address} ({ws.server_id})" for ws in dask_scheduler.workers.values()]


@dataclass
class DaskEngine:
    """Features and fit on a Dask cluster, for `training.pipeline.train`.

    Keeps the set of workers present when the run started; `verify` fails the run when
    any of them left (crashed, killed, restarted by its nanny) before registration.
    """

    client: object  # distributed.Client
    blocks: int = 0  # time blocks of the feature step (0: one per worker)
    network_timeout_minutes: int = 10
    name: str = "dask"
    workers_at_start: frozenset[str] = field(default_factory=frozenset)
    timings: dict[str, float] = field(default_factory=dict)
    validation_average_precision: list[float] = field(default_factory=list)
    rounds_trained: int = 0
    best_round: int = 0

    def __post_init__(self) -> None:
        self.workers_at_start = self._worker_ids()
        if not self.workers_at_start:
            raise ClusterFault(
                f"the Dask scheduler {self.client.scheduler.address} has no workers: start some "
                "(dask worker ADDRESS) or leave the scheduler empty for a LocalCluster"
            )

    def _worker_ids(self) -> frozenset[str]:
        # a worker process restarted by its nanny keeps its name, sometimes its address, never its server id
        return frozenset(self.client.run_on_scheduler(_worker_server_ids))

    def verify(self) -> None:
        """Raise `ClusterFault` when a worker present at the start has left the cluster."""
        lost = self.workers_at_start - self._worker_ids()
        if lost:
            raise ClusterFault(
                f"{len(lost)} of {len(self.workers_at_start)} Dask workers left the cluster during the run "
                f"({', '.join(sorted(lost))}); nothing was registered: check the workers' logs and rerun"
            )

    def build_features(
        self, declarations: pd.DataFrame, seizures: pd.DataFrame, reference: ReferenceTables
    ) -> pd.DataFrame:
        """`training.backtest.build_features` on the cluster: the same values, bit for bit.

        One task per time block (`blocks`, default one per worker), each indexing what was
        known before its block ends and computing its block's rows.
        """
        started = time.perf_counter()
        client = self.client
        declared_at = declarations["declared_at"]
        ends = block_bounds(declared_at, self.blocks or len(self.workers_at_start))
        block = block_of(declared_at, ends)
        seizures_f = client.scatter(seizures, broadcast=True, hash=False)
        pieces = client.scatter([declarations.loc[block == k] for k in range(len(ends))], hash=False)
        futures = []
        for k, end in enumerate(ends):
            later = named_later(declarations, seizures, int(end))  # a few rows
            futures.append(
                client.submit(
                    _block_task, pieces[: k + 1], later, seizures_f, int(end), reference, pure=False
                )
            )
        parts = client.gather(futures)  # raises the first failed task's error: never a partial result
        del pieces, futures
        try:
            features = assemble_blocks(parts, declarations.index)
        except ValueError as exc:
            raise ClusterFault(f"the cluster returned incomplete features: {exc}") from exc
        self.verify()
        self.timings["features_seconds"] = time.perf_counter() - started
        self.timings["feature_blocks"] = len(ends)
        return features

    def fit(
        self,
        train_features: pd.DataFrame,
        train_labels: np.ndarray,
        validation_features: pd.DataFrame,
        validation_labels: np.ndarray,
        categorical: tuple[str, ...],
        params: BoosterParams,
        train_weights: np.ndarray | None = None,
    ) -> lgb.Booster:
        """`models.estimator.fit_booster` on the cluster: fixed rounds, best round on validation.

        The search's refit (`training.search.search_booster(refit=...)`): `params` are the
        chosen trial's. Returns the local booster cut to the round with the highest average
        precision on the validation window.
        """
        from lightgbm.dask import DaskLGBMClassifier

        started = time.perf_counter()
        n_workers = len(self.workers_at_start)
        # Rows by position, so features, labels and weights split into the same partitions.
        rows = pd.RangeIndex(len(train_features))
        x, held = _scattered(self.client, train_features.set_axis(rows), n_workers)
        y, held_y = _scattered(self.client, pd.Series(train_labels.astype(np.int64), index=rows), n_workers)
        w, held_w = (
            (None, [])
            if train_weights is None
            else _scattered(self.client, pd.Series(train_weights, index=rows, dtype=np.float64), n_workers)
        )
        settings = params.lightgbm()
        settings.pop("num_threads")  # lightgbm.dask uses each worker's own thread count
        model = DaskLGBMClassifier(
            client=self.client,
            n_estimators=params.max_rounds,
            time_out=self.network_timeout_minutes,
            **settings,
        )
        model.fit(x, y, sample_weight=w, categorical_feature=list(categorical))
        del held, held_y, held_w
        self.verify()
        booster = model.to_local().booster_  # the local booster: the distributed estimator is never kept
        self.rounds_trained = booster.current_iteration()
        ap = validation_average_precision(booster, validation_features, validation_labels)
        self.validation_average_precision = [float(v) for v in ap]
        self.best_round = int(np.argmax(ap)) + 1  # the first round reaching the best value
        self.timings["fit_seconds"] = time.perf_counter() - started
        return truncated(booster, self.best_round)

    @property
    def refit(self):
        """The search's refit on the whole training window: `fit`, on the cluster."""
        return self.fit

    def record(self) -> dict[str, object]:
        """What the MLflow run keeps of the engine (`dask_fit.json`)."""
        return {
            "engine": self.name,
            "workers": len(self.workers_at_start),
            "rounds_trained": self.rounds_trained,
            "best_round": self.best_round,
            "best_round_rule": "highest average precision on the validation window (no early stopping on Dask)",
            "validation_average_precision_by_round": self.validation_average_precision,
            **self.timings,
        }


def _block_task(
    blocks: list[pd.DataFrame],
    later: pd.DataFrame,
    seizures: pd.DataFrame,
    end: int,
    reference: ReferenceTables,
) -> pd.DataFrame:
    """Runs on a worker: the last of `blocks`' features against everything known before `end`."""
    history_declarations = pd.concat([*blocks, later])
    known_seizures = seizures.loc[to_seconds(seizures["seized_at"]) < end]
    return block_features(blocks[-1], history_declarations, known_seizures, reference)


def _scattered(client, frame: pd.DataFrame | pd.Series, parts: int) -> tuple[object, list]:
    """`frame` as a Dask collection of `parts` row ranges sent to the workers once (not in the graph).

    Returns the collection and the futures it is built on (keep them until it is computed).
    """
    import dask.dataframe as dd

    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    pieces = client.scatter([frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return dd.from_delayed(pieces, meta=frame.iloc[:0], verify_meta=False), pieces


def validation_average_precision(
    booster: lgb.Booster, features: pd.DataFrame, labels: np.ndarray
) -> np.ndarray:
    """Average precision on the validation window after each round (index k: k + 1 rounds).

    Raw scores are sums of trees, so round k adds one tree's output to round k - 1's: one
    pass over the trees, not one prediction per prefix.
    """
    matrix = np.ascontiguousarray(features.to_numpy(dtype=np.float64))
    raw = np.zeros(len(matrix), dtype=np.float64)
    out = np.empty(booster.current_iteration(), dtype=np.float64)
    for k in range(len(out)):
        raw += booster.predict(matrix, start_iteration=k, num_iteration=1, raw_score=True)
        out[k] = average_precision_score(labels, raw)
    return out


def truncated(booster: lgb.Booster, rounds: int) -> lgb.Booster:
    """A booster with only the first `rounds` rounds (what the registered model scores with)."""
    cut = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
    cut.best_iteration = rounds  # as early stopping leaves it on the single-machine path
    return cut


@contextlib.contextmanager
def dask_engine(
    scheduler: str | None,
    workers: int = 2,
    blocks: int = 0,
    network_timeout_minutes: int = 10,
) -> Iterator[DaskEngine]:
    """A `DaskEngine` on the scheduler at `scheduler`, or on a LocalCluster of `workers` processes."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        engine = DaskEngine(client, blocks=blocks, network_timeout_minutes=network_timeout_minutes)
        try:
            yield engine
        except Exception as exc:
            if not isinstance(exc, ClusterFault):
                engine.verify()  # a lost worker is the cause to report, not the futures it took along
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
