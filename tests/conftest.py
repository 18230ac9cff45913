"""Shared fixtures: the real images under ../shared/data, caches and small training configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep tests off the network: no telemetry, no Hub downloads, no usage reports.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA_VARIABLE = "SEGSWEEP_TEST_DATA"
NUCLEI = "dsb2018_fluo_nuclei"
LESIONS = "isic2017_val_lesion"


def shared_data_root() -> Path:
    """Return the folder of the real test datasets: ``$SEGSWEEP_TEST_DATA`` or ``../shared/data``."""
    return Path(os.environ.get(SHARED_DATA_VARIABLE, REPOSITORY.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not (root / NUCLEI / "images").is_dir() or not (root / LESIONS / "images").is_dir():
        pytest.fail(
            f"real test images not found under {root}; set {SHARED_DATA_VARIABLE} to the folder holding {NUCLEI} and {LESIONS}"
        )
    return root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A decoded-sample cache shared by the tests of one session."""
    return tmp_path_factory.mktemp("segsweep-cache")


def tiny_run_settings(shared_data: Path, cache: Path) -> dict:
    """Return flat settings of a seconds-long CPU run: 12 nuclei images at 64 px, 2 epochs, no pretrained weights."""
    return {
        "layout": "folder",
        "root": str(shared_data / NUCLEI),
        "image_size": 64,
        "max_images": 12,
        "cache_dir": str(cache),
        "encoder_weights": None,
        "epochs": 2,
        "batch_size": 4,
        "workers": 0,
        "device": "cpu",
        "overlays": 1,
    }


@pytest.fixture
def tiny_settings(shared_data, session_cache) -> dict:
    """The settings of :func:`tiny_run_settings` with the session's cache."""
    return tiny_run_settings(shared_data, session_cache)


def sweep_command(*args: str) -> list[str]:
    """Return the command line of ``python -m sweep.run`` with ``args``."""
    import sys

    return [sys.executable, "-m", "sweep.run", *args]


def sweep_environment() -> dict[str, str]:
    """Return the environment for sweep subprocesses: no telemetry, no Hub access.

    ``MLFLOW_TRACKING_URI`` is left out, so a sweep records into ``mlflow.db``
    of its working folder unless the test passes ``--tracking-uri``.
    """
    environment = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**environment, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def restore_tracking_uri():
    """Undo the ``MLFLOW_TRACKING_URI`` that ``mlflow.set_tracking_uri`` also sets for the process."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def run_sweep(workdir: Path, *args: str, timeout: float = 900):
    """Run ``python -m sweep.run`` in ``workdir`` and return the completed process (output in ``.stdout``)."""
    import subprocess

    return subprocess.run(
        sweep_command(*args),
        cwd=workdir,
        env=sweep_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory, shared_data):
    """A real smoke sweep on the shared images: 2 datasets x 2 configurations x 2 seeds, 2 epochs.

    Every trial raises once at epoch 2 (``--inject-failure 2``) and is retried
    from its epoch-1 checkpoint, so the same sweep checks retries.
    """
    workdir = tmp_path_factory.mktemp("smoke-sweep")
    result = run_sweep(
        workdir,
        "--space", "smoke",
        "--data-root", str(shared_data),
        "--set", "epochs=2",
        "--grid", "seed=[0,1]",
        "--inject-failure", "2",
        "--name", "smoke-test",
        "--cache-dir", str(workdir / "cache"),
    )  # fmt: skip
    return {
        "workdir": workdir,
        "process": result,
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "experiment": "smoke",
        "sweep": "smoke-test",
        "trials": 8,
    }
