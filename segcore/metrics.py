"""Segmentation metrics over a whole split.

The study's metric is the foreground IoU accumulated over the split: the true
positive, false positive and false negative pixels of every image are summed
first, then ``IoU = TP / (TP + FP + FN)``. Per-pixel counts come from
``segmentation_models_pytorch.metrics``.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import Tensor

from segcore.metric_keys import (  # noqa: F401 - re-exported: callers import the keys from here too.
    BEST_EPOCH,
    BEST_VAL_IOU,
    EPOCH,
    LEARNING_RATE,
    SPLIT_METRICS,
    TEST_IOU,
    TRAIN_CE,
    TRAIN_LOSS,
    TRAIN_MSE,
    VAL_IOU,
    VAL_LOSS,
    metric_key,
)


class SplitMetrics:
    """Accumulates per-image confusion counts over a split.

    ``update`` takes predictions and targets ``(B, H, W)`` with values {0, 1};
    ``compute`` returns:

    - ``iou``: foreground TP / (TP + FP + FN) over all pixels of the split;
    - ``dice``: 2 TP / (2 TP + FP + FN) over all pixels;
    - ``accuracy``: (TP + TN) / all pixels;
    - ``mean_image_iou``: the mean over images of each image's foreground IoU.

    An image (or split) with no foreground in either prediction or target has
    IoU and Dice 1, since prediction and target agree.
    """

    def __init__(self) -> None:
        self._counts: list[Tensor] = []

    def update(self, predictions: Tensor, targets: Tensor) -> None:
        """Add the TP, FP, FN and TN pixel counts of each image in a batch."""
        if predictions.shape != targets.shape or predictions.dim() != 3:
            raise ValueError(
                f"predictions and targets must both be (B, H, W), got {tuple(predictions.shape)} and "
                f"{tuple(targets.shape)}"
            )
        tp, fp, fn, tn = smp.metrics.get_stats(
            predictions.unsqueeze(1).long(), targets.unsqueeze(1).long(), mode="binary"
        )
        self._counts.append(torch.cat([tp, fp, fn, tn], dim=1).cpu())

    @property
    def images(self) -> int:
        """Number of images seen."""
        return sum(counts.shape[0] for counts in self._counts)

    def compute(self) -> dict[str, float]:
        """Return ``iou``, ``dice``, ``accuracy`` and ``mean_image_iou`` over every image added so far.

        Raises:
            ValueError: when no image was added.
        """
        if not self._counts:
            raise ValueError("no predictions were added; call update() with at least one batch before compute()")
        # Counts are summed here rather than with smp's "micro" reduction, because
        # smp 0.6 ignores zero_division for "micro" and returns NaN for a split
        # without foreground in prediction and target.
        counts = torch.cat(self._counts).double()
        tp, fp, fn, tn = counts.unbind(dim=1)
        return {
            "iou": _ratio(tp.sum(), tp.sum() + fp.sum() + fn.sum()).item(),
            "dice": _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()).item(),
            "accuracy": _ratio(tp.sum() + tn.sum(), counts.sum()).item(),
            "mean_image_iou": _ratio(tp, tp + fp + fn).mean().item(),
        }


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Return ``numerator / denominator``, with 1 where both are 0 (prediction and target agree on no foreground)."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.ones_like(numerator))
