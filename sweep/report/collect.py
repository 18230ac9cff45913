"""Read a sweep from MLflow: its parent run, its trial runs as a DataFrame, and validation curves.

``python -m sweep.run`` writes one parent run per sweep (tag
``segsweep.role=sweep``) and one child run per trial (tag
``segsweep.role=trial`` plus ``mlflow.parentRunId``). Each trial carries one
tag per axis of the sweep; settings that do not vary are only params.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from segcore.metric_keys import TEST_IOU, VAL_IOU
from sweep import tracking
from sweep.report.errors import ReportError
from sweep.report.search import ERROR, RUN_ID, STATUS, STOPPED_EARLY, TEST_IOU_COLUMN, iterate_runs, read_rows

logger = logging.getLogger(__name__)

SEED = "seed"
# Columns of the validation curve frame.
EPOCH_COLUMN = "epoch"
VALUE_COLUMN = "value"
FAILED_STATUSES = ("FAILED", "KILLED")
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class SweepInfo:
    """The parent run of one sweep and what its tags declare.

    Attributes:
        run_id: Id of the parent run.
        name: Sweep name (tag ``segsweep.sweep``, also the run name).
        experiment_id: Id of the MLflow experiment.
        experiment_name: Name of the MLflow experiment.
        space: Search space the sweep ran.
        axes: Settings that vary across the trials, seed included when it varies.
        declared_seeds: Seeds per cell that the space declares (tag ``segsweep.seeds``).
        status: Status of the parent run.
    """

    run_id: str
    name: str
    experiment_id: str
    experiment_name: str
    space: str
    axes: tuple[str, ...]
    declared_seeds: int
    status: str

    @property
    def cell_axes(self) -> tuple[str, ...]:
        """The axes that define a cell: every axis but the seed."""
        return tuple(axis for axis in self.axes if axis != SEED)


def _tag_filter(tags: dict[str, str]) -> str:
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())


def find_sweep(client: MlflowClient, experiment_name: str, sweep: str | None = None) -> SweepInfo:
    """Find the parent run of a sweep.

    Args:
        client: Client of the tracking store.
        experiment_name: MLflow experiment the sweep logged to.
        sweep: Sweep name or parent run id; ``None`` selects the newest sweep.

    Returns:
        The sweep's parent run and its declared axes and seed count.

    Raises:
        ReportError: when the experiment or the sweep does not exist.
    """
    try:
        experiment = client.get_experiment_by_name(experiment_name)
    except MlflowException as error:
        raise ReportError(f"the tracking store cannot be read: {error}") from error
    if experiment is None:
        names = sorted(item.name for item in client.search_experiments(max_results=100))
        raise ReportError(
            f"experiment {experiment_name!r} not found; experiments in this store: {', '.join(names) or 'none'}. Check --experiment and --tracking-uri"
        )

    order = ["attributes.start_time DESC"]
    sweep_filter = _tag_filter({tracking.ROLE_TAG: tracking.SWEEP_ROLE})
    candidates: list[Run] = []
    if sweep is not None:
        if "'" in sweep:
            raise ReportError(f"invalid --sweep {sweep!r}: sweep names and run ids contain no quote characters")
        candidates = list(
            iterate_runs(
                client,
                experiment.experiment_id,
                f"{sweep_filter} and {_tag_filter({tracking.SWEEP_TAG: sweep})}",
                order,
            )
        )
        if not candidates and RUN_ID_PATTERN.match(sweep):
            candidates = [
                run
                for run in [_get_run(client, sweep)]
                if run is not None and _is_sweep_of(run, experiment.experiment_id)
            ]
    else:
        candidates = list(iterate_runs(client, experiment.experiment_id, sweep_filter, order))
    if not candidates:
        known = [
            run.data.tags.get(tracking.SWEEP_TAG, run.info.run_id)
            for run in iterate_runs(client, experiment.experiment_id, sweep_filter, order)
        ]
        requested = f"sweep {sweep!r}" if sweep is not None else "a sweep"
        raise ReportError(
            f"{requested} not found in experiment {experiment_name!r}; its sweeps, newest first: {', '.join(known[:20]) or 'none'}. "
            "Pass --sweep with one of them, or run python -m sweep.run first"
        )

    parent = candidates[0]
    tags = parent.data.tags
    return SweepInfo(
        run_id=parent.info.run_id,
        name=tags.get(tracking.SWEEP_TAG, parent.info.run_name or parent.info.run_id),
        experiment_id=experiment.experiment_id,
        experiment_name=experiment_name,
        space=tags.get(tracking.SPACE_TAG, ""),
        axes=_split_axes(tags.get(tracking.AXES_TAG, "")),
        declared_seeds=_declared_seeds(tags.get(tracking.SEEDS_TAG), parent.info.run_id),
        status=parent.info.status,
    )


def _get_run(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _is_sweep_of(run: Run, experiment_id: str) -> bool:
    return run.info.experiment_id == experiment_id and run.data.tags.get(tracking.ROLE_TAG) == tracking.SWEEP_ROLE


def _split_axes(text: str) -> tuple[str, ...]:
    return tuple(axis.strip() for axis in text.split(",") if axis.strip())


def _declared_seeds(text: str | None, run_id: str) -> int:
    if text is None:
        return 1
    try:
        return int(text)
    except ValueError:
        logger.warning(
            "parent run %s has tag %s=%r, which is not an integer; assuming 1 seed per cell",
            run_id,
            tracking.SEEDS_TAG,
            text,
        )
        return 1


def collect_trials(
    client: MlflowClient, tracking_uri: str, sweep: SweepInfo, settings: Iterable[str] = ()
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Read the sweep's trial runs into one row per run.

    Args:
        client: Client of the tracking store.
        tracking_uri: URI of the same store, for the processes that read large sweeps.
        sweep: The sweep, from ``find_sweep``.
        settings: Settings to add as columns even when they are not axes
            (read from the run's tag, else its param).

    Returns:
        The frame and the sweep's axes. The frame has the columns ``run_id``,
        ``status``, one string column per axis and setting (``seed``
        included), ``test_iou`` (NaN when the run has none), ``stopped_early``
        and ``error`` (last line of the stored traceback, or empty). The axes
        are the parent's ``segsweep.axes`` tag, or the trials' tag when the
        parent has none.
    """
    query = _tag_filter({tracking.PARENT_RUN_TAG: sweep.run_id, tracking.ROLE_TAG: tracking.TRIAL_ROLE})
    axes = sweep.axes
    if not axes:
        first = client.search_runs([sweep.experiment_id], filter_string=query, max_results=1)
        axes = _split_axes(first[0].data.tags.get(tracking.AXES_TAG, "")) if first else ()
    columns = list(dict.fromkeys([*axes, *settings, SEED]))
    rows = read_rows(client, tracking_uri, sweep.experiment_id, query, columns, TEST_IOU)
    logger.info("sweep %s: %d trial run(s)", sweep.name, len(rows))

    frame = pd.DataFrame(rows, columns=[RUN_ID, STATUS, *columns, TEST_IOU_COLUMN, STOPPED_EARLY, ERROR])
    frame[TEST_IOU_COLUMN] = frame[TEST_IOU_COLUMN].astype(float)
    frame[STOPPED_EARLY] = frame[STOPPED_EARLY].astype(bool)
    return frame, axes


def collect_curves(client: MlflowClient, run_ids: Iterable[str], key: str = VAL_IOU) -> pd.DataFrame:
    """Read the per-epoch history of metric ``key`` for each run.

    MLflow's client reads one run's history per call, so callers pass only
    the runs they plot.

    Returns:
        One row per run and epoch with the columns ``run_id``, ``epoch`` and
        ``value``; an epoch logged twice keeps its latest value.
    """
    rows = []
    for run_id in run_ids:
        for metric in client.get_metric_history(run_id, key):
            rows.append((run_id, metric.step, metric.timestamp, metric.value))
    frame = pd.DataFrame(rows, columns=[RUN_ID, EPOCH_COLUMN, "timestamp", VALUE_COLUMN])
    # A trial resumed after an interruption logs the epoch after its last checkpoint again; keep the latest.
    frame = frame.sort_values("timestamp").drop_duplicates([RUN_ID, EPOCH_COLUMN], keep="last")
    return frame.drop(columns="timestamp").sort_values([RUN_ID, EPOCH_COLUMN]).reset_index(drop=True)
