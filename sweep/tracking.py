"""MLflow records of a sweep: one parent run per sweep, one nested child run per trial.

The driver creates the experiment and the parent run before any trial starts,
so trials never race to create them. A trial finds its child run by the tags
``segsweep.trial_id`` and ``mlflow.parentRunId``, so a retried or resumed trial
reopens its run instead of creating a second one.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
ROLE_TAG = "segsweep.role"
SWEEP_TAG = "segsweep.sweep"
SPACE_TAG = "segsweep.space"
STUDY_TAG = "segsweep.study"
TRIAL_ID_TAG = "segsweep.trial_id"
AXES_TAG = "segsweep.axes"
SEEDS_TAG = "segsweep.seeds"
ERROR_TAG = "segsweep.error"
PREVIOUS_ERROR_TAG = "segsweep.previous_error"
STOPPED_EARLY_TAG = "segsweep.stopped_early"
NODE_TAG = "segsweep.node_ip"
NODE_ID_TAG = "segsweep.node_id"
RESOURCES_TAG = "segsweep.resources"
GPU_TAG = "segsweep.gpu_ids"
ATTEMPTS_TAG = "segsweep.attempts"
SWEEP_ROLE = "sweep"
TRIAL_ROLE = "trial"
# MLflow limits tag values to 8000 characters; keep the end of a traceback.
MAX_TAG_LENGTH = 7900


class TrackingError(RuntimeError):
    """Raised when the tracking server or store cannot be used."""


def default_tracking_uri() -> str:
    """Return ``$MLFLOW_TRACKING_URI``, else a SQLite file ``mlflow.db`` in the working folder.

    ``mlflow ui`` started in the same folder reads that file without a server.
    """
    return os.environ.get(TRACKING_URI_VARIABLE) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """Return the database file of a ``sqlite:///`` URI, or ``None`` for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def check_tracking_uri(uri: str, timeout_s: float = 10.0) -> None:
    """Check that the tracking store at ``uri`` responds; raise a clear error if not.

    Raises:
        TrackingError: for an unreachable server, a SQLite file in a missing
            folder, or a store that fails a first query.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow server {uri} returned status {response.status} on /health")
        except (urllib.error.URLError, OSError) as error:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({error}). Start it, fix --tracking-uri, "
                "or leave --tracking-uri out to use a local SQLite file."
            ) from error
    database = sqlite_path(uri)
    if database is not None and not database.parent.is_dir():
        raise TrackingError(
            f"folder {database.parent} of the SQLite tracking database does not exist; create it or change --tracking-uri"
        )
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as error:
        raise TrackingError(f"MLflow tracking store {uri} cannot be used: {error}") from error


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """Return the id of experiment ``name``, creating it (once, from the driver) if needed.

    For a SQLite store the artifacts go to ``mlartifacts/`` beside the database file.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"experiment {name!r} is deleted but still in the store; restore it with "
                f"'mlflow experiments restore --experiment-id {experiment.experiment_id}' or choose another --experiment"
            )
        return experiment.experiment_id
    database = sqlite_path(tracking_uri)
    location = str(database.parent / "mlartifacts" / name) if database is not None else None
    return client.create_experiment(name, artifact_location=location)


def find_runs(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> list:
    """Return the runs of an experiment whose tags equal ``tags``, newest first."""
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            max_results=1000,
            page_token=token,
            order_by=["attributes.start_time DESC"],
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def start_sweep_run(
    client: MlflowClient, experiment_id: str, sweep_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
) -> str:
    """Return the parent run of ``sweep_name``: the existing one when resuming, else a new one."""
    existing = find_runs(client, experiment_id, {SWEEP_TAG: sweep_name, ROLE_TAG: SWEEP_ROLE})
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        logger.info("resuming MLflow parent run %s of sweep %s", run_id, sweep_name)
        return run_id
    run = client.create_run(
        experiment_id, run_name=sweep_name, tags={**tags, SWEEP_TAG: sweep_name, ROLE_TAG: SWEEP_ROLE}
    )
    client.log_batch(run.info.run_id, params=[Param(key, _param_value(value)) for key, value in params.items()])
    return run.info.run_id


def _param_value(value: Any) -> str:
    return str(value)[:6000]


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str):
    """Return the child run of a trial, or ``None`` before its first attempt."""
    existing = find_runs(client, experiment_id, {TRIAL_ID_TAG: trial_id, PARENT_RUN_TAG: parent_run_id})
    return existing[0] if existing else None


def is_complete(run, final_metric: str) -> bool:
    """Return whether a trial's run finished with its final (test) metric logged."""
    return run is not None and run.info.status == "FINISHED" and final_metric in run.data.metrics


def open_trial_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    trial_id: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
) -> str:
    """Return the child run of a trial, reopening it when the trial was retried or resumed."""
    run = find_trial_run(client, experiment_id, parent_run_id, trial_id)
    if run is not None:
        attempts = int(run.data.tags.get(ATTEMPTS_TAG, "1")) + 1
        client.update_run(run.info.run_id, status="RUNNING")
        client.set_tag(run.info.run_id, ATTEMPTS_TAG, str(attempts))
        if ERROR_TAG in run.data.tags:
            # The error of the earlier attempt stays readable but no longer marks the run as failed.
            client.set_tag(run.info.run_id, PREVIOUS_ERROR_TAG, run.data.tags[ERROR_TAG])
            client.delete_tag(run.info.run_id, ERROR_TAG)
        logger.info("trial %s: reopened MLflow run %s (attempt %d)", trial_id, run.info.run_id, attempts)
        return run.info.run_id
    all_tags = {**tags, PARENT_RUN_TAG: parent_run_id, TRIAL_ID_TAG: trial_id, ROLE_TAG: TRIAL_ROLE, ATTEMPTS_TAG: "1"}
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    client.log_batch(run.info.run_id, params=[Param(key, _param_value(value)) for key, value in params.items()])
    return run.info.run_id


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Log numeric metrics of one epoch (``step``)."""
    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for key, value in metrics.items() if isinstance(value, (int, float))]
    client.log_batch(run_id, metrics=batch)


def end_run(
    client: MlflowClient, run_id: str, status: str, error: BaseException | None = None, advice: str = ""
) -> None:
    """Set the final status of a run, storing ``advice`` and the end of the error's traceback as a tag."""
    tags = []
    if error is not None:
        text = "".join(traceback.format_exception(error))
        text = f"{advice}\n{text[-(MAX_TAG_LENGTH - len(advice) - 1) :]}" if advice else text[-MAX_TAG_LENGTH:]
        tags.append(RunTag(ERROR_TAG, text))
    if tags:
        client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status=status)


def close_leftover_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, statuses: Mapping[str, str]
) -> int:
    """Give each child run the status of its trial where the run does not show it yet; return how many changed.

    ``statuses`` maps trial ids to ``FINISHED``, ``FAILED`` or ``KILLED``; a
    run whose trial is not listed ends ``KILLED``. A run still RUNNING takes its
    trial's status. A trial cut off by Ctrl-C is ``KILLED`` even if its run was
    closed as stopped early, since ``--resume`` continues it.
    """
    closed = 0
    for run in find_runs(client, experiment_id, {PARENT_RUN_TAG: parent_run_id}):
        trial_id = run.data.tags.get(TRIAL_ID_TAG, "")
        status = statuses.get(trial_id, "KILLED")
        running = run.info.status == RunStatus.to_string(RunStatus.RUNNING)
        cut_off = status == "KILLED" and run.info.status == "FINISHED" and STOPPED_EARLY_TAG in run.data.tags
        if not running and not cut_off:
            continue
        if cut_off:
            client.delete_tag(run.info.run_id, STOPPED_EARLY_TAG)
        client.set_terminated(run.info.run_id, status=status)
        logger.warning("closed MLflow run %s of trial %s as %s", run.info.run_id, trial_id, status)
        closed += 1
    return closed
