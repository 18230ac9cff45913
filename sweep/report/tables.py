"""The study's tables as numbers: cells beside the published values, block averages, and the cdw gain.

The study reports, per dataset, architecture and weight scheme (a block), the
test IoU of every encoder and APP setting, the average over those 12 cells,
and the gain of cdw weights over the predecessor's dedl weights on
dermatomyositis. These functions compute the same quantities from a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweep.report.collect import SEED, TEST_IOU_COLUMN
from sweep.report.reference import CELL_COLUMNS, PUBLISHED_IOU
from sweep.report.stats import CI_HIGH, CI_LOW, FLAGS, MEAN, STD, t_interval, valid_runs

DATASET, ARCH, ENCODER, APP, CLASS_WEIGHTS = CELL_COLUMNS
BLOCK = (DATASET, ARCH, CLASS_WEIGHTS)
# Display order of the study's values; values the study does not use follow, sorted.
ORDER = {
    ARCH: ("unet", "unetplusplus"),
    ENCODER: ("resnet18", "resnet34", "resnet50", "resnet101"),
    APP: ("none", "relu", "gelu"),
    CLASS_WEIGHTS: ("cdw", "median_frequency", "dedl"),
}
GAIN_SCHEME, GAIN_BASELINE = "cdw", "dedl"
PUBLISHED = "published"
DIFFERENCE = "difference"
CELLS = "cells"
PUBLISHED_CELLS = "published_cells"
SEEDS = "complete_seeds"
GAIN = "gain_points"
PUBLISHED_GAIN = "published_gain_points"


def study_layout_problem(cell_axes: Sequence[str], trials: pd.DataFrame) -> str | None:
    """Return why the study's layout does not apply to a sweep, or ``None`` when it does.

    The layout needs every cell axis to be one of dataset, arch, encoder, app
    and class_weights, and each of those five to be known for every run (as
    an axis tag, or as a param when it is constant).
    """
    extra = [axis for axis in cell_axes if axis not in CELL_COLUMNS]
    if extra:
        return f"the sweep varies {', '.join(extra)}, which the study's tables have no place for"
    missing = [column for column in CELL_COLUMNS if column not in trials or trials[column].isna().any()]
    if missing:
        return f"the runs do not record {', '.join(missing)}"
    return None


def attach_published(cells: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Add the published test IoU of each cell and the difference ``mean - published``.

    Cells the study has no number for get NaN in both columns.
    """
    columns = [column for column in CELL_COLUMNS if column in cells]
    lookup = published.drop_duplicates(subset=list(CELL_COLUMNS)).set_index(list(CELL_COLUMNS))[PUBLISHED_IOU]
    if len(columns) < len(CELL_COLUMNS):
        values = pd.Series(np.nan, index=cells.index)
    else:
        keys = pd.MultiIndex.from_frame(cells[list(CELL_COLUMNS)].astype(str))
        values = pd.Series(lookup.reindex(keys).to_numpy(), index=cells.index)
    return cells.assign(**{PUBLISHED: values, DIFFERENCE: cells[MEAN] - values})


def sort_cells(cells: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Sort rows by ``columns`` in the study's order of values; other values follow, numbers by value, then text."""

    def key(series: pd.Series) -> pd.Series:
        preferred = ORDER.get(series.name, ())
        rank = {value: index for index, value in enumerate(preferred)}
        return series.map(lambda value: (rank.get(value, len(preferred)), *_number_or_text(value)))

    present = [column for column in columns if column in cells]
    return cells.sort_values(present, key=key, kind="stable").reset_index(drop=True)


def _number_or_text(value: object) -> tuple[int, float, str]:
    # Values are strings from tags; numeric ones (seeds, weight ratios) sort by value, then text, then missing values.
    if value is None or pd.isna(value):
        return 2, 0.0, ""
    try:
        return 0, float(str(value)), ""
    except ValueError:
        return 1, 0.0, str(value)


def _complete_seed_means(cells: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Return each block's mean over its cells, per seed, for seeds every cell of the block has."""
    per_cell = valid_runs(trials).groupby([*BLOCK, ENCODER, APP, SEED])[TEST_IOU_COLUMN].mean()
    per_seed = per_cell.groupby(level=[*BLOCK, SEED]).agg(["mean", "size"])
    cell_counts = cells.groupby(list(BLOCK)).size().rename(CELLS)
    per_seed = per_seed.join(cell_counts, on=list(BLOCK))
    return per_seed.loc[per_seed["size"] == per_seed[CELLS], "mean"]


def block_averages(cells: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Average each block (dataset, arch, class_weights) over its encoders and APP settings.

    ``mean`` is the mean of the cell means, as the study computes it. Its
    confidence interval comes from the block mean of each seed that every
    cell of the block has, so it is missing when fewer than two seeds are
    complete. ``published`` is the mean of the published values of the same
    cells, so ours and the study's cover the same cells.

    Args:
        cells: Cell table with ``published``, from ``attach_published``.
        trials: One row per trial run.

    Returns:
        One row per block with ``cells``, ``mean``, ``complete_seeds``,
        ``std``, ``ci_low``, ``ci_high``, ``published_cells``, ``published``,
        ``difference`` and the flags of its cells combined with ``any``.
    """
    grouped = cells.groupby(list(BLOCK))
    averages = grouped.agg(
        **{
            CELLS: (MEAN, "size"),
            MEAN: (MEAN, "mean"),
            PUBLISHED_CELLS: (PUBLISHED, "count"),
            PUBLISHED: (PUBLISHED, "mean"),
        }
    )
    averages = averages.join(grouped[list(FLAGS)].any())
    seed_means = _complete_seed_means(cells, trials).groupby(level=list(BLOCK)).agg(["size", "std"])
    averages = averages.join(seed_means.rename(columns={"size": SEEDS, "std": STD}))
    averages[SEEDS] = averages[SEEDS].fillna(0).astype(int)
    averages[CI_LOW], averages[CI_HIGH] = t_interval(averages[MEAN], averages[STD], averages[SEEDS])
    averages[DIFFERENCE] = averages[MEAN] - averages[PUBLISHED]
    columns = [CELLS, MEAN, SEEDS, STD, CI_LOW, CI_HIGH, PUBLISHED_CELLS, PUBLISHED, DIFFERENCE, *FLAGS]
    return sort_cells(averages[columns].reset_index(), BLOCK)


def weight_gain(averages: pd.DataFrame, cells: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Compute the gain of cdw over dedl weights in IoU points (100 x IoU), per dataset and arch.

    The confidence interval pairs the two blocks' means seed by seed, over
    the seeds complete in both.

    Returns:
        One row per dataset and arch that has both schemes, with
        ``gain_points``, ``complete_seeds``, ``ci_low``, ``ci_high``,
        ``published_gain_points``, ``difference`` (ours minus published) and
        the flags of both blocks combined with ``any``. Empty when no
        dataset has both.
    """
    index = [DATASET, ARCH]
    scheme = averages[averages[CLASS_WEIGHTS] == GAIN_SCHEME].set_index(index)
    baseline = averages[averages[CLASS_WEIGHTS] == GAIN_BASELINE].set_index(index)
    common = scheme.index.intersection(baseline.index)
    columns = [*index, GAIN, SEEDS, CI_LOW, CI_HIGH, PUBLISHED_GAIN, DIFFERENCE, *FLAGS]
    if common.empty:
        return pd.DataFrame(columns=columns)

    gain = pd.DataFrame(index=common)
    gain[GAIN] = 100 * (scheme.loc[common, MEAN] - baseline.loc[common, MEAN])
    gain[PUBLISHED_GAIN] = 100 * (scheme.loc[common, PUBLISHED] - baseline.loc[common, PUBLISHED])
    gain[DIFFERENCE] = gain[GAIN] - gain[PUBLISHED_GAIN]
    for flag in FLAGS:
        gain[flag] = scheme.loc[common, flag] | baseline.loc[common, flag]

    seed_means = _complete_seed_means(cells, trials).unstack(CLASS_WEIGHTS)
    if {GAIN_SCHEME, GAIN_BASELINE} <= set(seed_means.columns):
        differences = (
            (100 * (seed_means[GAIN_SCHEME] - seed_means[GAIN_BASELINE]))
            .dropna()
            .groupby(level=index)
            .agg(["size", "mean", "std"])
        )
        differences = differences.reindex(common)
        gain[SEEDS] = differences["size"].fillna(0).astype(int)
        # Centred on the gain of the cell means, like the block averages' intervals.
        gain[CI_LOW], gain[CI_HIGH] = t_interval(gain[GAIN], differences["std"], gain[SEEDS])
    else:
        gain[SEEDS], gain[CI_LOW], gain[CI_HIGH] = 0, np.nan, np.nan
    return sort_cells(gain.reset_index()[columns], index)
