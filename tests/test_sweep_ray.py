"""Sweeps on a real Ray runtime with a real MLflow store: the whole path, retries, resume and clusters."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from segcore.training.config import TrainConfig
from sweep import tracking
from tests.conftest import run_sweep, sweep_command, sweep_environment

pytestmark = pytest.mark.slow


def trial_runs(tracking_uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return tracking.find_runs(client, experiment_id, {tracking.ROLE_TAG: tracking.TRIAL_ROLE})


def sweep_runs(tracking_uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return tracking.find_runs(client, experiment_id, {tracking.ROLE_TAG: tracking.SWEEP_ROLE})


# The whole path on real images, with one injected failure per trial.


def test_smoke_sweep_succeeds(smoke_sweep):
    process = smoke_sweep["process"]
    assert process.returncode == 0, process.stdout[-3000:]
    assert "trials of grid: 8 finished, 0 failed, 0 unfinished" in process.stdout


def test_smoke_sweep_one_parent_run(smoke_sweep):
    parents = sweep_runs(smoke_sweep["tracking_uri"], "smoke")
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags[tracking.SEEDS_TAG] == "2"


def test_smoke_sweep_one_child_run_per_trial(smoke_sweep):
    runs = trial_runs(smoke_sweep["tracking_uri"], "smoke")
    parent = sweep_runs(smoke_sweep["tracking_uri"], "smoke")[0]
    assert len(runs) == 8
    assert len({run.data.tags[tracking.TRIAL_ID_TAG] for run in runs}) == 8
    assert {run.data.tags[tracking.PARENT_RUN_TAG] for run in runs} == {parent.info.run_id}
    assert {run.info.status for run in runs} == {"FINISHED"}


def test_smoke_sweep_trials_retried_from_checkpoint(smoke_sweep):
    client = MlflowClient(smoke_sweep["tracking_uri"])
    for run in trial_runs(smoke_sweep["tracking_uri"], "smoke"):
        # A retry from scratch would log epoch 1 a second time.
        epochs = [metric.step for metric in client.get_metric_history(run.info.run_id, "train/loss")]
        assert run.data.tags[tracking.ATTEMPTS_TAG] == "2"
        assert "InjectedFailure" in run.data.tags[tracking.PREVIOUS_ERROR_TAG]
        assert tracking.ERROR_TAG not in run.data.tags
        assert sorted(epochs) == [1, 2]
    assert smoke_sweep["process"].stdout.count("resumes from checkpoint") == 8


def test_smoke_sweep_metrics_complete(smoke_sweep):
    client = MlflowClient(smoke_sweep["tracking_uri"])
    for run in trial_runs(smoke_sweep["tracking_uri"], "smoke"):
        history = client.get_metric_history(run.info.run_id, "val/iou")
        assert sorted(metric.step for metric in history) == [1, 2]
        for key in ("test/iou", "test/dice", "test/accuracy", "test/mean_image_iou", "train/loss", "best/val_iou"):
            assert key in run.data.metrics


def test_smoke_sweep_params_are_resolved_config(smoke_sweep):
    run = trial_runs(smoke_sweep["tracking_uri"], "smoke")[0]
    assert set(run.data.params) == set(TrainConfig.field_names())
    assert run.data.params["image_size"] == "64"
    assert run.data.params["layout"] == "folder"


def test_smoke_sweep_tags_every_axis(smoke_sweep):
    runs = trial_runs(smoke_sweep["tracking_uri"], "smoke")
    assert runs[0].data.tags[tracking.AXES_TAG] == "dataset,arch,app,class_weights,seed"
    combinations = {
        (r.data.tags["dataset"], r.data.tags["arch"], r.data.tags["app"], r.data.tags["seed"]) for r in runs
    }
    assert len(combinations) == 8
    assert {r.data.tags["dataset"] for r in runs} == {"dsb2018_fluo_nuclei", "isic2017_val_lesion"}


def test_smoke_sweep_model_loads_offline(smoke_sweep):
    run = trial_runs(smoke_sweep["tracking_uri"], "smoke")[0]
    mlflow.set_tracking_uri(smoke_sweep["tracking_uri"])
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    channels = 1 if run.data.tags["dataset"].startswith("dsb") else 3
    logits = model(torch.zeros(1, channels, 64, 64))
    assert tuple(logits.shape) == (1, 2, 64, 64)
    assert not any("app" in name.lower() for name, _ in model.named_parameters())


def test_smoke_sweep_artifacts(smoke_sweep):
    client = MlflowClient(smoke_sweep["tracking_uri"])
    run = trial_runs(smoke_sweep["tracking_uri"], "smoke")[0]
    top = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    overlays = [artifact.path for artifact in client.list_artifacts(run.info.run_id, "overlays")]
    assert {"metrics.json", "metrics.csv", "config.json", "best_model.pt"} <= top
    assert len(overlays) == 2
    assert all(path.endswith(".png") for path in overlays)
    metrics = json.loads(open(client.download_artifacts(run.info.run_id, "metrics.json")).read())
    assert metrics["test/iou"] == pytest.approx(run.data.metrics["test/iou"])


def test_smoke_sweep_prepares_each_dataset_once(smoke_sweep):
    assert smoke_sweep["process"].stdout.count("built cache entry") == 2
    assert len(list((smoke_sweep["workdir"] / "cache" / "prepared").glob("*/meta.json"))) == 2


def test_smoke_sweep_writes_record(smoke_sweep):
    record = json.loads((smoke_sweep["workdir"] / "sweeps" / "smoke-test" / "segsweep.json").read_text())
    assert record["space"] == "smoke"
    assert record["overrides"]["seed"] == {"grid_search": [0, 1]}


# A trial that keeps failing.


def test_failing_trial_run_ends_failed(tmp_path):
    result = run_sweep(
        tmp_path, "--space", "smoke", "--set", "epochs=1", "--set", "max_images=6", "--inject-failure", "1",
        "--name", "failing", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = trial_runs(uri, "smoke")
    assert "trials of grid: 0 finished, 4 failed, 0 unfinished" in result.stdout
    assert len(runs) == 4
    assert {run.info.status for run in runs} == {"FAILED"}
    assert all("injected failure at epoch 1" in run.data.tags[tracking.ERROR_TAG] for run in runs)
    assert sweep_runs(uri, "smoke")[0].info.status == "FAILED"


# A driver killed midway and restarted.


def wait_for_mixed_statuses(uri: str, process: subprocess.Popen, timeout: float = 600) -> list[str]:
    """Wait until some trial runs are FINISHED while others still run; return their statuses."""
    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(1)
        experiment = client.get_experiment_by_name("smoke") if (uri and process.poll() is None) else None
        if experiment is None:
            continue
        statuses = [run.info.status for run in trial_runs(uri, "smoke")]
        if "FINISHED" in statuses and "RUNNING" in statuses:
            return statuses
    raise AssertionError(f"the sweep never had finished and running trials at once (exit code {process.poll()})")


def interrupt_midway(tmp_path, name: str, stop_signal: int) -> tuple[str, set[str]]:
    """Start a smoke sweep, send ``stop_signal`` once trials have both finished and running; return the store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--space", "smoke", "--set", "epochs=3", "--name", name, "--cache-dir", str(tmp_path / "cache")]
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen(
            sweep_command(*args), cwd=tmp_path, env=sweep_environment(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_mixed_statuses(uri, driver)
        finally:
            driver.send_signal(stop_signal)
            driver.wait(timeout=300)
    finished = {
        run.data.tags[tracking.TRIAL_ID_TAG] for run in trial_runs(uri, "smoke") if run.info.status == "FINISHED"
    }
    return uri, finished


def check_resumed(uri: str, finished_before: set[str]) -> None:
    runs = trial_runs(uri, "smoke")
    assert len(runs) == 4
    assert len({run.data.tags[tracking.TRIAL_ID_TAG] for run in runs}) == 4
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert all("test/iou" in run.data.metrics for run in runs)
    for run in runs:
        if run.data.tags[tracking.TRIAL_ID_TAG] in finished_before:
            assert run.data.tags[tracking.ATTEMPTS_TAG] == "1"
    assert len(sweep_runs(uri, "smoke")) == 1
    assert sweep_runs(uri, "smoke")[0].info.status == "FINISHED"


def test_killed_driver_resumes_without_duplicates(tmp_path):
    uri, finished_before = interrupt_midway(tmp_path, "killed", signal.SIGKILL)
    resumed = run_sweep(tmp_path, "--space", "smoke", "--resume", "--name", "killed")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    check_resumed(uri, finished_before)


def test_interrupted_sweep_reports_and_resumes(tmp_path):
    uri, finished_before = interrupt_midway(tmp_path, "stopped", signal.SIGINT)
    first = (tmp_path / "first.log").read_text()
    unfinished = [
        run for run in trial_runs(uri, "smoke") if run.data.tags[tracking.TRIAL_ID_TAG] not in finished_before
    ]
    assert "interrupted:" in first
    assert "python -m sweep.run --resume --name stopped" in first
    assert {run.info.status for run in unfinished} <= {"KILLED"}
    assert sweep_runs(uri, "smoke")[0].info.status == "KILLED"

    resumed = run_sweep(tmp_path, "--space", "smoke", "--resume", "--name", "stopped")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    check_resumed(uri, finished_before)


def test_existing_name_needs_resume(tmp_path):
    (tmp_path / "sweeps" / "taken").mkdir(parents=True)
    (tmp_path / "sweeps" / "taken" / "segsweep.json").write_text(
        '{"name": "taken", "space": "smoke", "experiment": "smoke", "tracking_uri": "sqlite:///x.db"}'
    )
    result = run_sweep(tmp_path, "--space", "smoke", "--name", "taken", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 2
    assert "sweep 'taken' already exists" in result.stdout
    assert "--resume" in result.stdout


# A two-node cluster on this machine, with logical GPUs.


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1)
    yield cluster
    cluster.shutdown()


def test_cluster_refuses_local_storage(tmp_path, two_node_cluster):
    result = run_sweep(
        tmp_path, "--space", "smoke", "--address", two_node_cluster.address, "--cache-dir", str(tmp_path / "cache")
    )
    assert result.returncode == 2
    assert "the cluster has 2 nodes but storage path" in result.stdout
    assert "s3://" in result.stdout
    assert not (tmp_path / "sweeps").exists()


def test_cluster_spreads_fractional_gpu_trials(tmp_path, two_node_cluster):
    result = run_sweep(
        tmp_path, "--space", "smoke", "--set", "epochs=1", "--set", "max_images=6", "--address", two_node_cluster.address,
        "--shared-storage", "--cpus-per-trial", "1", "--gpus-per-trial", "0.5", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    runs = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "smoke")
    assert result.returncode == 0, result.stdout[-3000:]
    assert len({run.data.tags[tracking.NODE_ID_TAG] for run in runs}) == 2
    assert {run.data.tags[tracking.RESOURCES_TAG] for run in runs} == {"cpu=1,gpu=0.5"}
    assert all(run.data.tags.get(tracking.GPU_TAG) == "0" for run in runs)
