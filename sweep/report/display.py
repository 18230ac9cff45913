"""Turn the report's numeric tables into string tables for Markdown and HTML.

Test IoU is shown with 4 decimals, differences in IoU with a sign, and
p-values with 3 significant digits. A flagged cell carries markers such as
``(s)`` after its value; ``FLAG_LEGEND`` explains them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweep.report.stats import (
    CI_HIGH,
    CI_LOW,
    EXPECTED,
    FAILED,
    FEWER_SEEDS,
    FIRST,
    FLAGS,
    MEAN,
    MEAN_DIFFERENCE,
    N_PAIRS,
    RUNS,
    SECOND,
    STD,
    STOPPED_EARLY,
    T_PVALUE,
    UNPAIRED,
    WILCOXON_PVALUE,
    N,
)
from sweep.report.tables import (
    APP,
    BLOCK,
    CELLS,
    DIFFERENCE,
    ENCODER,
    GAIN,
    GAIN_BASELINE,
    GAIN_SCHEME,
    ORDER,
    PUBLISHED,
    PUBLISHED_CELLS,
    PUBLISHED_GAIN,
    SEEDS,
    sort_cells,
)

MISSING = "n/a"
FLAG_MARKERS = {FEWER_SEEDS: "s", FAILED: "f", STOPPED_EARLY: "e"}


def flag_legend(expected_seeds: int) -> str:
    """Return the sentence that explains the flag markers."""
    return (
        f"Flags: (s) fewer seeds with a test IoU than the {expected_seeds} expected; "
        "(f) a trial failed, was killed, or finished without a test IoU, and is left out of the mean; "
        "(e) a scheduler stopped a trial early. Cells with n < 2 have no standard deviation or confidence interval."
    )


def format_iou(value: float) -> str:
    """Format an IoU with 4 decimals, or ``n/a``."""
    return MISSING if pd.isna(value) else f"{value:.4f}"


def format_signed(value: float, decimals: int = 4) -> str:
    """Format a difference with its sign, or ``n/a``."""
    return MISSING if pd.isna(value) else f"{value:+.{decimals}f}"


def format_pvalue(value: float) -> str:
    """Format a p-value with 3 significant digits, or ``n/a``."""
    return MISSING if pd.isna(value) else f"{value:.3g}"


def format_interval(low: float, high: float, decimals: int = 4) -> str:
    """Format a confidence interval as ``[low, high]``, or ``n/a``."""
    if pd.isna(low) or pd.isna(high):
        return MISSING
    return f"[{low:.{decimals}f}, {high:.{decimals}f}]"


def flag_markers(row: pd.Series) -> str:
    """Return the markers of a row's flags, e.g. ``(s)(f)``, or an empty string."""
    return "".join(f"({marker})" for flag, marker in FLAG_MARKERS.items() if bool(row.get(flag, False)))


def _with_markers(text: str, row: pd.Series) -> str:
    markers = flag_markers(row)
    return f"{text} {markers}" if markers else text


def _mean_with_margin(row: pd.Series, decimals: int = 4) -> str:
    """Format ``mean ± half-width of the 95% CI``; the interval is symmetric, so this is exact."""
    if pd.isna(row[MEAN]):
        return MISSING
    if pd.isna(row[CI_HIGH]):
        return f"{row[MEAN]:.{decimals}f}"
    return f"{row[MEAN]:.{decimals}f} ± {row[CI_HIGH] - row[MEAN]:.{decimals}f}"


def cell_table(cells: pd.DataFrame, cell_axes: Sequence[str]) -> pd.DataFrame:
    """Format the per-cell table: axes, seeds, mean, std, 95% CI, published value and flags."""
    rows = []
    for _, cell in cells.iterrows():
        row = {axis: cell[axis] for axis in cell_axes}
        row.update(
            {
                "runs": str(cell[RUNS]),
                "seeds (n/expected)": f"{cell[N]}/{cell[EXPECTED]}",
                "mean test IoU": _with_markers(format_iou(cell[MEAN]), cell),
                "std": format_iou(cell[STD]),
                "95% CI": format_interval(cell[CI_LOW], cell[CI_HIGH]),
            }
        )
        if PUBLISHED in cell:
            row["published"] = format_iou(cell[PUBLISHED])
            row["difference"] = format_signed(cell[DIFFERENCE])
        rows.append(row)
    return pd.DataFrame(rows)


def layout_tables(cells: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Lay out the study's tables: one per dataset, arch and weight scheme, encoders as rows.

    Each APP setting has three columns: ours (mean ± CI half-width, with flag
    markers), the published value, and the difference ours minus published.

    Returns:
        ``(title, table)`` pairs in the study's order.
    """
    tables = []
    ordered = sort_cells(cells, [*BLOCK, ENCODER, APP])
    for key, block in ordered.groupby(list(BLOCK), sort=False):
        apps = [app for app in dict.fromkeys(block[APP])]
        rows = []
        for encoder, encoder_cells in block.groupby(ENCODER, sort=False):
            row = {"encoder": encoder}
            by_app = encoder_cells.set_index(APP)
            for app in apps:
                if app in by_app.index:
                    cell = by_app.loc[app]
                    row[f"{app}: ours"] = _with_markers(_mean_with_margin(cell), cell)
                    row[f"{app}: published"] = format_iou(cell[PUBLISHED])
                    row[f"{app}: difference"] = format_signed(cell[DIFFERENCE])
                else:
                    row[f"{app}: ours"] = row[f"{app}: published"] = row[f"{app}: difference"] = MISSING
            rows.append(row)
        tables.append((", ".join(str(part) for part in key), pd.DataFrame(rows)))
    return tables


def averages_table(averages: pd.DataFrame) -> pd.DataFrame:
    """Format the averages over encoders and APP settings, one row per block."""
    rows = []
    for _, block in averages.iterrows():
        row = {column: block[column] for column in BLOCK}
        row.update(
            {
                "cells": str(block[CELLS]),
                "mean test IoU": _with_markers(format_iou(block[MEAN]), block),
                "complete seeds": str(block[SEEDS]),
                "95% CI": format_interval(block[CI_LOW], block[CI_HIGH]),
                "published (cells)": f"{format_iou(block[PUBLISHED])} ({block[PUBLISHED_CELLS]})",
                "difference": format_signed(block[DIFFERENCE]),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def gain_table(gain: pd.DataFrame) -> pd.DataFrame:
    """Format the gain of cdw over dedl in IoU points."""
    rows = []
    for _, row in gain.iterrows():
        rows.append(
            {
                "dataset": row["dataset"],
                "arch": row["arch"],
                f"{GAIN_SCHEME} - {GAIN_BASELINE} (points)": _with_markers(format_signed(row[GAIN], 2), row),
                "complete seeds": str(row[SEEDS]),
                "95% CI": format_interval(row[CI_LOW], row[CI_HIGH], 2),
                "published (points)": format_signed(row[PUBLISHED_GAIN], 2),
                "difference (points)": format_signed(row[DIFFERENCE], 2),
            }
        )
    return pd.DataFrame(rows)


def paired_table(comparisons: pd.DataFrame, group_axes: Sequence[str]) -> pd.DataFrame:
    """Format paired comparisons: the difference first - second with its CI and both p-values."""
    ordered = sort_cells(comparisons, list(group_axes)) if len(comparisons) else comparisons
    rows = []
    for _, row in ordered.iterrows():
        values = {axis: row[axis] for axis in group_axes}
        values.update(
            {
                "comparison": f"{row[FIRST]} - {row[SECOND]}",
                "pairs": str(row[N_PAIRS]),
                "mean difference": format_signed(row[MEAN_DIFFERENCE]),
                "95% CI": format_interval(row[CI_LOW], row[CI_HIGH]),
                "paired t p": format_pvalue(row[T_PVALUE]),
                "Wilcoxon p": format_pvalue(row[WILCOXON_PVALUE]),
                "unpaired runs": str(row[UNPAIRED]),
            }
        )
        rows.append(values)
    return pd.DataFrame(rows)


def preferred_order(column: str) -> tuple[str, ...]:
    """Return the study's display order of a setting's values (empty for other settings)."""
    return ORDER.get(column, ())


def any_flagged(frame: pd.DataFrame) -> bool:
    """Return whether any row of ``frame`` has a flag set."""
    present = [flag for flag in FLAGS if flag in frame]
    return bool(np.any(frame[present].to_numpy())) if present else False
