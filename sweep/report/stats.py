"""Statistics over seeds: per-cell means with Student-t 95% confidence intervals, and paired tests.

A cell is one configuration without its seed. Only finished runs with a test
IoU enter a mean. Runs that failed, were killed or finished without a test
IoU are counted and flagged, never averaged in.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sweep.report.collect import FAILED_STATUSES, SEED, STATUS, STOPPED_EARLY, TEST_IOU_COLUMN

CONFIDENCE = 0.95
# Columns of the cell table.
RUNS = "runs"
N = "n"
EXPECTED = "expected_seeds"
MEAN = "mean"
STD = "std"
CI_LOW = "ci_low"
CI_HIGH = "ci_high"
# Flags of the cell table, as boolean columns.
FEWER_SEEDS = "fewer_seeds"
FAILED = "failed"
FLAGS = (FEWER_SEEDS, FAILED, STOPPED_EARLY)
# Columns of the paired comparisons.
FIRST = "first"
SECOND = "second"
FACTOR = "factor"
N_PAIRS = "n_pairs"
MEAN_DIFFERENCE = "mean_difference"
T_STATISTIC = "t_statistic"
T_PVALUE = "t_pvalue"
WILCOXON_STATISTIC = "wilcoxon_statistic"
WILCOXON_PVALUE = "wilcoxon_pvalue"
UNPAIRED = "unpaired_runs"


def valid_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Return the runs that enter means: not failed or killed, and with a test IoU."""
    return trials[~trials[STATUS].isin(FAILED_STATUSES) & trials[TEST_IOU_COLUMN].notna()]


def failed_runs(trials: pd.DataFrame) -> pd.Series:
    """Return a boolean mask of runs that failed, were killed, or finished without a test IoU.

    A run that a scheduler stopped early has no test IoU by design; it is
    flagged as stopped early instead.
    """
    return trials[STATUS].isin(FAILED_STATUSES) | (trials[TEST_IOU_COLUMN].isna() & ~trials[STOPPED_EARLY])


def t_interval(mean: pd.Series | float, std: pd.Series | float, n: pd.Series | float) -> tuple:
    """Return the Student-t confidence interval ``mean ± t(0.975, n - 1) * std / sqrt(n)``.

    Args:
        mean: Sample means.
        std: Sample standard deviations (``ddof=1``).
        n: Sample sizes; sizes below 2 give NaN bounds.

    Returns:
        ``(low, high)``, of the same shape as the arguments.
    """
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        degrees = np.where(n >= 2, n - 1, np.nan)
        half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, degrees) * np.asarray(std, dtype=float) / np.sqrt(n)
    return np.asarray(mean, dtype=float) - half_width, np.asarray(mean, dtype=float) + half_width


def expected_seed_count(trials: pd.DataFrame, declared: int) -> int:
    """Return how many seeds each cell should have.

    That is the larger of the count the space declares and the number of
    distinct seeds in the sweep, because ``--grid seed=[...]`` can run more
    seeds than the space declares.
    """
    return max(declared, int(trials[SEED].nunique())) if SEED in trials else declared


def summarize_cells(trials: pd.DataFrame, cell_axes: Sequence[str], expected_seeds: int) -> pd.DataFrame:
    """Summarize the test IoU of every cell over its seeds.

    Args:
        trials: One row per trial run, from ``collect_trials``.
        cell_axes: Columns that define a cell (every axis but the seed).
        expected_seeds: Seeds each cell should have.

    Returns:
        One row per cell, sorted by the cell axes, with the axis columns and
        ``runs`` (trial runs found), ``n`` (runs with a test IoU that entered
        the mean), ``expected_seeds``, ``mean``, ``std`` (ddof=1), ``ci_low``,
        ``ci_high`` (95% Student t, clipped to [0, 1], NaN for n < 2) and the boolean flags
        ``fewer_seeds`` (n below the expected seeds), ``failed`` (a run
        failed, was killed or has no test IoU) and ``stopped_early``.
    """
    axes = list(cell_axes)
    if not axes:
        # A sweep whose only axis is the seed has one cell.
        trials = trials.assign(cell="all")
        axes = ["cell"]
    flags = trials.assign(**{FAILED: failed_runs(trials)}).groupby(axes, sort=True, dropna=False)
    cells = flags.agg(**{RUNS: (STATUS, "size"), FAILED: (FAILED, "any"), STOPPED_EARLY: (STOPPED_EARLY, "any")})
    values = valid_runs(trials).groupby(axes, sort=True, dropna=False)[TEST_IOU_COLUMN].agg(["count", "mean", "std"])
    cells = cells.join(values.rename(columns={"count": N, "mean": MEAN, "std": STD}), how="left")
    cells[N] = cells[N].fillna(0).astype(int)
    cells[EXPECTED] = expected_seeds
    low, high = t_interval(cells[MEAN], cells[STD], cells[N])
    # IoU lies in [0, 1]; a t-interval of few seeds can reach past either end.
    cells[CI_LOW], cells[CI_HIGH] = np.clip(low, 0.0, None), np.clip(high, None, 1.0)
    cells[FEWER_SEEDS] = cells[N] < expected_seeds
    columns = [RUNS, N, EXPECTED, MEAN, STD, CI_LOW, CI_HIGH, *FLAGS]
    return cells[columns].reset_index()


def is_flagged(frame: pd.DataFrame) -> pd.Series:
    """Return a boolean mask of rows with any flag set."""
    return frame[list(FLAGS)].any(axis=1)


def ordered_levels(values: Sequence[str], preferred: Sequence[str] = ()) -> list[str]:
    """Return the distinct values, those in ``preferred`` first and in its order, then the rest sorted."""
    distinct = set(values)
    return [value for value in preferred if value in distinct] + sorted(distinct - set(preferred))


def paired_comparisons(
    trials: pd.DataFrame, factor: str, group_axes: Sequence[str], pair_axes: Sequence[str], order: Sequence[str] = ()
) -> pd.DataFrame:
    """Compare the levels of ``factor`` on runs paired across seeds.

    Two runs form a pair when they agree on ``group_axes``, ``pair_axes`` and
    the seed and differ only in ``factor``. For every group and every two
    levels ``first`` and ``second`` (in ``order``), the differences
    ``first - second`` of the paired test IoUs are summarized.

    Args:
        trials: One row per trial run, from ``collect_trials``.
        factor: Setting whose levels are compared, e.g. ``class_weights``.
        group_axes: Settings reported per row, e.g. dataset, arch and encoder.
        pair_axes: Further settings a pair must share, besides the seed.
        order: Preferred order of the levels; a positive difference means
            the earlier level scored higher.

    Returns:
        One row per group and pair of levels. Its columns are the group
        columns, ``factor``, ``first``, ``second``, ``n_pairs``,
        ``mean_difference``, ``std``, ``ci_low`` and ``ci_high`` (95% Student
        t), ``t_statistic`` and ``t_pvalue`` (paired t-test),
        ``wilcoxon_statistic`` and ``wilcoxon_pvalue`` (two-sided signed-rank
        test), and ``unpaired_runs`` (valid runs of the two levels without a
        partner). Fewer than two pairs give NaN statistics.
    """
    group_axes, pair_axes = list(group_axes), list(pair_axes)
    runs = valid_runs(trials)
    table = runs.pivot_table(
        index=[*group_axes, *pair_axes, SEED], columns=factor, values=TEST_IOU_COLUMN, aggfunc="mean"
    )
    levels = ordered_levels(list(table.columns), order)
    rows = []
    groups = table.groupby(level=group_axes, sort=True) if group_axes else [((), table)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for first, second in itertools.combinations(levels, 2):
            both = group[[first, second]].dropna()
            if both.empty:
                continue
            unpaired = int(group[[first, second]].notna().sum(axis=1).eq(1).sum())
            row = dict(zip(group_axes, key, strict=True))
            row.update({FACTOR: factor, FIRST: first, SECOND: second, UNPAIRED: unpaired})
            row.update(_paired_statistics(both[first].to_numpy(), both[second].to_numpy()))
            rows.append(row)
    columns = [
        *group_axes,
        FACTOR,
        FIRST,
        SECOND,
        N_PAIRS,
        MEAN_DIFFERENCE,
        STD,
        CI_LOW,
        CI_HIGH,
        T_STATISTIC,
        T_PVALUE,
        WILCOXON_STATISTIC,
        WILCOXON_PVALUE,
        UNPAIRED,
    ]
    return pd.DataFrame(rows, columns=columns)


def _paired_statistics(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    differences = first - second
    n = len(differences)
    mean = float(np.mean(differences))
    std = float(np.std(differences, ddof=1)) if n >= 2 else np.nan
    low, high = t_interval(mean, std, n)
    result = {N_PAIRS: n, MEAN_DIFFERENCE: mean, STD: std, CI_LOW: float(low), CI_HIGH: float(high)}
    result.update({T_STATISTIC: np.nan, T_PVALUE: np.nan, WILCOXON_STATISTIC: np.nan, WILCOXON_PVALUE: np.nan})
    if n < 2:
        return result
    with warnings.catch_warnings():
        # Equal or nearly constant differences have (almost) no variance. SciPy then warns about precision
        # loss and returns NaN (all differences 0) or an infinite t, which the table shows as they are.
        warnings.simplefilter("ignore", RuntimeWarning)
        t_test = stats.ttest_rel(first, second)
    result[T_STATISTIC], result[T_PVALUE] = float(t_test.statistic), float(t_test.pvalue)
    # The signed-rank test drops zero differences, so it is undefined when all are zero.
    if np.any(differences != 0):
        signed_rank = stats.wilcoxon(differences)
        result[WILCOXON_STATISTIC], result[WILCOXON_PVALUE] = float(signed_rank.statistic), float(signed_rank.pvalue)
    return result
