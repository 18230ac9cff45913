"""PNG figures of a sweep: test IoU with 95% CI error bars, a heatmap per dataset, validation curves.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``),
which renders PNG files through the Agg backend without touching pyplot's
global state, so no display is needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sweep.report.collect import EPOCH_COLUMN, RUN_ID, VALUE_COLUMN
from sweep.report.display import flag_markers
from sweep.report.stats import CI_HIGH, CI_LOW, FLAGS, MEAN
from sweep.report.tables import APP, ARCH, CLASS_WEIGHTS, DATASET, ENCODER, ORDER, PUBLISHED, sort_cells

DPI = 100
# Beyond these sizes a figure is unreadable; the figure states what it leaves out.
MAX_BAR_CELLS = 40
MAX_HEATMAP_ROWS = 60
MAX_ANNOTATED_HEATMAP_CELLS = 400


def file_name(prefix: str, value: str) -> str:
    """Return ``<prefix>_<value>.png`` with characters other than letters, digits, ``_.-`` replaced."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(value))}.png"


def cell_label(cell: pd.Series, axes: Sequence[str]) -> str:
    """Return a short label of a cell, e.g. ``unet, resnet18, none``."""
    return ", ".join(str(cell[axis]) for axis in axes) or "all runs"


def _datasets(frame: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    if DATASET not in frame:
        return [(None, frame)]
    return [(str(name), group) for name, group in frame.groupby(DATASET, sort=True)]


def _save(figure: Figure, path: Path) -> Path:
    # Constrained layout fits the labels already, and bbox_inches="tight" would cost an extra draw per figure.
    figure.savefig(path, dpi=DPI)
    return path


def _ordered(values: pd.Series, column: str) -> list[str]:
    preferred = ORDER.get(column, ())
    distinct = list(dict.fromkeys(values))
    return [value for value in preferred if value in distinct] + sorted(set(distinct) - set(preferred))


def plot_study_iou(cells: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Plot, per dataset, the test IoU of every encoder and APP setting with 95% CI error bars.

    One panel per architecture (rows) and weight scheme (columns); grey
    crosses mark the published values; hollow markers are flagged cells.

    Args:
        cells: Cell table in the study's layout, with ``published``.
        out_dir: Folder of the PNG files.

    Returns:
        The files written, ``iou_<dataset>.png``.
    """
    paths = []
    for dataset, group in _datasets(cells):
        archs, schemes = _ordered(group[ARCH], ARCH), _ordered(group[CLASS_WEIGHTS], CLASS_WEIGHTS)
        encoders, apps = _ordered(group[ENCODER], ENCODER), _ordered(group[APP], APP)
        figure = Figure(figsize=(1.0 + 3.2 * len(schemes), 0.8 + 2.8 * len(archs)), layout="constrained")
        axes = figure.subplots(len(archs), len(schemes), squeeze=False, sharey=True)
        width = 0.8 / max(len(apps), 1)
        published_labelled = False
        for row, arch in enumerate(archs):
            for column, scheme in enumerate(schemes):
                axis = axes[row][column]
                panel = group[(group[ARCH] == arch) & (group[CLASS_WEIGHTS] == scheme)]
                for index, app in enumerate(apps):
                    data = panel[panel[APP] == app].set_index(ENCODER).reindex(encoders)
                    x = np.arange(len(encoders)) - 0.4 + width * (index + 0.5)
                    error = np.vstack([data[MEAN] - data[CI_LOW], data[CI_HIGH] - data[MEAN]])
                    flagged = data[list(FLAGS)].fillna(False).astype(bool).any(axis=1).to_numpy()
                    line = axis.errorbar(
                        x, data[MEAN], yerr=error, fmt="o", capsize=3, label=app if row == column == 0 else None
                    )
                    if flagged.any():
                        axis.scatter(
                            x[flagged],
                            data[MEAN][flagged],
                            s=60,
                            facecolors="white",
                            edgecolors=line[0].get_color(),
                            zorder=3,
                        )
                    if data[PUBLISHED].notna().any():
                        axis.scatter(
                            x,
                            data[PUBLISHED],
                            marker="x",
                            color="grey",
                            zorder=4,
                            label="published" if not published_labelled else None,
                        )
                        published_labelled = True
                if panel.empty:
                    axis.text(
                        0.5, 0.5, "not in this sweep", ha="center", va="center", transform=axis.transAxes, color="grey"
                    )
                axis.set_xticks(np.arange(len(encoders)), encoders, rotation=30)
                axis.set_xlim(-0.5, len(encoders) - 0.5)
                axis.set_title(f"{arch}, {scheme}", fontsize=9)
                axis.grid(axis="y", alpha=0.3)
            axes[row][0].set_ylabel("test IoU")
        figure.suptitle(f"{dataset or 'all datasets'}: test IoU, mean and 95% CI over seeds (hollow: flagged)")
        figure.legend(loc="outside lower center", ncol=len(apps) + 1, title="APP")
        paths.append(_save(figure, out_dir / file_name("iou", dataset or "all")))
    return paths


def plot_cell_iou(cells: pd.DataFrame, cell_axes: Sequence[str], out_dir: Path) -> Path:
    """Plot the test IoU of each cell with 95% CI error bars, for sweeps outside the study's layout.

    Only the ``MAX_BAR_CELLS`` cells with the highest mean are drawn; the
    title states how many cells there are.

    Returns:
        The file written, ``iou_cells.png``.
    """
    top_cells = cells.sort_values(MEAN, ascending=False, na_position="last").head(MAX_BAR_CELLS).iloc[::-1]
    figure = Figure(figsize=(8, 1.0 + 0.3 * len(top_cells)), layout="constrained")
    axis = figure.subplots()
    y = np.arange(len(top_cells))
    error = np.vstack([top_cells[MEAN] - top_cells[CI_LOW], top_cells[CI_HIGH] - top_cells[MEAN]])
    axis.errorbar(top_cells[MEAN], y, xerr=error, fmt="o", capsize=3)
    labels = [f"{cell_label(cell, cell_axes)} {flag_markers(cell)}".strip() for _, cell in top_cells.iterrows()]
    axis.set_yticks(y, labels, fontsize=8)
    axis.set_xlabel("test IoU (mean and 95% CI over seeds)")
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(f"{len(top_cells)} of {len(cells)} cells, highest mean first")
    return _save(figure, out_dir / "iou_cells.png")


def plot_heatmaps(cells: pd.DataFrame, cell_axes: Sequence[str], out_dir: Path) -> list[Path]:
    """Draw one heatmap of mean test IoU per dataset.

    With an APP axis the columns are the APP settings and the rows the other
    axes; otherwise each row is a cell. At most ``MAX_HEATMAP_ROWS`` rows
    (highest mean first) are drawn, as the title states. Flag markers follow
    the values.

    Returns:
        The files written, ``heatmap_<dataset>.png``.
    """
    paths = []
    column_axis = APP if APP in cell_axes else None
    row_axes = [axis for axis in cell_axes if axis not in (DATASET, column_axis)]
    for dataset, group in _datasets(cells):
        group = sort_cells(group, [*row_axes, *([column_axis] if column_axis else [])])
        group = group.assign(row=[cell_label(cell, row_axes) for _, cell in group.iterrows()])
        columns = _ordered(group[column_axis], column_axis) if column_axis else ["test IoU"]
        group = group.assign(column=group[column_axis] if column_axis else "test IoU")
        means = group.pivot_table(index="row", columns="column", values=MEAN, aggfunc="first", sort=False, dropna=False)
        means = means.reindex(index=list(dict.fromkeys(group["row"])), columns=columns)
        total = len(means)
        if total > MAX_HEATMAP_ROWS:
            means = means.loc[
                means.max(axis=1).sort_values(ascending=False, na_position="last").index[:MAX_HEATMAP_ROWS]
            ]
        markers = group.set_index(["row", "column"]).apply(flag_markers, axis=1)

        figure = Figure(figsize=(2.5 + 1.1 * len(columns), 1.2 + 0.32 * len(means)), layout="constrained")
        axis = figure.subplots()
        image = axis.imshow(means.to_numpy(dtype=float), aspect="auto", cmap="viridis")
        # Dark text on the bright end of viridis, white text elsewhere.
        bright = image.norm(means.to_numpy(dtype=float)) > 0.6
        axis.set_xticks(np.arange(len(columns)), columns)
        axis.set_yticks(np.arange(len(means)), means.index, fontsize=8)
        if means.size <= MAX_ANNOTATED_HEATMAP_CELLS:
            for (i, row), (j, column) in ((a, b) for a in enumerate(means.index) for b in enumerate(columns)):
                value = means.loc[row, column]
                text = "n/a" if pd.isna(value) else f"{value:.3f}"
                marker = markers.get((row, column), "")
                axis.text(
                    j,
                    i,
                    f"{text}{marker}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if bright[i, j] else "white",
                )
        figure.colorbar(image, ax=axis, label="mean test IoU")
        row_count = f"{len(means)} of {total} rows, highest first" if total > len(means) else f"{total} rows"
        axis.set_title(f"{dataset or 'all datasets'}: mean test IoU over seeds\n({row_count})", fontsize=10)
        paths.append(_save(figure, out_dir / file_name("heatmap", dataset or "all")))
    return paths


def plot_validation_curves(
    curves: pd.DataFrame,
    runs: pd.DataFrame,
    cell_axes: Sequence[str],
    total_cells: int,
    runs_per_configuration: int,
    out_dir: Path,
) -> Path | None:
    """Plot validation IoU per epoch, one line per configuration, one panel per dataset.

    Args:
        curves: Histories from ``collect_curves`` (``run_id``, ``epoch``, ``value``).
        runs: Trial rows of the runs in ``curves``, with the cell axes.
        cell_axes: Axes that define a configuration.
        total_cells: Number of configurations in the sweep, for the title.
        runs_per_configuration: Most runs of one configuration in ``curves``, for the title.
        out_dir: Folder of the PNG file.

    Returns:
        The file written, ``val_iou_curves.png``, or ``None`` without histories.
    """
    if curves.empty:
        return None
    label_axes = [axis for axis in cell_axes if axis != DATASET]
    data = curves.merge(runs, on=RUN_ID)
    data = data.assign(configuration=[cell_label(row, label_axes) for _, row in data.iterrows()])
    panels = _datasets(data)
    figure = Figure(figsize=(6.5 * len(panels), 4.2), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    curve_count = 0
    for axis, (dataset, group) in zip(axes, panels, strict=True):
        summary = group.groupby(["configuration", EPOCH_COLUMN])[VALUE_COLUMN].agg(["mean", "min", "max"])
        for configuration, lines in summary.groupby(level="configuration", sort=False):
            lines = lines.droplevel("configuration")
            # Markers keep sweeps of a single epoch visible.
            axis.plot(lines.index, lines["mean"], marker="o", markersize=3, label=configuration)
            axis.fill_between(lines.index, lines["min"], lines["max"], alpha=0.15)
            curve_count += 1
        axis.set_title(dataset or "all datasets", fontsize=10)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel("validation IoU")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(
        f"validation IoU per epoch: {curve_count} of {total_cells} configurations, those with the highest mean test IoU per dataset; "
        f"line = mean over up to {runs_per_configuration} seed(s), band = min to max",
        fontsize=10,
    )
    return _save(figure, out_dir / "val_iou_curves.png")
