"""``python -m sweep.report``: tables with 95% confidence intervals, figures and a regression gate for one sweep.

Examples::

    python -m sweep.report --experiment paper_grid
    python -m sweep.report --experiment smoke --tracking-uri sqlite:////abs/mlflow.db --out reports/smoke
    python -m sweep.report --experiment paper_grid --check baseline.csv --tolerance 0.01
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sweep import tracking
from sweep.report.build import DEFAULT_CURVE_CONFIGURATIONS, ReportConfig, build_report
from sweep.report.errors import ReportError
from sweep.report.gate import check_cells, read_baseline

logger = logging.getLogger("sweep.report")

EXIT_GATE_FAILED = 1
EXIT_INVALID_INPUT = 2

CHECK_HELP = """\
regression gate: exit with status 1, listing the cells, when a cell of the
baseline is missing from the sweep (or has no run with a test IoU) or its mean
test IoU is below the baseline minus --tolerance. BASELINE.csv has one column
per cell axis, named as the sweep's axes without the seed (e.g.
dataset,arch,app,class_weights), and a column test_iou; every report writes
baseline.csv in this format from its own means"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.report",
        description="Summarize a sweep's test IoU per cell (mean, std and 95% confidence interval over seeds), "
        "lay out the study's tables beside the published values, compare weight schemes and APP settings on paired seeds, "
        "and write Markdown, CSV, PNG and HTML files, logged to the sweep's parent run.",
        epilog="Exit status: 0 on success, 1 when --check fails, 2 for invalid input.",
    )
    parser.add_argument(
        "--experiment", required=True, help="MLflow experiment of the sweep (python -m sweep.run uses the space name)"
    )
    parser.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking URI (default: ${tracking.TRACKING_URI_VARIABLE}, else sqlite:///<working folder>/mlflow.db)",
    )
    parser.add_argument(
        "--sweep",
        metavar="NAME_OR_RUN_ID",
        help="sweep name or parent run id (default: the newest sweep of the experiment)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: reports/<sweep name>)")
    parser.add_argument(
        "--curves",
        type=int,
        default=DEFAULT_CURVE_CONFIGURATIONS,
        metavar="N",
        help=f"configurations per dataset in the validation curve figure, those with the highest mean test IoU (default: {DEFAULT_CURVE_CONFIGURATIONS})",
    )
    parser.add_argument(
        "--no-log-artifacts", action="store_true", help="write the files only; do not log them to the parent run"
    )
    parser.add_argument("--check", type=Path, metavar="BASELINE.csv", help=CHECK_HELP)
    parser.add_argument(
        "--tolerance", type=float, default=0.0, metavar="T", help="allowed drop below the baseline, in IoU (default: 0)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the report command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.curves < 0:
        parser.error(f"--curves must be 0 or more, got {args.curves}")
    if args.tolerance < 0:
        parser.error(f"--tolerance must be 0 or more, got {args.tolerance}")

    config = ReportConfig(
        experiment=args.experiment,
        tracking_uri=args.tracking_uri or tracking.default_tracking_uri(),
        out_dir=args.out,
        sweep=args.sweep,
        curve_configurations=args.curves,
        log_artifacts=not args.no_log_artifacts,
    )
    try:
        result = build_report(config)
        print(
            f"report of sweep {result.sweep.name}: {len(result.cells)} cells, {len(result.files)} files in {result.out_dir}"
        )
        print(f"  {result.out_dir / 'report.html'}")
        if config.log_artifacts:
            print(f"  logged to parent run {result.sweep.run_id} under report/")
        if args.check is None:
            return 0
        baseline = read_baseline(args.check, result.cell_axes)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT

    failures = check_cells(result.cells, baseline, result.cell_axes, args.tolerance)
    if not failures:
        print(f"check passed: {len(baseline)} baseline cells, none missing or below baseline - {args.tolerance:g}")
        return 0
    print(
        f"check failed: {len(failures)} of {len(baseline)} baseline cells missing or below baseline - {args.tolerance:g}:"
    )
    for failure in failures:
        print(f"  {failure.describe(args.tolerance)}")
    return EXIT_GATE_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
