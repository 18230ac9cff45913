"""The report command on a SQLite store filled with known numbers, checked against hand-computed values.

The store contains two sweeps of experiment ``known``. The newer one, ``known-sweep``,
varies app and class_weights over seeds 0-2 on dermatomyositis, U-Net, ResNet-18
(constant settings, so params only) and declares 3 seeds:

| app  | class_weights | seed 0 | seed 1                | seed 2 |
| none | cdw           | 0.50   | 0.55                  | 0.60   |
| relu | cdw           | 0.52   | 0.58                  | FAILED |
| none | dedl          | 0.40   | 0.45                  | 0.47   |
| relu | dedl          | 0.42   | stopped early, no IoU | (none) |

The older sweep ``old-sweep`` has one run with test IoU 0.99, which must never appear.
Student t quantiles: t(0.975, 1) = 12.706204736, t(0.975, 2) = 4.302652730.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from segcore.metrics import TEST_IOU, VAL_IOU
from sweep import tracking
from sweep.report.__main__ import main
from sweep.report.collect import find_sweep
from sweep.report.errors import ReportError
from sweep.report.search import read_rows

EXPERIMENT = "known"
AXES = "app,class_weights,seed"
CONSTANTS = {"dataset": "dermatomyositis", "arch": "unet", "encoder": "resnet18", "epochs": "3"}
TRIALS = [
    ("none", "cdw", 0, "FINISHED", 0.50),
    ("none", "cdw", 1, "FINISHED", 0.55),
    ("none", "cdw", 2, "FINISHED", 0.60),
    ("relu", "cdw", 0, "FINISHED", 0.52),
    ("relu", "cdw", 1, "FINISHED", 0.58),
    ("relu", "cdw", 2, "FAILED", None),
    ("none", "dedl", 0, "FINISHED", 0.40),
    ("none", "dedl", 1, "FINISHED", 0.45),
    ("none", "dedl", 2, "FINISHED", 0.47),
    ("relu", "dedl", 0, "FINISHED", 0.42),
    ("relu", "dedl", 1, "STOPPED", None),
]


def add_sweep(client: MlflowClient, experiment_id: str, name: str, start_time: int) -> str:
    run = client.create_run(
        experiment_id,
        run_name=name,
        start_time=start_time,
        tags={
            tracking.ROLE_TAG: tracking.SWEEP_ROLE,
            tracking.SWEEP_TAG: name,
            tracking.SPACE_TAG: "handmade",
            tracking.SEEDS_TAG: "3",
            tracking.AXES_TAG: AXES,
        },
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def add_trial(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    app: str,
    weights: str,
    seed: int,
    status: str,
    test_iou: float | None,
) -> str:
    tags = {
        tracking.PARENT_RUN_TAG: parent_id,
        tracking.ROLE_TAG: tracking.TRIAL_ROLE,
        tracking.TRIAL_ID_TAG: f"{parent_id[:6]}_{app}_{weights}_{seed}",
        tracking.AXES_TAG: AXES,
        "app": app,
        "class_weights": weights,
        "seed": str(seed),
    }
    if status == "STOPPED":
        tags[tracking.STOPPED_EARLY_TAG] = "true"
        status = "FINISHED"
    if status == "FAILED":
        tags[tracking.ERROR_TAG] = "Traceback (most recent call last):\nRuntimeError: out of memory"
    run = client.create_run(experiment_id, tags=tags)
    params = [
        Param(key, value)
        for key, value in {**CONSTANTS, "app": app, "class_weights": weights, "seed": str(seed)}.items()
    ]
    metrics = [Metric(VAL_IOU, 0.1 * epoch + 0.01 * seed, 0, epoch) for epoch in (1, 2, 3)]
    if test_iou is not None:
        metrics.append(Metric(TEST_IOU, test_iou, 0, 3))
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Fill the store; return its URI, the parent run ids and a client."""
    folder = tmp_path_factory.mktemp("known-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(client, EXPERIMENT, uri)
    old = add_sweep(client, experiment_id, "old-sweep", start_time=1_700_000_000_000)
    add_trial(client, experiment_id, old, "none", "cdw", 0, "FINISHED", 0.99)
    new = add_sweep(client, experiment_id, "known-sweep", start_time=1_800_000_000_000)
    for trial in TRIALS:
        add_trial(client, experiment_id, new, *trial)
    return {"uri": uri, "folder": folder, "client": client, "parent": new, "old": old}


@pytest.fixture(scope="module")
def report(store) -> Path:
    """Run the report command once; return its output folder."""
    out = store["folder"] / "report"
    assert main(["--experiment", EXPERIMENT, "--tracking-uri", store["uri"], "--out", str(out)]) == 0
    return out


def read_cells(report: Path) -> pd.DataFrame:
    return pd.read_csv(report / "cells.csv", dtype={"app": str, "class_weights": str}).set_index(
        ["app", "class_weights"]
    )


def test_find_sweep_newest_by_default(store):
    sweep = find_sweep(store["client"], EXPERIMENT)
    assert sweep.run_id == store["parent"]
    assert sweep.name == "known-sweep"
    assert sweep.cell_axes == ("app", "class_weights")
    assert sweep.declared_seeds == 3


def test_find_sweep_by_name_and_run_id(store):
    assert find_sweep(store["client"], EXPERIMENT, "old-sweep").run_id == store["old"]
    assert find_sweep(store["client"], EXPERIMENT, store["old"]).name == "old-sweep"


def test_find_sweep_unknown_lists_sweeps(store):
    with pytest.raises(ReportError, match="known-sweep, old-sweep"):
        find_sweep(store["client"], EXPERIMENT, "no-such-sweep")


def test_parallel_read_matches_serial(store):
    client = store["client"]
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    query = f"tags.`{tracking.PARENT_RUN_TAG}` = '{store['parent']}'"
    columns = ["app", "class_weights", "seed"]
    serial = read_rows(client, store["uri"], experiment_id, query, columns, TEST_IOU, workers=1)
    # Three runs first, then the other eight in three slices, two of them read by worker processes.
    parallel = read_rows(client, store["uri"], experiment_id, query, columns, TEST_IOU, workers=3, first_page=3)
    assert len(serial) == len(TRIALS)
    assert len(parallel) == len(TRIALS)

    def by_run(rows: list[dict]) -> dict:
        return {row["run_id"]: {key: value for key, value in row.items() if key != "test_iou"} for row in rows}

    assert by_run(parallel) == by_run(serial)
    assert sorted(str(row["test_iou"]) for row in parallel) == sorted(str(row["test_iou"]) for row in serial)


def test_cells_match_hand_computed(report):
    cells = read_cells(report)
    assert len(cells) == 4

    complete = cells.loc[("none", "cdw")]
    assert complete["n"] == 3
    assert complete["mean"] == pytest.approx(0.55)
    assert complete["std"] == pytest.approx(0.05)
    assert complete["ci_low"] == pytest.approx(0.4257932, abs=1e-7)
    assert complete["ci_high"] == pytest.approx(0.6742068, abs=1e-7)
    assert complete["published"] == pytest.approx(0.5618)
    assert complete["difference"] == pytest.approx(-0.0118)
    assert not complete["failed"]
    assert not complete["fewer_seeds"]

    failed = cells.loc[("relu", "cdw")]
    assert failed["runs"] == 3
    assert failed["n"] == 2
    assert failed["mean"] == pytest.approx(0.55)
    assert failed["ci_low"] == pytest.approx(0.1688139, abs=1e-7)
    assert failed["ci_high"] == pytest.approx(0.9311861, abs=1e-7)
    assert failed["failed"]
    assert failed["fewer_seeds"]

    dedl = cells.loc[("none", "dedl")]
    assert dedl["mean"] == pytest.approx(0.44)
    assert dedl["std"] == pytest.approx(0.0360555, abs=1e-7)
    assert dedl["ci_low"] == pytest.approx(0.3504331, abs=1e-7)

    single = cells.loc[("relu", "dedl")]
    assert single["runs"] == 2
    assert single["n"] == 1
    assert math.isnan(single["std"])
    assert math.isnan(single["ci_low"])
    assert single["fewer_seeds"]
    assert single["stopped_early"]
    assert not single["failed"]


def test_old_sweep_runs_left_out(report, store):
    runs = pd.read_csv(report / "runs.csv")
    assert len(runs) == len(TRIALS)
    assert 0.99 not in runs["test_iou"].tolist()


def test_block_averages_and_gain(report):
    averages = pd.read_csv(report / "study_averages.csv").set_index("class_weights")
    cdw = averages.loc["cdw"]
    # Seeds 0 and 1 are complete: block means 0.51 and 0.565, std 0.0388909.
    assert cdw["mean"] == pytest.approx(0.55)
    assert cdw["complete_seeds"] == 2
    assert cdw["ci_low"] == pytest.approx(0.2005794, abs=1e-7)
    assert cdw["ci_high"] == pytest.approx(0.8994206, abs=1e-7)
    assert cdw["published"] == pytest.approx((0.5618 + 0.5479) / 2)
    assert cdw["failed"]
    dedl = averages.loc["dedl"]
    assert dedl["mean"] == pytest.approx(0.43)
    assert dedl["complete_seeds"] == 1
    assert math.isnan(dedl["ci_low"])

    gain = pd.read_csv(report / "cdw_gain.csv").iloc[0]
    assert gain["gain_points"] == pytest.approx(12.0)
    assert gain["published_gain_points"] == pytest.approx(100 * ((0.5618 + 0.5479) / 2 - (0.4347 + 0.4608) / 2))
    assert gain["difference"] == pytest.approx(1.29)
    assert gain["complete_seeds"] == 1


def test_paired_comparisons(report):
    weights = pd.read_csv(report / "paired_class_weights.csv").iloc[0]
    # cdw - dedl on (app, seed): 0.10, 0.10, 0.13, 0.10; std 0.015, t = 0.1075 / (0.015 / 2).
    assert (weights["first"], weights["second"]) == ("cdw", "dedl")
    assert weights["n_pairs"] == 4
    assert weights["mean_difference"] == pytest.approx(0.1075)
    assert weights["t_statistic"] == pytest.approx(14.333333, abs=1e-5)
    assert weights["unpaired_runs"] == 1

    app = pd.read_csv(report / "paired_app.csv").iloc[0]
    # none - relu on (class_weights, seed): -0.02, -0.03, -0.02.
    assert (app["first"], app["second"]) == ("none", "relu")
    assert app["n_pairs"] == 3
    assert app["mean_difference"] == pytest.approx(-0.07 / 3)
    assert app["unpaired_runs"] == 3


def test_pages_show_flags(report):
    markdown = (report / "report.md").read_text()
    assert "| resnet18 | 0.5500 ± 0.1242 | 0.5618 | -0.0118 | 0.5500 ± 0.3812 (s)(f) | 0.5479 | +0.0021 |" in markdown
    assert "0.4200 (s)(e)" in markdown
    assert "(f) a trial failed" in markdown
    page = (report / "report.html").read_text()
    assert "(s)(f)" in page
    assert page.count('<img src="data:image/png;base64,') == 3


def test_figures_written(report):
    names = sorted(path.name for path in (report / "figures").iterdir())
    assert names == ["heatmap_dermatomyositis.png", "iou_dermatomyositis.png", "val_iou_curves.png"]


def test_artifacts_on_parent_run(report, store):
    client = store["client"]
    logged = {Path(item.path).name for item in client.list_artifacts(store["parent"], "report")}
    assert {"report.md", "report.html", "cells.csv", "figures"} <= logged
    figures = {Path(item.path).name for item in client.list_artifacts(store["parent"], "report/figures")}
    assert "iou_dermatomyositis.png" in figures
    assert client.get_run(store["parent"]).info.status == "FINISHED"


def run_gate(store, tmp_path, baseline: str, tolerance: str, capsys) -> tuple[int, str, str]:
    baseline_file = tmp_path / "baseline.csv"
    baseline_file.write_text(baseline)
    argv = [
        "--experiment",
        EXPERIMENT,
        "--tracking-uri",
        store["uri"],
        "--out",
        str(tmp_path / "out"),
        "--no-log-artifacts",
    ]
    code = main([*argv, "--check", str(baseline_file), "--tolerance", tolerance])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gate_passes(store, tmp_path, capsys):
    code, output, _ = run_gate(
        store, tmp_path, "app,class_weights,test_iou\nnone,cdw,0.54\nrelu,dedl,0.42\n", "0", capsys
    )
    assert code == 0
    assert "check passed: 2 baseline cells" in output


def test_gate_fails_below_tolerance(store, tmp_path, capsys):
    code, output, _ = run_gate(
        store, tmp_path, "class_weights,app,test_iou\ncdw,none,0.56\ndedl,none,0.445\n", "0.005", capsys
    )
    assert code == 1
    assert "app=none, class_weights=cdw: mean 0.5500 < baseline 0.5600 - tolerance 0.005" in output
    assert "class_weights=dedl" not in output


def test_gate_fails_on_missing_cell(store, tmp_path, capsys):
    code, output, _ = run_gate(
        store, tmp_path, "app,class_weights,test_iou\ngelu,cdw,0.3\nnone,cdw,0.5\n", "0.01", capsys
    )
    assert code == 1
    assert "app=gelu, class_weights=cdw: missing" in output
    assert "1 of 2 baseline cells" in output


def test_gate_rejects_wrong_columns(store, tmp_path, capsys):
    code, _, errors = run_gate(store, tmp_path, "dataset,test_iou\ndermatomyositis,0.5\n", "0", capsys)
    assert code == 2
    assert "expected app, class_weights, test_iou" in errors


def test_unknown_experiment_exits_2(store, tmp_path, capsys):
    code = main(
        ["--experiment", "absent", "--tracking-uri", store["uri"], "--out", str(tmp_path), "--no-log-artifacts"]
    )
    assert code == 2
    assert "experiment 'absent' not found; experiments in this store: Default, known" in capsys.readouterr().err


def test_missing_database_exits_2(tmp_path, capsys):
    database = tmp_path / "absent.db"
    code = main(["--experiment", EXPERIMENT, "--tracking-uri", f"sqlite:///{database}", "--no-log-artifacts"])
    assert code == 2
    assert f"SQLite tracking database {database} not found" in capsys.readouterr().err
    assert not database.exists()


def test_generic_space_skips_study_tables(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(client, "ratio", uri)
    parent = client.create_run(
        experiment_id,
        tags={
            tracking.ROLE_TAG: tracking.SWEEP_ROLE,
            tracking.SWEEP_TAG: "ratio-sweep",
            tracking.SEEDS_TAG: "1",
            tracking.AXES_TAG: "dataset,weight_ratio",
        },
    ).info.run_id
    for index, (ratio, test_iou, stopped) in enumerate(
        [("0.5", 0.30, False), ("2.0", 0.40, False), ("8.0", None, True)]
    ):
        tags = {
            tracking.PARENT_RUN_TAG: parent,
            tracking.ROLE_TAG: tracking.TRIAL_ROLE,
            tracking.TRIAL_ID_TAG: f"ratio_{index}",
            "dataset": "isic2017",
            "weight_ratio": ratio,
        }
        if stopped:
            tags[tracking.STOPPED_EARLY_TAG] = "true"
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        metrics = [Metric(VAL_IOU, 0.2, 0, 1)] + ([Metric(TEST_IOU, test_iou, 0, 1)] if test_iou is not None else [])
        client.log_batch(run_id, metrics=metrics, params=[Param("seed", "0"), Param("arch", "unet")])
        client.set_terminated(run_id, "FINISHED")

    out = tmp_path / "report"
    assert main(["--experiment", "ratio", "--tracking-uri", uri, "--out", str(out), "--no-log-artifacts"]) == 0
    markdown = (out / "report.md").read_text()
    assert "Skipped: the sweep varies weight_ratio, which the study's tables have no place for" in markdown
    assert "| isic2017 | 8.0 | 1 | 0/1 | n/a (s)(e) |" in markdown
    cells = pd.read_csv(out / "cells.csv", dtype={"weight_ratio": str}).set_index("weight_ratio")
    assert cells.loc["2.0", "mean"] == pytest.approx(0.40)
    assert not (out / "study_averages.csv").exists()
    names = sorted(path.name for path in (out / "figures").iterdir())
    assert names == ["heatmap_isic2017.png", "iou_cells.png", "val_iou_curves.png"]
