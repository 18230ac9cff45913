"""The study's published numbers, shipped as package data in ``sweep/reference``.

``paper_results.csv`` contains the test IoU (mean of 5 seeds) of every cell of the
study's grid; ``sweep/reference/README.md`` names the source. Its columns
``architecture`` and ``weights`` are renamed to the sweep's setting names
``arch`` and ``class_weights``, so the frame joins the report's cells directly.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

RESULTS_FILE = "paper_results.csv"
CE_WEIGHTS_FILE = "paper_ce_weights.csv"
PUBLISHED_IOU = "test_iou"
# Columns of the published tables named as the sweep's settings.
COLUMN_NAMES = {"architecture": "arch", "weights": "class_weights", "test_iou_mean_of_5_seeds": PUBLISHED_IOU}
CELL_COLUMNS = ("dataset", "arch", "encoder", "app", "class_weights")


def _read_reference(name: str) -> pd.DataFrame:
    with resources.files("sweep").joinpath("reference", name).open("r", encoding="utf-8") as stream:
        return pd.read_csv(stream, dtype=str)


def load_published_results() -> pd.DataFrame:
    """Load the study's test IoU per cell.

    Returns:
        One row per cell with the string columns ``table``, ``dataset``,
        ``arch``, ``encoder``, ``app``, ``class_weights`` and the float column
        ``test_iou``.
    """
    frame = _read_reference(RESULTS_FILE).rename(columns=COLUMN_NAMES)
    frame[PUBLISHED_IOU] = frame[PUBLISHED_IOU].astype(float)
    return frame


def load_published_class_weights() -> pd.DataFrame:
    """Load the study's cross-entropy class weights (its Table 11).

    Returns:
        One row per dataset and scheme with the string columns ``dataset`` and
        ``class_weights`` and the float columns ``background`` and ``foreground``.
    """
    frame = _read_reference(CE_WEIGHTS_FILE).rename(columns=COLUMN_NAMES)
    frame[["background", "foreground"]] = frame[["background", "foreground"]].astype(float)
    return frame
