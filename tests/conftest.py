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
        pytest.fail(f"real test images not found under {root}; set {SHARED_DATA_VARIABLE} to the folder holding {NUCLEI} and {LESIONS}")
    return root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A decoded-sample cache shared by the tests of one session."""
    return tmp_path_factory.mktemp("segsweep-cache")


@pytest.fixture
def tiny_settings(shared_data, session_cache) -> dict:
    """Flat settings of a seconds-long CPU run: 12 nuclei images at 64 px, 2 epochs, no pretrained weights."""
    return {
        "layout": "folder",
        "root": str(shared_data / NUCLEI),
        "image_size": 64,
        "max_images": 12,
        "cache_dir": str(session_cache),
        "encoder_weights": None,
        "epochs": 2,
        "batch_size": 4,
        "workers": 0,
        "device": "cpu",
        "overlays": 1,
    }
