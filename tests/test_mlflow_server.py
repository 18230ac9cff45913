"""The MLflow tracking server as a real component.

Each test starts ``mlflow server`` on 127.0.0.1 (SQLite backend store, proxied
artifacts under a local ``--artifacts-destination``) and stops it afterwards. A
small sweep on the real test images logs to it over HTTP from Ray worker
processes, as trials on other nodes do in a cluster.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModel, Run

from sweep import tracking
from sweep.dry_run import sample_trial_configs
from sweep.spaces import SpaceContext, load_space

REPOSITORY = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPOSITORY / "docker" / "compose.yaml"
SERVER_START_TIMEOUT_S = 120
SWEEP_TIMEOUT_S = 480
SWEEP_NAME = "smoke-over-http"
ARTIFACT_SCHEME = "mlflow-artifacts"


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def subprocess_environment() -> dict[str, str]:
    """Return the environment of the server and sweep processes: offline, no telemetry, no outside settings."""
    environment = dict(os.environ)
    environment.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        RAY_USAGE_STATS_ENABLED="0",
        HF_HUB_OFFLINE="1",
        DO_NOT_TRACK="1",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONUNBUFFERED="1",
    )
    # A tracking URI, Ray address or host list from the caller's shell would change what is tested.
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "MLFLOW_SERVER_ALLOWED_HOSTS"):
        environment.pop(name, None)
    return environment


def log_tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``: its URI, the folder of its proxied artifacts and its log."""

    uri: str
    port: int
    artifacts: Path
    log: Path


@contextmanager
def tracking_server(folder: Path, *options: str) -> Iterator[TrackingServer]:
    """Start ``mlflow server`` on a free port of 127.0.0.1 and stop it on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = TrackingServer(f"http://127.0.0.1:{port}", port, folder / "artifacts", folder / "server.log")
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(server.artifacts),
        "--workers", "1",
        *options,
    ]  # fmt: skip
    with open(server.log, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=subprocess_environment(),
            start_new_session=True,
        )
    try:
        wait_until_healthy(server, process)
        yield server
    finally:
        stop_process_group(process)


def wait_until_healthy(server: TrackingServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode} before answering:\n{log_tail(server.log)}")
        try:
            with urllib.request.urlopen(server.uri + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"mlflow server did not answer /health within {SERVER_START_TIMEOUT_S} s:\n{log_tail(server.log)}"
            )
        time.sleep(0.5)


@dataclass(frozen=True)
class SweepResult:
    """The exit status and output of one ``python -m sweep.run`` process."""

    returncode: int
    output: str
    log: Path


def run_sweep(arguments: list[str], folder: Path, timeout_s: float = SWEEP_TIMEOUT_S) -> SweepResult:
    """Run ``python -m sweep.run`` in ``folder`` and return its exit status and output."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "sweep.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sweep.run", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=subprocess_environment(),
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process_group(process)
            pytest.fail(
                f"python -m sweep.run {shlex.join(arguments)} ran longer than {timeout_s} s:\n{log_tail(log_path)}"
            )
    return SweepResult(process.returncode, log_path.read_text(errors="replace"), log_path)


def search_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


@dataclass(frozen=True)
class FinishedSweep:
    """A smoke sweep that logged to a live server, with the runs read back from it."""

    server: TrackingServer
    client: MlflowClient
    experiment_id: str
    parents: list[Run]
    children: list[Run]
    logged_models: dict[str, LoggedModel]
    expected_trials: int
    workdir: Path
    storage: Path


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, shared_data) -> Iterator[FinishedSweep]:
    root = tmp_path_factory.mktemp("mlflow-server-sweep")
    workdir, storage = root / "work", root / "sweeps"
    arguments = [
        "--space", "smoke",
        "--data-root", str(shared_data),
        "--set", "epochs=1",
        "--storage-path", str(storage),
        "--cache-dir", str(root / "cache"),
        "--name", SWEEP_NAME,
    ]  # fmt: skip
    space = load_space("smoke", SpaceContext(data_root=shared_data, dataset_paths={}, cache_dir=None, overrides={}))
    expected_trials = sum(1 for _ in sample_trial_configs(space))

    with tracking_server(root / "server") as server:
        result = run_sweep([*arguments, "--tracking-uri", server.uri], workdir)
        assert result.returncode == 0, f"the sweep exited with {result.returncode}:\n{log_tail(result.log)}"

        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("smoke")
        assert experiment is not None, "the sweep created no experiment 'smoke' on the server"
        parents = search_runs(client, experiment.experiment_id, f"tags.`{tracking.SWEEP_TAG}` = '{SWEEP_NAME}'")
        parents = [run for run in parents if run.data.tags.get(tracking.ROLE_TAG) == tracking.SWEEP_ROLE]
        children = []
        if len(parents) == 1:
            children = search_runs(
                client, experiment.experiment_id, f"tags.`{tracking.PARENT_RUN_TAG}` = '{parents[0].info.run_id}'"
            )
        models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
        logged_models = {model.source_run_id: model for model in models}
        assert len(logged_models) == len(models), "a run logged more than one model"
        yield FinishedSweep(
            server,
            client,
            experiment.experiment_id,
            parents,
            children,
            logged_models,
            expected_trials,
            workdir,
            storage,
        )


def artifact_folder(server: TrackingServer, uri: str) -> Path:
    """Return where the server stores a proxied artifact URI (``mlflow-artifacts:/<path>``)."""
    parsed = urlparse(uri)
    assert parsed.scheme == ARTIFACT_SCHEME, f"artifact URI {uri} is not proxied by the server"
    return server.artifacts / parsed.path.lstrip("/")


@pytest.mark.slow
def test_sweep_has_one_parent_run(finished_sweep):
    assert len(finished_sweep.parents) == 1, (
        f"expected one parent run of sweep {SWEEP_NAME}, found {len(finished_sweep.parents)}"
    )
    (parent,) = finished_sweep.parents
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.SPACE_TAG] == "smoke"


@pytest.mark.slow
def test_sweep_has_one_child_run_per_trial(finished_sweep):
    children = finished_sweep.children
    assert len(children) == finished_sweep.expected_trials
    trial_ids = {run.data.tags[tracking.TRIAL_ID_TAG] for run in children}
    assert len(trial_ids) == len(children), "two child runs share a trial id"
    for run in children:
        assert run.info.status == "FINISHED", (
            f"run {run.info.run_id} ended {run.info.status}: {run.data.tags.get(tracking.ERROR_TAG)}"
        )
        assert "test/iou" in run.data.metrics, f"run {run.info.run_id} has no test/iou"
        assert 0.0 <= run.data.metrics["test/iou"] <= 1.0


@pytest.mark.slow
def test_artifacts_listed_over_http(finished_sweep):
    client = finished_sweep.client
    for run in finished_sweep.children:
        run_id = run.info.run_id
        top_level = {artifact.path: artifact for artifact in client.list_artifacts(run_id)}
        assert "metrics.json" in top_level, f"run {run_id} lists {sorted(top_level)}"
        assert top_level["overlays"].is_dir
        overlays = [artifact.path for artifact in client.list_artifacts(run_id, "overlays")]
        assert overlays, f"run {run_id} has no overlays"
        assert all(path.endswith(".png") for path in overlays), f"run {run_id} overlays: {overlays}"
        # MLflow 3 keeps a model as a logged model of its own, with its own artifacts.
        model = finished_sweep.logged_models[run_id]
        assert model.name == "model", f"run {run_id} logged its model as {model.name}"
        assert str(model.status) == "READY", f"run {run_id}: model {model.model_id} is {model.status}"
        model_files = {artifact.path for artifact in client.list_logged_model_artifacts(model.model_id)}
        assert {"MLmodel", "data"} <= model_files, f"run {run_id}: model files {sorted(model_files)}"


@pytest.mark.slow
def test_metrics_file_matches_logged_metric(finished_sweep, tmp_path):
    for run in finished_sweep.children:
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path="metrics.json",
            tracking_uri=finished_sweep.server.uri,
            dst_path=str(tmp_path / run.info.run_id),
        )
        metrics = json.loads(Path(path).read_text())
        assert metrics["test/iou"] == pytest.approx(run.data.metrics["test/iou"])


@pytest.mark.slow
def test_artifacts_stored_under_destination(finished_sweep):
    server = finished_sweep.server
    for run in finished_sweep.children:
        folder = artifact_folder(server, run.info.artifact_uri)
        assert (folder / "metrics.json").is_file(), f"{folder} has no metrics.json"
        assert list((folder / "overlays").glob("*.png")), f"{folder}/overlays has no PNG"

    assert set(finished_sweep.logged_models) == {run.info.run_id for run in finished_sweep.children}
    for model in finished_sweep.logged_models.values():
        assert (artifact_folder(server, model.artifact_location) / "MLmodel").is_file(), (
            f"model {model.model_id} has no MLmodel file on the server"
        )


@pytest.mark.slow
def test_logged_model_is_best_checkpoint(finished_sweep, tmp_path):
    for run in finished_sweep.children:
        run_id = run.info.run_id
        # Downloaded over HTTP, then loaded from the local copy as on a machine without the server.
        # The tracking URI is passed explicitly: MLflow would resolve runs:/<id>/model through the
        # process-wide default store instead.
        model_path = mlflow.artifacts.download_artifacts(
            artifact_uri=finished_sweep.logged_models[run_id].artifact_location,
            tracking_uri=finished_sweep.server.uri,
            dst_path=str(tmp_path / run_id),
        )
        model = mlflow.pytorch.load_model(model_path, map_location="cpu")
        checkpoint_path = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path="best_model.pt",
            tracking_uri=finished_sweep.server.uri,
            dst_path=str(tmp_path / run_id),
        )
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        loaded = model.state_dict()
        assert set(loaded) == set(checkpoint["state_dict"])
        for name, tensor in checkpoint["state_dict"].items():
            assert torch.equal(loaded[name].cpu(), tensor), (
                f"run {run_id}: logged model differs from best_model.pt in {name}"
            )

        # Grayscale datasets give a 1-channel first convolution, colour ones 3 channels.
        channels = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d)).in_channels
        image_size = int(run.data.params["image_size"])
        model.eval()
        with torch.no_grad():
            logits = model(torch.zeros(1, channels, image_size, image_size))
        assert logits.shape[0] == 1
        assert logits.shape[-2:] == (image_size, image_size)


@pytest.mark.slow
def test_trials_write_no_local_store(finished_sweep):
    """Every trial logs to the server, so no local store appears beside its files."""
    for folder in (finished_sweep.workdir, finished_sweep.storage):
        strays = [path for name in ("mlruns", "mlflow.db", "mlartifacts") for path in folder.rglob(name)]
        assert not strays, f"local MLflow stores written during the sweep: {strays}"


def test_unreachable_tracking_uri_fails_before_trials(tmp_path, shared_data):
    uri = f"http://127.0.0.1:{free_port()}"
    storage = tmp_path / "sweeps"
    result = run_sweep(
        [
            "--space",
            "smoke",
            "--data-root",
            str(shared_data),
            "--set",
            "epochs=1",
            "--tracking-uri",
            uri,
            "--storage-path",
            str(storage),
        ],
        tmp_path / "work",
        timeout_s=180,
    )
    assert result.returncode == 2, f"expected exit status 2, got {result.returncode}:\n{result.output[-3000:]}"
    error_lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert error_lines, f"no 'error:' line in the output:\n{result.output[-3000:]}"
    assert uri in error_lines[0]
    assert "unreachable" in error_lines[0]
    assert "Traceback" not in result.output
    # Nothing of a sweep exists yet: no sweep folder, no Ray cluster, no trial.
    assert not storage.exists(), f"the sweep wrote {sorted(storage.rglob('*'))} before failing"
    assert "Ray cluster" not in result.output
    assert "Trial status" not in result.output


def compose_mlflow_settings() -> tuple[list[str], set[str]]:
    """Return the ``--allowed-hosts`` of compose.yaml's MLflow server and the hosts its clients send."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    command = shlex.split(services["mlflow"]["command"])
    allowed_hosts = command[command.index("--allowed-hosts") + 1].split(",")
    client_hosts = {
        urlparse(services[name]["environment"]["MLFLOW_TRACKING_URI"]).netloc for name in ("ray-head", "ray-worker")
    }
    return allowed_hosts, client_hosts


def request_status(server: TrackingServer, host: str) -> int:
    """Return the status of an API request that carries ``host`` as its Host header."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


def test_compose_allowed_hosts_accept_ray_nodes(tmp_path):
    allowed_hosts, client_hosts = compose_mlflow_settings()
    assert client_hosts, "compose.yaml gives the Ray services no MLFLOW_TRACKING_URI"
    with tracking_server(tmp_path / "server", "--allowed-hosts", ",".join(allowed_hosts)) as server:
        for host in sorted(client_hosts):
            assert request_status(server, host) == 200, f"the server rejects the Ray nodes' Host {host}"
        assert request_status(server, "localhost:5000") == 200
        # The check is active: a host outside the list is rejected.
        assert request_status(server, "attacker.example:5000") == 403
