"""MLflow records of a sweep on a real SQLite store: experiments, parent and child runs, statuses."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from sweep import tracking


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(client, "space", uri)
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-1", tags={}, params={"space": "space"})
    return {"uri": uri, "client": client, "experiment": experiment_id, "parent": parent, "folder": tmp_path}


def open_trial(store, trial_id: str = "t1") -> str:
    return tracking.open_trial_run(
        store["client"], store["experiment"], store["parent"], trial_id, f"run-{trial_id}", {"seed": 0}, {"seed": "0"}
    )


def test_experiment_created_once(store):
    again = tracking.ensure_experiment(store["client"], "space", store["uri"])
    assert again == store["experiment"]


def test_experiment_artifacts_beside_database(store):
    location = store["client"].get_experiment(store["experiment"]).artifact_location
    assert location == str(store["folder"] / "mlartifacts" / "space")


def test_deleted_experiment_reported(store):
    store["client"].delete_experiment(store["experiment"])
    with pytest.raises(tracking.TrackingError, match="mlflow experiments restore"):
        tracking.ensure_experiment(store["client"], "space", store["uri"])


def test_parent_run_reused_on_resume(store):
    again = tracking.start_sweep_run(
        store["client"], store["experiment"], "sweep-1", tags={}, params={"space": "space"}
    )
    other = tracking.start_sweep_run(
        store["client"], store["experiment"], "sweep-2", tags={}, params={"space": "space"}
    )
    assert again == store["parent"]
    assert other != store["parent"]


def test_child_run_nested_under_parent(store):
    run = store["client"].get_run(open_trial(store))
    assert run.data.tags[tracking.PARENT_RUN_TAG] == store["parent"]
    assert run.data.tags[tracking.TRIAL_ID_TAG] == "t1"
    assert run.data.params == {"seed": "0"}


def test_retried_trial_reopens_its_run(store):
    first = open_trial(store)
    tracking.end_run(store["client"], first, "FAILED", RuntimeError("disk full"))
    second = open_trial(store)
    run = store["client"].get_run(second)
    assert second == first
    assert run.info.status == "RUNNING"
    assert run.data.tags[tracking.ATTEMPTS_TAG] == "2"
    assert tracking.ERROR_TAG not in run.data.tags
    assert "disk full" in run.data.tags[tracking.PREVIOUS_ERROR_TAG]


def test_failed_run_keeps_error_and_advice(store):
    run_id = open_trial(store)
    tracking.end_run(store["client"], run_id, "FAILED", MemoryError("out of memory"), advice="lower batch_size")
    run = store["client"].get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.ERROR_TAG].startswith("lower batch_size\n")
    assert "MemoryError: out of memory" in run.data.tags[tracking.ERROR_TAG]


def test_long_traceback_fits_tag_limit(store):
    run_id = open_trial(store)
    tracking.end_run(store["client"], run_id, "FAILED", RuntimeError("x" * 20000), advice="advice")
    assert len(store["client"].get_run(run_id).data.tags[tracking.ERROR_TAG]) <= tracking.MAX_TAG_LENGTH


def test_leftover_runs_closed(store):
    finished = open_trial(store, "t1")
    orphan = open_trial(store, "t2")
    closed = tracking.close_leftover_runs(store["client"], store["experiment"], store["parent"], {"t1": "FINISHED"})
    assert closed == 2
    assert store["client"].get_run(finished).info.status == "FINISHED"
    assert store["client"].get_run(orphan).info.status == "KILLED"


def test_complete_needs_test_metric(store):
    run_id = open_trial(store)
    tracking.end_run(store["client"], run_id, "FINISHED")
    assert not tracking.is_complete(store["client"].get_run(run_id), "test/iou")
    store["client"].log_metric(run_id, "test/iou", 0.5)
    assert tracking.is_complete(store["client"].get_run(run_id), "test/iou")


def test_default_uri_is_sqlite_in_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
