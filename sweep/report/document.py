"""The report's content as an ordered list of sections, shared by the Markdown and HTML renderers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sweep.report import display
from sweep.report.collect import STATUS, SweepInfo
from sweep.report.tables import GAIN_BASELINE, GAIN_SCHEME


@dataclass
class Section:
    """One titled part of the report: paragraphs, then an optional table, then figures.

    Attributes:
        level: Heading level, 2 for a top-level section.
        figures: PNG files, relative to the report folder.
    """

    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    figures: list[Path] = field(default_factory=list)
    level: int = 2


@dataclass
class ReportContent:
    """The numbers and figures of one report, before rendering.

    Attributes:
        sweep: The sweep's parent run.
        trials: One row per trial run.
        cell_axes: Axes that define a cell.
        expected_seeds: Seeds each cell should have.
        cells: Per-cell statistics (with ``published`` when the study's layout applies).
        layout_problem: Why the study's tables are skipped, or ``None``.
        averages: Block averages, when the study's layout applies.
        gain: Gain of cdw over dedl, when the study's layout applies.
        comparisons: Paired comparisons by compared setting, with the group axes.
        figures: Figure files by kind, relative to the report folder.
        notes: Further remarks shown under the summary.
    """

    sweep: SweepInfo
    trials: pd.DataFrame
    cell_axes: tuple[str, ...]
    expected_seeds: int
    cells: pd.DataFrame
    layout_problem: str | None = None
    averages: pd.DataFrame | None = None
    gain: pd.DataFrame | None = None
    comparisons: dict[str, tuple[pd.DataFrame, list[str]]] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def title(content: ReportContent) -> str:
    """Return the report's title."""
    return f"Sweep report: {content.sweep.name}"


def summary(content: ReportContent) -> list[str]:
    """Return the paragraphs that describe the sweep and how the report was made."""
    sweep = content.sweep
    statuses = ", ".join(
        f"{count} {status.lower()}" for status, count in content.trials[STATUS].value_counts().sort_index().items()
    )
    return [
        f"Experiment `{sweep.experiment_name}`, space `{sweep.space or 'unknown'}`, parent run `{sweep.run_id}` ({sweep.status.lower()}).",
        f"{len(content.trials)} trial runs ({statuses}) in {len(content.cells)} cells. "
        f"A cell is one value of each of {', '.join(content.cell_axes) or 'no axis'}; its seeds are the repetitions. "
        f"Each cell should have {content.expected_seeds} seed(s) (the space declares {sweep.declared_seeds}).",
        "Statistics: mean test IoU over the seeds of a cell, standard deviation with ddof=1, and the 95% confidence interval "
        "mean ± t(0.975, n-1)·std/√n (Student t), clipped to [0, 1], the range of IoU. Failed or killed runs, and runs without a test IoU, are left out of the means and flag their cell.",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by python -m sweep.report.",
    ]


def build_sections(content: ReportContent) -> list[Section]:
    """Arrange the report's content as sections, in reading order."""
    legend = display.flag_legend(content.expected_seeds)
    sections = [Section("Summary", summary(content) + content.notes)]

    if content.layout_problem is None:
        layout = Section(
            "Study tables",
            [
                "Per dataset, architecture and weight scheme: encoders as rows, APP settings as columns. "
                "Ours is the mean ± the half-width of its 95% CI; published is the study's mean of 5 seeds; difference is ours minus published.",
                legend,
            ],
        )
        sections.append(layout)
        for block_title, table in display.layout_tables(content.cells):
            sections.append(Section(block_title, table=table, level=3))
        sections.append(
            Section(
                "Averages over encoders and APP settings",
                [
                    "Mean of the cell means of each block, as the study averages. The 95% CI comes from the block mean of each seed "
                    "that every cell of the block has (complete seeds). Published is the mean of the study's values of the same cells.",
                    legend,
                ],
                table=display.averages_table(content.averages),
            )
        )
        gain_text = [
            f"Gain of {GAIN_SCHEME} over {GAIN_BASELINE} weights in IoU points (100 × IoU), from the block averages; the CI pairs the blocks seed by seed."
        ]
        has_gain = content.gain is not None and not content.gain.empty
        if not has_gain:
            gain_text.append(
                f"No dataset and architecture in this sweep has both {GAIN_SCHEME} and {GAIN_BASELINE} weights."
            )
        sections.append(
            Section(
                f"Gain of {GAIN_SCHEME} over {GAIN_BASELINE}",
                gain_text,
                table=display.gain_table(content.gain) if has_gain else None,
            )
        )
    else:
        sections.append(
            Section(
                "Study tables",
                [f"Skipped: {content.layout_problem}. The cell table below has every cell of the sweep."],
            )
        )

    sections.append(
        Section(
            "Cells", ["Every cell of the sweep.", legend], table=display.cell_table(content.cells, content.cell_axes)
        )
    )

    for factor, (comparisons, group_axes) in content.comparisons.items():
        text = [
            f"Runs paired on {', '.join([*group_axes, 'seed'])} and every other axis, differing only in {factor}. "
            "Mean difference first − second in IoU with its 95% CI, the paired t-test and the two-sided Wilcoxon signed-rank test. "
            "Unpaired runs have a test IoU but no partner run."
        ]
        if comparisons.empty:
            text.append(f"No two runs of this sweep differ only in {factor}.")
        table = display.paired_table(comparisons, group_axes) if not comparisons.empty else None
        sections.append(Section(f"Paired comparisons of {factor}", text, table=table))

    figure_titles = {
        "iou": "Test IoU with 95% CI",
        "heatmap": "Heatmaps of mean test IoU",
        "curves": "Validation IoU per epoch",
    }
    for kind, figure_title in figure_titles.items():
        if content.figures.get(kind):
            sections.append(Section(figure_title, figures=content.figures[kind]))
    return sections
