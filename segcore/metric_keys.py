"""Metric keys shared by the training loop, the sweep and the report.

Kept apart from ``segcore.metrics`` so that readers of the keys (the report)
do not import PyTorch.
"""

EPOCH = "epoch"
LEARNING_RATE = "lr"
TRAIN_LOSS = "train/loss"
TRAIN_CE = "train/ce"
TRAIN_MSE = "train/app_mse"
VAL_LOSS = "val/loss"
BEST_EPOCH = "best/epoch"
BEST_VAL_IOU = "best/val_iou"
SPLIT_METRICS = ("iou", "dice", "accuracy", "mean_image_iou")


def metric_key(split: str, name: str) -> str:
    """Return the key of metric ``name`` on ``split``, e.g. ``val/iou``."""
    return f"{split}/{name}"


VAL_IOU = metric_key("val", "iou")
TEST_IOU = metric_key("test", "iou")
