"""Statistics of the sweep report on small frames, against values computed by hand.

Student t quantiles used below: t(0.975, 1) = 12.706204736, t(0.975, 2) = 4.302652730,
t(0.975, 4) = 2.776445105.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.report import stats
from sweep.report.errors import ReportError
from sweep.report.gate import BELOW_BASELINE, MISSING_CELL, check_cells, read_baseline
from sweep.report.reference import load_published_class_weights, load_published_results


def trial_frame(rows: list[tuple]) -> pd.DataFrame:
    """Build a trial frame from ``(weights, app, seed, status, test_iou, stopped_early)`` tuples."""
    frame = pd.DataFrame(rows, columns=["class_weights", "app", "seed", "status", "test_iou", "stopped_early"])
    frame["test_iou"] = frame["test_iou"].astype(float)
    return frame


def test_t_interval_three_seeds():
    # mean 0.55, std 0.05, n 3: half-width 4.302652730 * 0.05 / sqrt(3) = 0.124207...
    low, high = stats.t_interval(0.55, 0.05, 3)
    assert float(low) == pytest.approx(0.4257932, abs=1e-7)
    assert float(high) == pytest.approx(0.6742068, abs=1e-7)


def test_t_interval_one_seed_is_undefined():
    low, high = stats.t_interval(0.42, np.nan, 1)
    assert math.isnan(float(low))
    assert math.isnan(float(high))


def test_summarize_cells_flags():
    trials = trial_frame(
        [
            ("cdw", "none", "0", "FINISHED", 0.50, False),
            ("cdw", "none", "1", "FINISHED", 0.55, False),
            ("cdw", "none", "2", "FINISHED", 0.60, False),
            ("cdw", "relu", "0", "FINISHED", 0.52, False),
            ("cdw", "relu", "1", "FINISHED", 0.58, False),
            ("cdw", "relu", "2", "FAILED", np.nan, False),
            ("dedl", "none", "0", "FINISHED", 0.42, False),
            ("dedl", "none", "1", "FINISHED", np.nan, True),
            ("dedl", "relu", "0", "KILLED", 0.47, False),
        ]
    )
    cells = stats.summarize_cells(trials, ["class_weights", "app"], expected_seeds=3).set_index(
        ["class_weights", "app"]
    )

    complete = cells.loc[("cdw", "none")]
    assert complete["n"] == 3
    assert complete["mean"] == pytest.approx(0.55)
    assert complete["std"] == pytest.approx(0.05)
    assert complete["ci_low"] == pytest.approx(0.4257932, abs=1e-7)
    assert not complete["fewer_seeds"]
    assert not complete["failed"]

    # Seed 2 failed: mean of 0.52 and 0.58, std 0.06 / sqrt(2), half-width 12.706204736 * 0.03.
    failed = cells.loc[("cdw", "relu")]
    assert failed["runs"] == 3
    assert failed["n"] == 2
    assert failed["mean"] == pytest.approx(0.55)
    assert failed["std"] == pytest.approx(0.0424264, abs=1e-7)
    assert failed["ci_high"] == pytest.approx(0.55 + 0.3811861, abs=1e-7)
    assert failed["failed"]
    assert failed["fewer_seeds"]

    stopped = cells.loc[("dedl", "none")]
    assert stopped["n"] == 1
    assert math.isnan(stopped["std"])
    assert math.isnan(stopped["ci_low"])
    assert stopped["stopped_early"]
    assert not stopped["failed"]

    # A killed run is never averaged in, even when it logged a test IoU.
    killed = cells.loc[("dedl", "relu")]
    assert killed["n"] == 0
    assert math.isnan(killed["mean"])
    assert killed["failed"]


def test_expected_seed_count_follows_grid():
    trials = trial_frame([("cdw", "none", str(seed), "FINISHED", 0.5, False) for seed in range(4)])
    assert stats.expected_seed_count(trials, declared=1) == 4
    assert stats.expected_seed_count(trials, declared=5) == 5


def test_paired_comparison_small_case():
    # Differences cdw - dedl: 0.01, 0.02, -0.005, 0.03, 0.04.
    # mean 0.019, std sqrt(0.000305) = 0.0174642, t = 0.019 / (0.0174642 / sqrt(5)) = 2.4327007,
    # two-sided p with 4 degrees of freedom 0.0717714. Signed ranks of |d|: 2, 3, 1, 4, 5 with
    # the 1 negative, so W = min(14, 1) = 1 and the exact two-sided p is 2 * 2 / 2^5 = 0.125.
    dedl = [0.40, 0.45, 0.47, 0.50, 0.41]
    cdw = [0.41, 0.47, 0.465, 0.53, 0.45]
    rows = [("cdw", "none", str(seed), "FINISHED", value, False) for seed, value in enumerate(cdw)]
    rows += [("dedl", "none", str(seed), "FINISHED", value, False) for seed, value in enumerate(dedl)]
    rows.append(("dedl", "none", "5", "FINISHED", 0.44, False))
    comparisons = stats.paired_comparisons(
        trial_frame(rows), "class_weights", group_axes=["app"], pair_axes=[], order=["cdw", "dedl"]
    )

    assert len(comparisons) == 1
    row = comparisons.iloc[0]
    assert (row["first"], row["second"]) == ("cdw", "dedl")
    assert row["n_pairs"] == 5
    assert row["unpaired_runs"] == 1
    assert row["mean_difference"] == pytest.approx(0.019)
    assert row["std"] == pytest.approx(0.0174642, abs=1e-7)
    assert row["ci_low"] == pytest.approx(0.019 - 0.0216847, abs=1e-7)
    assert row["t_statistic"] == pytest.approx(2.4327007, abs=1e-6)
    assert row["t_pvalue"] == pytest.approx(0.0717714, abs=1e-6)
    assert row["wilcoxon_statistic"] == 1.0
    assert row["wilcoxon_pvalue"] == pytest.approx(0.125)


def test_paired_comparison_single_pair_has_no_tests():
    rows = [("cdw", "none", "0", "FINISHED", 0.5, False), ("dedl", "none", "0", "FINISHED", 0.4, False)]
    row = stats.paired_comparisons(trial_frame(rows), "class_weights", ["app"], [], ["cdw", "dedl"]).iloc[0]
    assert row["n_pairs"] == 1
    assert row["mean_difference"] == pytest.approx(0.1)
    assert math.isnan(row["t_pvalue"])
    assert math.isnan(row["wilcoxon_pvalue"])


def test_ordered_levels_prefers_study_order():
    assert stats.ordered_levels(["relu", "gelu", "none", "silu"], ["none", "relu", "gelu"]) == [
        "none",
        "relu",
        "gelu",
        "silu",
    ]


def test_published_results_load():
    published = load_published_results()
    assert len(published) == 168
    cell = published[
        (published["dataset"] == "dermatomyositis")
        & (published["arch"] == "unet")
        & (published["encoder"] == "resnet18")
        & (published["app"] == "none")
        & (published["class_weights"] == "dedl")
    ]
    assert cell["test_iou"].tolist() == [0.4347]
    weights = load_published_class_weights()
    isic = weights[(weights["dataset"] == "isic2017") & (weights["class_weights"] == "cdw")]
    assert isic[["background", "foreground"]].to_numpy().tolist() == [[0.202, 0.798]]


def test_gate_cells(tmp_path):
    cells = pd.DataFrame({"dataset": ["a", "b"], "n": [3, 0], "mean": [0.50, np.nan]})
    baseline_file = tmp_path / "baseline.csv"
    baseline_file.write_text("dataset,test_iou\na,0.505\nb,0.1\nc,0.2\n")
    baseline = read_baseline(baseline_file, ["dataset"])

    assert check_cells(cells, baseline.iloc[:1], ["dataset"], tolerance=0.01) == []
    failures = check_cells(cells, baseline, ["dataset"], tolerance=0.001)
    assert [(failure.cell, failure.reason) for failure in failures] == [
        ({"dataset": "a"}, BELOW_BASELINE),
        ({"dataset": "b"}, MISSING_CELL),
        ({"dataset": "c"}, MISSING_CELL),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset,iou\na,0.5\n", "expected dataset, test_iou"),
        ("dataset,arch,test_iou\na,unet,0.5\n", "expected dataset, test_iou"),
        ("dataset,test_iou\na,high\n", "'high' on data row 1 is not a number"),
    ],
)
def test_gate_rejects_invalid_baseline(tmp_path, text, message):
    baseline_file = tmp_path / "baseline.csv"
    baseline_file.write_text(text)
    with pytest.raises(ReportError, match=message):
        read_baseline(baseline_file, ["dataset"])


def test_gate_rejects_missing_baseline(tmp_path):
    with pytest.raises(ReportError, match="not found"):
        read_baseline(tmp_path / "absent.csv", ["dataset"])
