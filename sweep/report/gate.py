"""The regression gate: compare each cell's mean test IoU with a baseline file.

A baseline CSV has one column per cell axis, named as the axes of the sweep
(every axis but the seed, e.g. ``dataset,arch,app,class_weights``), and a
column ``test_iou``. A cell fails when it is missing from the sweep, has no
run with a test IoU, or its mean is below ``test_iou - tolerance``. The
report writes ``baseline.csv`` in this format from its own cell means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sweep.report.errors import ReportError
from sweep.report.stats import MEAN, N

BASELINE_IOU = "test_iou"
MISSING_CELL = "missing"
BELOW_BASELINE = "below baseline"


@dataclass(frozen=True)
class GateFailure:
    """One baseline cell that failed the gate.

    Attributes:
        cell: Axis values of the cell.
        baseline: Baseline test IoU.
        mean: Mean test IoU of the sweep, or ``None`` when the cell is missing.
        reason: ``missing`` or ``below baseline``.
    """

    cell: dict[str, str]
    baseline: float
    mean: float | None
    reason: str

    def describe(self, tolerance: float) -> str:
        """Return one line naming the cell and why it failed."""
        name = ", ".join(f"{axis}={value}" for axis, value in self.cell.items())
        if self.reason == MISSING_CELL:
            return f"{name}: missing (no run with a test IoU; baseline {self.baseline:.4f})"
        return f"{name}: mean {self.mean:.4f} < baseline {self.baseline:.4f} - tolerance {tolerance:g}"


def read_baseline(path: Path, cell_axes: Sequence[str]) -> pd.DataFrame:
    """Read and validate a baseline CSV.

    Args:
        path: The CSV file.
        cell_axes: Axes of the sweep's cells; the file must have exactly
            these columns plus ``test_iou``.

    Returns:
        The baseline with string axis columns and a float ``test_iou``.

    Raises:
        ReportError: for a missing or unreadable file, wrong columns, or a
            ``test_iou`` that is not a number.
    """
    if not path.is_file():
        raise ReportError(f"baseline file {path} not found; check the path given to --check")
    try:
        baseline = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ReportError(f"baseline file {path} is not a readable CSV: {error}") from error
    expected = {*cell_axes, BASELINE_IOU}
    if set(baseline.columns) != expected:
        raise ReportError(
            f"baseline file {path} has the columns {', '.join(baseline.columns)}; expected {', '.join([*cell_axes, BASELINE_IOU])} "
            "(one column per cell axis of the sweep, plus test_iou)"
        )
    values = pd.to_numeric(baseline[BASELINE_IOU], errors="coerce")
    invalid = baseline.loc[values.isna(), BASELINE_IOU]
    if not invalid.empty:
        raise ReportError(
            f"baseline file {path}: test_iou {invalid.iloc[0]!r} on data row {invalid.index[0] + 1} is not a number"
        )
    return baseline.assign(**{BASELINE_IOU: values})


def check_cells(
    cells: pd.DataFrame, baseline: pd.DataFrame, cell_axes: Sequence[str], tolerance: float
) -> list[GateFailure]:
    """Return the baseline cells that the sweep misses or falls below.

    Args:
        cells: Cell table from ``summarize_cells``.
        baseline: Baseline from ``read_baseline``.
        cell_axes: Axes of the cells.
        tolerance: Allowed drop of a mean below its baseline, in IoU.

    Returns:
        The failures, in the baseline's row order; empty when the gate passes.
    """
    axes = list(cell_axes)
    # Tags and params are strings, so cells are matched on the string form of their axis values.
    ours = {tuple(str(cell[axis]) for axis in axes): (int(cell[N]), float(cell[MEAN])) for _, cell in cells.iterrows()}
    failures = []
    for _, row in baseline.iterrows():
        key = tuple(str(row[axis]) for axis in axes)
        cell = dict(zip(axes, key, strict=True))
        count, mean = ours.get(key, (0, float("nan")))
        if count == 0:
            failures.append(GateFailure(cell, float(row[BASELINE_IOU]), None, MISSING_CELL))
        elif mean < row[BASELINE_IOU] - tolerance:
            failures.append(GateFailure(cell, float(row[BASELINE_IOU]), mean, BELOW_BASELINE))
    return failures


def baseline_from_cells(cells: pd.DataFrame, cell_axes: Sequence[str]) -> pd.DataFrame:
    """Return a baseline frame (cell axes and ``test_iou``) from the cells that have a mean."""
    frame = cells.loc[cells[MEAN].notna(), [*cell_axes, MEAN]]
    return frame.rename(columns={MEAN: BASELINE_IOU})
