"""SplitMetrics against hand-computed values on tiny masks."""

from __future__ import annotations

import pytest
import torch

from segcore.metrics import BEST_VAL_IOU, TEST_IOU, VAL_IOU, SplitMetrics, metric_key


def masks(*rows: list[list[int]]) -> torch.Tensor:
    """Stack 2-D masks given as nested lists into a ``(B, H, W)`` int64 tensor."""
    return torch.tensor(rows, dtype=torch.long)


def compute(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    metrics = SplitMetrics()
    metrics.update(predictions, targets)
    return metrics.compute()


# Image A: TP 1, FP 1, FN 0, TN 2 (IoU 1/2). Image B: no foreground anywhere (IoU 1).
PREDICTIONS_AB = masks([[1, 1], [0, 0]], [[0, 0], [0, 0]])
TARGETS_AB = masks([[1, 0], [0, 0]], [[0, 0], [0, 0]])


def test_metrics_iou_accumulated():
    assert compute(PREDICTIONS_AB, TARGETS_AB)["iou"] == pytest.approx(1 / 2)


def test_metrics_dice_accumulated():
    # 2 TP / (2 TP + FP + FN) = 2 / 3.
    assert compute(PREDICTIONS_AB, TARGETS_AB)["dice"] == pytest.approx(2 / 3)


def test_metrics_accuracy():
    # (TP + TN) / pixels = (1 + 2 + 4) / 8.
    assert compute(PREDICTIONS_AB, TARGETS_AB)["accuracy"] == pytest.approx(7 / 8)


def test_metrics_mean_image_iou_counts_empty_image_as_one():
    assert compute(PREDICTIONS_AB, TARGETS_AB)["mean_image_iou"] == pytest.approx((1 / 2 + 1) / 2)


def test_metrics_accumulated_differs_from_image_mean():
    # Image C: target 4 foreground pixels, 1 found: TP 1, FN 3, IoU 1/4.
    # Image D: target 1 foreground pixel, found exactly: TP 1, IoU 1.
    predictions = masks([[1, 0], [0, 0]], [[1, 0], [0, 0]])
    targets = masks([[1, 1], [1, 1]], [[1, 0], [0, 0]])
    values = compute(predictions, targets)
    assert values["iou"] == pytest.approx(2 / 5)
    assert values["mean_image_iou"] == pytest.approx((1 / 4 + 1) / 2)


def test_metrics_split_without_foreground():
    empty = torch.zeros(2, 3, 3, dtype=torch.long)
    values = compute(empty, empty)
    assert values["iou"] == 1.0
    assert values["dice"] == 1.0
    assert values["mean_image_iou"] == 1.0
    assert values["accuracy"] == 1.0


def test_metrics_false_foreground_on_empty_target():
    values = compute(torch.ones(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    assert values["iou"] == 0.0
    assert values["dice"] == 0.0
    assert values["mean_image_iou"] == 0.0
    assert values["accuracy"] == 0.0


def test_metrics_batches_equal_one_update():
    whole = SplitMetrics()
    whole.update(PREDICTIONS_AB, TARGETS_AB)
    split = SplitMetrics()
    split.update(PREDICTIONS_AB[:1], TARGETS_AB[:1])
    split.update(PREDICTIONS_AB[1:], TARGETS_AB[1:])
    assert split.compute() == whole.compute()
    assert split.images == 2


def test_metrics_compute_without_update():
    with pytest.raises(ValueError, match="no predictions"):
        SplitMetrics().compute()


def test_metrics_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(1, 2, 2\) and \(1, 2, 3\)"):
        SplitMetrics().update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))


def test_metric_keys():
    assert metric_key("val", "dice") == "val/dice"
    assert VAL_IOU == "val/iou"
    assert TEST_IOU == "test/iou"
    assert BEST_VAL_IOU == "best/val_iou"
