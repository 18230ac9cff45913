"""Build a sweep's report: read the runs, compute the statistics, write tables, figures and pages.

The files go to one folder and are logged as artifacts of the sweep's parent
run under ``report/``; the parent run's status is left unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweep import tracking
from sweep.report import figures
from sweep.report.collect import RUN_ID, SEED, SweepInfo, collect_curves, collect_trials, find_sweep
from sweep.report.document import ReportContent, build_sections, title
from sweep.report.errors import ReportError
from sweep.report.gate import baseline_from_cells
from sweep.report.html import render_html
from sweep.report.markdown import render_markdown
from sweep.report.reference import CELL_COLUMNS, load_published_results
from sweep.report.stats import MEAN, expected_seed_count, paired_comparisons, summarize_cells
from sweep.report.tables import (
    APP,
    CLASS_WEIGHTS,
    DATASET,
    ORDER,
    attach_published,
    block_averages,
    sort_cells,
    study_layout_problem,
    weight_gain,
)

logger = logging.getLogger(__name__)

ARTIFACT_PATH = "report"
FIGURES_FOLDER = "figures"
# The settings compared pairwise across seeds, as the study compares them.
COMPARED_SETTINGS = (CLASS_WEIGHTS, APP)
DEFAULT_CURVE_CONFIGURATIONS = 6
# Runs (seeds) per configuration in the validation curve figure: each run costs one MLflow query.
CURVE_RUNS = 3


@dataclass(frozen=True)
class ReportConfig:
    """Settings of one report: the store, the sweep and the output folder.

    Attributes:
        experiment: MLflow experiment of the sweep.
        tracking_uri: MLflow tracking URI.
        out_dir: Output folder; ``None`` means ``reports/<sweep name>``.
        sweep: Sweep name or parent run id; ``None`` means the newest sweep.
        curve_configurations: Configurations per dataset in the validation
            curve figure (those with the highest mean test IoU); each costs one
            MLflow query per run.
        log_artifacts: Log the files to the parent run.
    """

    experiment: str
    tracking_uri: str
    out_dir: Path | None = None
    sweep: str | None = None
    curve_configurations: int = DEFAULT_CURVE_CONFIGURATIONS
    log_artifacts: bool = True


@dataclass
class ReportResult:
    """Output of ``build_report``: the sweep, its cell table and the files written.

    Attributes:
        files: Every file written, the figures included.
    """

    sweep: SweepInfo
    out_dir: Path
    cells: pd.DataFrame
    cell_axes: tuple[str, ...]
    files: list[Path] = field(default_factory=list)


def open_store(tracking_uri: str) -> MlflowClient:
    """Return a client of an existing tracking store.

    Raises:
        ReportError: for a SQLite file that does not exist (opening it would
            create an empty store) or a store that cannot be read.
    """
    database = tracking.sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        raise ReportError(f"SQLite tracking database {database} not found; pass the --tracking-uri the sweep used")
    try:
        tracking.check_tracking_uri(tracking_uri)
    except tracking.TrackingError as error:
        raise ReportError(str(error)) from error
    return MlflowClient(tracking_uri)


def build_report(config: ReportConfig) -> ReportResult:
    """Build the report of one sweep and write its files.

    Returns:
        The sweep, the output folder, the cell table and the files written.

    Raises:
        ReportError: for an unknown experiment or sweep, or a sweep without trial runs.
    """
    client = open_store(config.tracking_uri)
    sweep = find_sweep(client, config.experiment, config.sweep)
    trials, axes = collect_trials(client, config.tracking_uri, sweep, settings=CELL_COLUMNS)
    if trials.empty:
        raise ReportError(
            f"sweep {sweep.name} (parent run {sweep.run_id}) has no trial runs yet; run or resume it first"
        )
    out_dir = config.out_dir if config.out_dir is not None else Path("reports") / sweep.name
    (out_dir / FIGURES_FOLDER).mkdir(parents=True, exist_ok=True)

    content = compute_content(sweep, trials, axes)
    content.figures = draw_figures(client, content, out_dir, config.curve_configurations)
    files = write_files(content, out_dir)
    if config.log_artifacts:
        log_files(client, sweep.run_id, out_dir, files)
    return ReportResult(sweep=sweep, out_dir=out_dir, cells=content.cells, cell_axes=content.cell_axes, files=files)


def compute_content(sweep: SweepInfo, trials: pd.DataFrame, axes: tuple[str, ...]) -> ReportContent:
    """Compute every table of the report from the trial runs."""
    cell_axes = tuple(axis for axis in axes if axis != SEED)
    expected = expected_seed_count(trials, sweep.declared_seeds)
    layout_problem = study_layout_problem(cell_axes, trials)
    notes = []
    if layout_problem is None:
        # Constant settings such as a single encoder become columns too, so every cell has all five.
        cells = attach_published(summarize_cells(trials, CELL_COLUMNS, expected), load_published_results())
        cells = sort_cells(cells, [*cell_axes, *CELL_COLUMNS])
        unpublished = sorted(set(cells.loc[cells["published"].isna(), DATASET]))
        if unpublished:
            notes.append(
                f"The study published no value for some cells of {', '.join(unpublished)}; they show n/a as published value."
            )
    else:
        cells = sort_cells(summarize_cells(trials, cell_axes, expected), cell_axes)
    content = ReportContent(
        sweep=sweep,
        trials=trials,
        cell_axes=cell_axes,
        expected_seeds=expected,
        cells=cells,
        layout_problem=layout_problem,
        notes=notes,
    )
    if layout_problem is None:
        content.averages = block_averages(cells, trials)
        content.gain = weight_gain(content.averages, cells, trials)

    for factor in COMPARED_SETTINGS:
        if factor not in cell_axes or trials[factor].nunique() < 2:
            continue
        group_axes = [axis for axis in cell_axes if axis not in COMPARED_SETTINGS]
        pair_axes = [axis for axis in cell_axes if axis in COMPARED_SETTINGS and axis != factor]
        comparisons = paired_comparisons(trials, factor, group_axes, pair_axes, ORDER.get(factor, ()))
        content.comparisons[factor] = (comparisons, group_axes)
    return content


def draw_figures(
    client: MlflowClient, content: ReportContent, out_dir: Path, curve_configurations: int
) -> dict[str, list[Path]]:
    """Draw the figures into ``out_dir/figures``; return their paths relative to ``out_dir`` by kind."""
    folder = out_dir / FIGURES_FOLDER
    if content.layout_problem is None:
        iou = figures.plot_study_iou(content.cells, folder)
    else:
        iou = [figures.plot_cell_iou(content.cells, content.cell_axes, folder)]
    heatmaps = figures.plot_heatmaps(content.cells, content.cell_axes, folder)

    curve_cells = select_curve_cells(content.cells, curve_configurations)
    axes = list(content.cell_axes)
    runs = content.trials.merge(curve_cells[axes], on=axes) if axes else content.trials
    # MLflow reads one history per query, so each configuration's curve uses its first seeds only.
    runs = (
        runs.sort_values(SEED, key=_seed_order).groupby(axes, sort=False).head(CURVE_RUNS)
        if axes
        else runs.head(CURVE_RUNS)
    )
    curves = collect_curves(client, runs[RUN_ID])
    most_seeds = int(runs.groupby(axes).size().max()) if axes and not runs.empty else min(len(runs), CURVE_RUNS)
    curve_file = figures.plot_validation_curves(curves, runs, content.cell_axes, len(content.cells), most_seeds, folder)
    drawn = {"iou": iou, "heatmap": heatmaps, "curves": [curve_file] if curve_file else []}
    return {kind: [path.relative_to(out_dir) for path in paths] for kind, paths in drawn.items()}


def _seed_order(seeds: pd.Series) -> pd.Series:
    # Seeds are strings; numeric seeds sort by value, so seed 10 follows seed 9.
    numeric = pd.to_numeric(seeds, errors="coerce")
    return numeric.fillna(float("inf")) if numeric.notna().any() else seeds


def select_curve_cells(cells: pd.DataFrame, per_dataset: int) -> pd.DataFrame:
    """Return the ``per_dataset`` cells with the highest mean test IoU in each dataset."""
    ranked = cells.sort_values(MEAN, ascending=False, na_position="last")
    if DATASET in ranked:
        return ranked.groupby(DATASET, sort=False).head(per_dataset)
    return ranked.head(per_dataset)


def write_files(content: ReportContent, out_dir: Path) -> list[Path]:
    """Write the CSV tables, ``report.md`` and ``report.html``; return every file of the report."""
    files = []

    def write_csv(frame: pd.DataFrame | None, name: str) -> None:
        if frame is not None:
            frame.to_csv(out_dir / name, index=False)
            files.append(out_dir / name)

    write_csv(content.trials, "runs.csv")
    write_csv(content.cells, "cells.csv")
    write_csv(baseline_from_cells(content.cells, content.cell_axes), "baseline.csv")
    write_csv(content.averages, "study_averages.csv")
    write_csv(content.gain, "cdw_gain.csv")
    for factor, (comparisons, _) in content.comparisons.items():
        write_csv(comparisons, f"paired_{factor}.csv")

    sections = build_sections(content)
    (out_dir / "report.md").write_text(render_markdown(title(content), sections), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(title(content), sections, out_dir), encoding="utf-8")
    files += [out_dir / "report.md", out_dir / "report.html"]
    files += [out_dir / path for paths in content.figures.values() for path in paths]
    return files


def log_files(client: MlflowClient, run_id: str, out_dir: Path, files: list[Path]) -> None:
    """Log the report's files to the parent run under ``report/``, keeping their sub-folders.

    Only the files of this report are logged, not whatever else ``out_dir`` contains.
    """
    try:
        for path in files:
            folder = path.parent.relative_to(out_dir)
            artifact_path = ARTIFACT_PATH if folder == Path(".") else f"{ARTIFACT_PATH}/{folder.as_posix()}"
            client.log_artifact(run_id, str(path), artifact_path)
    except (MlflowException, OSError) as error:
        raise ReportError(
            f"logging the report to parent run {run_id} failed: {error}. The files are in {out_dir}; pass --no-log-artifacts to skip logging"
        ) from error
    logger.info("logged %d report files to run %s under %s/", len(files), run_id, ARTIFACT_PATH)
