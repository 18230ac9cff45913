"""The whole path: a real smoke sweep on the shared images, then ``python -m sweep.report`` on its store.

The sweep is the session's ``smoke_sweep`` fixture: 8 two-epoch trials (2 datasets x
2 configurations x seeds 0 and 1) on the CPU, shared with the sweep tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from segcore.metrics import TEST_IOU
from sweep import tracking
from sweep.report.__main__ import main

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[1]
SWEEP_NAME = "smoke-test"
CELL_AXES = ["dataset", "app", "arch", "class_weights"]


def run_module(module: str, *arguments: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def smoke_store(smoke_sweep) -> dict:
    """The session's smoke sweep (two seeds, on the shared images): its store URI and folder."""
    assert smoke_sweep["process"].returncode == 0, f"smoke sweep failed:\n{smoke_sweep['process'].stdout[-3000:]}"
    return {"uri": smoke_sweep["tracking_uri"], "folder": smoke_sweep["workdir"]}


@pytest.fixture(scope="module")
def smoke_report(smoke_store) -> tuple[Path, subprocess.CompletedProcess]:
    out = smoke_store["folder"] / "report"
    completed = run_module(
        "sweep.report", "--experiment", "smoke", "--tracking-uri", smoke_store["uri"], "--out", str(out), timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out, completed


def test_report_files_written(smoke_report):
    out, completed = smoke_report
    assert f"report of sweep {SWEEP_NAME}: 4 cells" in completed.stdout
    for name in ["report.md", "report.html", "cells.csv", "runs.csv", "baseline.csv", "study_averages.csv"]:
        assert (out / name).is_file(), name
    figures = sorted(path.name for path in (out / "figures").iterdir())
    assert figures == [
        "heatmap_dsb2018_fluo_nuclei.png",
        "heatmap_isic2017_val_lesion.png",
        "iou_dsb2018_fluo_nuclei.png",
        "iou_isic2017_val_lesion.png",
        "val_iou_curves.png",
    ]


def test_report_cells_match_mlflow(smoke_report, smoke_store):
    out, _ = smoke_report
    cells = pd.read_csv(out / "cells.csv", dtype=str)
    assert len(cells) == 4
    assert set(cells["dataset"]) == {"dsb2018_fluo_nuclei", "isic2017_val_lesion"}
    assert set(zip(cells["arch"], cells["app"], cells["class_weights"], strict=True)) == {
        ("unet", "none", "cdw"),
        ("unetplusplus", "relu", "median_frequency"),
    }
    assert cells["encoder"].tolist() == ["resnet18"] * 4
    assert cells["n"].tolist() == ["2"] * 4
    assert cells["expected_seeds"].tolist() == ["2"] * 4
    assert cells["failed"].tolist() == ["False"] * 4

    # Recompute each cell's mean straight from the tracking store.
    client = MlflowClient(smoke_store["uri"])
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id], f"tags.`{tracking.ROLE_TAG}` = '{tracking.TRIAL_ROLE}'")
    values: dict[tuple, list[float]] = {}
    for run in runs:
        key = tuple(run.data.tags[axis] for axis in CELL_AXES)
        values.setdefault(key, []).append(run.data.metrics[TEST_IOU])
    for _, cell in cells.iterrows():
        expected = values[tuple(cell[axis] for axis in CELL_AXES)]
        assert len(expected) == 2
        assert float(cell["mean"]) == pytest.approx(sum(expected) / 2)


def test_report_logged_to_parent(smoke_report, smoke_store):
    client = MlflowClient(smoke_store["uri"])
    experiment = client.get_experiment_by_name("smoke")
    parent = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{tracking.SWEEP_TAG}` = '{SWEEP_NAME}' and tags.`{tracking.ROLE_TAG}` = 'sweep'",
    )[0]
    logged = {Path(item.path).name for item in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report.md", "report.html", "cells.csv", "figures"} <= logged
    assert parent.info.status == "FINISHED"


def test_gate_on_own_baseline(smoke_report, smoke_store, capsys):
    out, _ = smoke_report
    arguments = [
        "--experiment",
        "smoke",
        "--tracking-uri",
        smoke_store["uri"],
        "--out",
        str(out.parent / "gate"),
        "--no-log-artifacts",
    ]
    assert main([*arguments, "--check", str(out / "baseline.csv")]) == 0
    assert "check passed: 4 baseline cells" in capsys.readouterr().out

    raised = pd.read_csv(out / "baseline.csv", dtype=str)
    raised["test_iou"] = raised["test_iou"].astype(float) + 0.05
    raised_file = out.parent / "raised.csv"
    raised.to_csv(raised_file, index=False)
    assert main([*arguments, "--check", str(raised_file), "--tolerance", "0.01"]) == 1
    output = capsys.readouterr().out
    assert "check failed: 4 of 4 baseline cells" in output
    for _, row in raised.iterrows():
        cell = ", ".join(f"{axis}={row[axis]}" for axis in raised.columns if axis != "test_iou")
        assert f"{cell}: mean " in output
