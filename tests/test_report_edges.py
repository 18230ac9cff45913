"""Edge cases of the report's statistics and histories."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from sweep.report.collect import collect_curves
from sweep.report.stats import CI_HIGH, CI_LOW, summarize_cells


def trials(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": ["a"] * len(values),
            "seed": [str(seed) for seed in range(len(values))],
            "status": ["FINISHED"] * len(values),
            "test_iou": values,
            "stopped_early": [False] * len(values),
            "error": [""] * len(values),
        }
    )


def test_interval_clipped_to_iou_range():
    cells = summarize_cells(trials([0.99, 0.98, 0.40]), ["dataset"], expected_seeds=3)
    # mean 0.79, std 0.3378: the t-interval (-0.05, 1.63) reaches past both ends.
    assert cells[CI_LOW].iloc[0] == 0.0
    assert cells[CI_HIGH].iloc[0] == 1.0


def test_interval_inside_range_unchanged():
    cells = summarize_cells(trials([0.5, 0.6, 0.7]), ["dataset"], expected_seeds=3)
    # mean 0.6, std 0.1, t(0.975, 2) = 4.3027: half-width 0.24841.
    assert cells[CI_LOW].iloc[0] == pytest.approx(0.35159, abs=1e-5)
    assert cells[CI_HIGH].iloc[0] == pytest.approx(0.84841, abs=1e-5)


def test_curves_keep_latest_value_of_repeated_epoch(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    client.log_batch(run_id, metrics=[Metric("val/iou", 0.1, 1000, 1), Metric("val/iou", 0.2, 2000, 2)])
    # The resumed attempt logs epoch 2 again.
    client.log_batch(run_id, metrics=[Metric("val/iou", 0.25, 3000, 2), Metric("val/iou", 0.3, 4000, 3)])
    curves = collect_curves(client, [run_id])
    assert curves["epoch"].tolist() == [1, 2, 3]
    assert curves["value"].tolist() == [0.1, 0.25, 0.3]
