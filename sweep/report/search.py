"""Read many MLflow runs as plain rows, in parallel processes for large sweeps.

MLflow's SQL store turns every param, tag and metric of a run into an ORM
object. Reading 10,000 trial runs of about 60 values each is therefore bound
by one CPU core: about 15 s of CPU time on a 2-core AMD EPYC. After a first page,
the remaining runs are split by start time into slices. This process reads
one slice; worker processes started as ``python -m sweep.report.search``
read the others and return their rows as JSON on standard output. A worker
is a fresh interpreter, so it shares no SQLite connection with this process
and never re-imports the caller's main module, as a multiprocessing worker
would. This module imports nothing but MLflow and ``sweep.tracking``, so a
worker starts in about 2 s.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

from mlflow import MlflowClient
from mlflow.entities import Run

from sweep import tracking
from sweep.report.errors import ReportError

logger = logging.getLogger(__name__)

# Keys of a row besides the requested columns.
RUN_ID = "run_id"
STATUS = "status"
TEST_IOU_COLUMN = "test_iou"
STOPPED_EARLY = "stopped_early"
ERROR = "error"
# SQL stores accept up to 50,000 runs per page; fewer, larger pages are faster.
PAGE_SIZE = 10_000
# A sweep with at most this many runs is read in one query, without worker processes.
FIRST_PAGE = 1_000
MAX_WORKERS = 4


def run_row(run: Run, columns: Sequence[str], metric_key: str) -> dict:
    """Return one row of a run: its id, status, the columns (tag, else param), metric and error.

    Returns:
        A dict with ``run_id``, ``status``, each column (``None`` when the run
        has neither tag nor param of that name), ``test_iou`` (the value of
        ``metric_key``, or NaN), ``stopped_early`` and ``error`` (last line of
        the stored traceback, or empty).
    """
    tags, params = run.data.tags, run.data.params
    row = {RUN_ID: run.info.run_id, STATUS: run.info.status}
    for column in columns:
        row[column] = tags.get(column, params.get(column))
    row[TEST_IOU_COLUMN] = run.data.metrics.get(metric_key, float("nan"))
    row[STOPPED_EARLY] = tags.get(tracking.STOPPED_EARLY_TAG) == "true"
    lines = [line.strip() for line in tags.get(tracking.ERROR_TAG, "").splitlines() if line.strip()]
    row[ERROR] = lines[-1] if lines else ""
    return row


def iterate_runs(
    client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str] | None = None
) -> Iterator[Run]:
    """Yield every run that matches ``filter_string``, page by page."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=PAGE_SIZE, order_by=order_by, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def read_slice(
    tracking_uri: str, experiment_id: str, filter_string: str, columns: Sequence[str], metric_key: str
) -> list[dict]:
    """Return the rows of every run that matches ``filter_string``; the entry point of a worker process."""
    client = MlflowClient(tracking_uri)
    return [run_row(run, columns, metric_key) for run in iterate_runs(client, experiment_id, filter_string)]


def worker_count() -> int:
    """Return the number of processes that read runs: the usable CPU cores, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def _start_worker(
    tracking_uri: str, experiment_id: str, filter_string: str, columns: Sequence[str], metric_key: str
) -> subprocess.Popen:
    request = {
        "tracking_uri": tracking_uri,
        "experiment_id": experiment_id,
        "filter_string": filter_string,
        "columns": list(columns),
        "metric_key": metric_key,
    }
    # The worker finds the same packages as this process, wherever they were imported from.
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    return subprocess.Popen(
        [sys.executable, "-m", __name__, json.dumps(request)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )


def _worker_rows(process: subprocess.Popen) -> list[dict]:
    output, errors = process.communicate()
    if process.returncode != 0:
        tail = errors.decode(errors="replace")[-2000:]
        raise ReportError(
            f"worker process {process.pid} that reads MLflow runs failed with exit code {process.returncode}:\n{tail}"
        )
    return json.loads(output)


def read_rows(
    client: MlflowClient,
    tracking_uri: str,
    experiment_id: str,
    filter_string: str,
    columns: Sequence[str],
    metric_key: str,
    workers: int | None = None,
    first_page: int = FIRST_PAGE,
) -> list[dict]:
    """Return one row per run that matches ``filter_string`` (see ``run_row``).

    The first ``first_page`` runs by start time are read here. Runs after
    them are split into ``workers`` slices of equal start-time span; this
    process reads the first slice and worker processes the others. A run
    read twice at a slice boundary is kept once.

    Args:
        client: Client of the tracking store.
        tracking_uri: URI of the same store, for the worker processes.
        experiment_id: Experiment to search.
        filter_string: MLflow filter that selects the runs.
        columns: Tags or params to read into each row.
        metric_key: Metric read into ``test_iou``.
        workers: Processes to use, this one included (default: ``worker_count()``).
        first_page: Runs read before the rest is split; a sweep with no more is read in one query.

    Raises:
        ReportError: when a worker process fails; its error output is included.
    """
    ascending = ["attributes.start_time ASC"]
    first = client.search_runs([experiment_id], filter_string=filter_string, max_results=first_page, order_by=ascending)
    rows = [run_row(run, columns, metric_key) for run in first]
    if not first.token:
        return rows

    descending = ["attributes.start_time DESC"]
    last = client.search_runs([experiment_id], filter_string=filter_string, max_results=1, order_by=descending)[0]
    start, end = first[-1].info.start_time, last.info.start_time + 1
    workers = workers or worker_count()
    edges = [start + (end - start) * index // workers for index in range(workers)] + [end]
    filters = [
        f"{filter_string} and attributes.start_time >= {low} and attributes.start_time < {high}"
        for low, high in itertools.pairwise(edges)
    ]
    logger.info("reading the runs after the first %d in %d slice(s) by start time", len(rows), len(filters))
    workers_started = [_start_worker(tracking_uri, experiment_id, text, columns, metric_key) for text in filters[1:]]
    try:
        rows += [run_row(run, columns, metric_key) for run in iterate_runs(client, experiment_id, filters[0])]
    finally:
        # Collect every worker, also when this process's slice failed, so that none is left running.
        results = [_worker_rows(process) for process in workers_started]
    for worker_rows in results:
        rows += worker_rows
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row[RUN_ID] not in seen:
            seen.add(row[RUN_ID])
            unique.append(row)
    return unique


def main(argv: list[str] | None = None) -> int:
    """Read one slice of runs, given as a JSON request argument, and print its rows as JSON."""
    arguments = sys.argv[1:] if argv is None else argv
    request = json.loads(arguments[0])
    rows = read_slice(
        request["tracking_uri"],
        request["experiment_id"],
        request["filter_string"],
        request["columns"],
        request["metric_key"],
    )
    json.dump(rows, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
