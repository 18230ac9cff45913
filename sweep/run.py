"""``python -m sweep.run``: run a named search space on Ray Tune, tracked in MLflow.

Examples::

    python -m sweep.run --space smoke                      # synthetic data, local Ray, ./mlflow.db
    python -m sweep.run --space smoke --data-root ../shared/data
    python -m sweep.run --space paper_grid --dry-run       # list the 840 trials
    python -m sweep.run --space paper_grid --data-root /data --resume
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from segcore.data.errors import DataError
from segcore.data.prepare import prepare_dataset
from segcore.models.factory import check_encoder_weights
from segcore.models.weights import EncoderWeightsError
from segcore.training.config import ConfigError, TrainConfig
from sweep import tracking, tuning
from sweep.datasets import DATA_ROOT_VARIABLE, DatasetSpec, resolve_data_root
from sweep.dry_run import describe_space, sample_trial_configs
from sweep.record import SweepRecord, latest_sweep, read_record, write_record
from sweep.spaces import (
    SearchSpace,
    SpaceContext,
    SpaceError,
    apply_overrides,
    available_spaces,
    axis_names,
    load_space,
    parse_override,
    seeds_per_cell,
)
from sweep.trainable import SweepContext, build_train_config

logger = logging.getLogger("sweep.run")

INPUT_ERRORS = (DataError, ConfigError, SpaceError, tracking.TrackingError, EncoderWeightsError, tuning.ClusterError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.run", description="Run a segsweep search space on Ray Tune with MLflow tracking."
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--space",
        default="smoke",
        help=f"space name ({', '.join(available_spaces())}) or path of a .py space file (default: smoke)",
    )
    what.add_argument(
        "--data-root",
        help=f"folder with one sub-folder per dataset (default: ${DATA_ROOT_VARIABLE}; smoke uses synthetic data without one)",
    )
    what.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="folder of one named dataset, overriding the data root (repeatable)",
    )
    what.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a setting in every trial, e.g. epochs=5 or seed=0 (repeatable; JSON values)",
    )
    what.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=[V1,V2]",
        help="make KEY a grid axis over a JSON list, e.g. seed=[0,1,2] (repeatable)",
    )
    what.add_argument(
        "--num-samples", type=int, metavar="N", help="trials per study of a model-based search, or repeats of a grid"
    )
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials per axis, the total and the first trial configs; train nothing",
    )
    what.add_argument("--list-spaces", action="store_true", help="list the available spaces and exit")

    tracking_group = parser.add_argument_group("tracking")
    tracking_group.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)"
    )
    tracking_group.add_argument("--experiment", help="MLflow experiment name (default: the space name)")
    tracking_group.add_argument(
        "--name",
        help="sweep name: the parent run and the folder under the storage path (default: <space>-<date>-<time>)",
    )

    ray_group = parser.add_argument_group("Ray")
    ray_group.add_argument(
        "--address", help="join this Ray cluster (e.g. auto, or ray://host:10001) instead of starting a local one"
    )
    ray_group.add_argument(
        "--storage-path",
        default="sweeps",
        help="where trial checkpoints and results go; on a multi-node cluster a shared folder or s3:// URI (default: ./sweeps)",
    )
    ray_group.add_argument(
        "--shared-storage",
        action="store_true",
        help="declare that --storage-path is mounted on every node, when this cannot be detected",
    )
    ray_group.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep --name (default: the newest sweep of --space) without rerunning finished trials",
    )
    ray_group.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: the space's)")
    ray_group.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial, fractions share one GPU (default: the space's, 0 without GPUs)",
    )
    ray_group.add_argument(
        "--max-concurrent-trials", type=int, help="at most this many trials at a time (default: as resources allow)"
    )
    ray_group.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    ray_group.add_argument("--num-gpus", type=int, help="GPUs of the local Ray cluster (default: all detected)")

    files = parser.add_argument_group("files")
    files.add_argument("--cache-dir", help="decoded-sample cache (default: $SEGSWEEP_CACHE_DIR or ~/.cache/segsweep)")
    files.add_argument(
        "--weights-dir", help="pre-fetched encoder weights (default: $SEGSWEEP_WEIGHTS_DIR or the Hugging Face cache)"
    )

    testing = parser.add_argument_group("testing")
    testing.add_argument(
        "--inject-failure",
        type=int,
        metavar="EPOCH",
        help="make every trial raise once at EPOCH, to exercise retries from checkpoints",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _parse_dataset_paths(values: list[str]) -> dict[str, Path]:
    paths = {}
    for value in values:
        name, separator, path = value.partition("=")
        if not separator or not name or not path:
            raise SpaceError(f"--dataset {value!r} is not NAME=PATH")
        paths[name] = Path(path).expanduser().resolve()
    return paths


def _resume_settings(args: argparse.Namespace, storage_path: str) -> SweepRecord:
    name = args.name or latest_sweep(storage_path, args.space)
    record = read_record(storage_path, name) if name else None
    if record is None:
        raise SpaceError(
            f"no sweep to resume: {'sweep ' + repr(name) if name else 'no sweep of space ' + repr(args.space)} under {storage_path}; check --name and --storage-path"
        )
    return record


def _new_record(
    args: argparse.Namespace,
    space: SearchSpace,
    context: SpaceContext,
    overrides: dict[str, Any],
    tracking_uri: str,
    storage_path: str,
) -> SweepRecord:
    name = args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if read_record(storage_path, name) is not None:
        raise SpaceError(
            f"sweep {name!r} already exists under {storage_path}; pass --resume to continue it, "
            "or choose another --name for a new sweep"
        )
    return SweepRecord(
        name=name,
        space=args.space,
        experiment=args.experiment or space.name,
        tracking_uri=tracking_uri,
        data_root=str(context.data_root) if context.data_root else None,
        dataset_paths={key: str(value) for key, value in context.dataset_paths.items()},
        overrides=overrides,
        cache_dir=args.cache_dir,
        weights_dir=args.weights_dir,
    )


def resolve_datasets(space: SearchSpace, context: SpaceContext) -> dict[str, DatasetSpec]:
    """Resolve every dataset the space's trials name; raise one error listing every missing one."""
    names = sorted({config["dataset"] for config in sample_trial_configs(space) if "dataset" in config})
    datasets, problems = {}, []
    for name in names:
        try:
            datasets[name] = context.dataset(name)
        except DataError as error:
            problems.append(str(error))
    if problems:
        raise DataError("\n".join(problems))
    return datasets


def placeholder_datasets(space: SearchSpace) -> dict[str, DatasetSpec]:
    """Synthetic stand-ins for every dataset a space names, to check its settings where the data is absent."""
    names = {config["dataset"] for config in sample_trial_configs(space) if "dataset" in config}
    return {
        name: DatasetSpec(name=name, layout="synthetic", root=None, layout_options={"kind": "nuclei"}) for name in names
    }


def validate_trial_configs(space: SearchSpace, sweep_context: SweepContext) -> list[TrainConfig]:
    """Return the typed config of every grid point; raise for an unknown setting or a value of the wrong type."""
    return [build_train_config(config, sweep_context) for config in sample_trial_configs(space)]


def check_weights(train_configs: list[TrainConfig]) -> None:
    """Raise now, before any trial, when encoder weights are neither cached nor downloadable."""
    requested = {
        (c.encoder, c.encoder_weights, c.weights_cache) for c in train_configs if c.encoder_weights is not None
    }
    for encoder, encoder_weights, cache in requested:
        check_encoder_weights(encoder, encoder_weights, cache)


def prepare_data(train_configs: list[TrainConfig]) -> int:
    """Prepare each distinct dataset preparation once, on this machine; return how many there are."""
    data_configs = {repr(config.data): config.data for config in train_configs}
    for data_config in data_configs.values():
        prepared = prepare_dataset(data_config)
        logger.info("dataset %s ready: %s", data_config.dataset, {s: len(a) for s, a in prepared.splits.items()})
    return len(data_configs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.list_spaces:
        for name in available_spaces():
            print(name)
        return 0
    try:
        return run(args)
    except INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    storage_path = (
        args.storage_path if "://" in args.storage_path else str(Path(args.storage_path).expanduser().resolve())
    )
    record, context, overrides, tracking_uri = _sweep_settings(args, storage_path)
    space = apply_overrides(load_space(args.space, context), overrides)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise SpaceError(f"--num-samples must be at least 1, got {args.num_samples}")
        space = replace(space, studies=tuple(replace(study, num_samples=args.num_samples) for study in space.studies))
    base_context = SweepContext(
        sweep_name="",
        space_name=space.name,
        study_name="",
        tracking_uri=tracking_uri,
        experiment_id="",
        parent_run_id="",
        datasets={},
        axes=tuple(axis_names(space)),
        cache_dir=record.cache_dir if record else args.cache_dir,
        weights_cache=record.weights_dir if record else args.weights_dir,
        fail_once_at_epoch=args.inject_failure,
    )
    if args.dry_run:
        validate_trial_configs(space, replace(base_context, datasets=placeholder_datasets(space)))
        print(describe_space(space))
        return 0

    # Everything that can be wrong with the input is checked before anything is created or started.
    base_context = replace(base_context, datasets=resolve_datasets(space, context))
    train_configs = validate_trial_configs(space, base_context)
    check_weights(train_configs)
    tracking.check_tracking_uri(tracking_uri)
    record = record or _new_record(args, space, context, overrides, tracking_uri, storage_path)
    prepared = prepare_data(train_configs)
    logger.info("%d trial configuration(s) valid; %d dataset preparation(s) cached", len(train_configs), prepared)
    client = MlflowClient(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, record.experiment, tracking_uri)
    base_context = replace(base_context, sweep_name=record.name, experiment_id=experiment_id)

    cluster = tuning.start_ray(args.address, args.num_cpus, args.num_gpus)
    try:
        resources = _trial_resources(space, args, cluster, record)
        tuning.check_resources(cluster, resources)
        tuning.check_storage(storage_path, len(tuning.alive_nodes()), args.shared_storage)
        record.resources = resources
        write_record(storage_path, record)
        parent_run_id = tracking.start_sweep_run(
            client,
            experiment_id,
            record.name,
            tags={
                tracking.SPACE_TAG: space.name,
                tracking.SEEDS_TAG: str(seeds_per_cell(space)),
                tracking.AXES_TAG: ",".join(base_context.axes),
            },
            params={
                "space": space.name,
                "overrides": overrides,
                "data_root": record.data_root,
                "storage_path": storage_path,
                "resources": resources,
            },
        )
        print(
            f"sweep {record.name}: space {space.name}, experiment {record.experiment} ({tracking_uri}), parent run {parent_run_id}"
        )
        totals = {tuning.FINISHED: 0, tuning.FAILED: 0, tuning.UNFINISHED: 0}
        for study in space.studies:
            study_context = replace(
                base_context,
                study_name=study.name,
                parent_run_id=parent_run_id,
                extra_tags={tracking.RESOURCES_TAG: _format_resources(resources)},
            )
            result = tuning.run_study(
                space,
                study,
                study_context,
                f"{storage_path}/{record.name}",
                resources,
                args.resume,
                args.max_concurrent_trials,
            )
            tracking.close_leftover_runs(client, experiment_id, parent_run_id, result.statuses)
            for status in totals:
                totals[status] += result.count(status)
            _print_study(space, study.name, result)
            if result.count(tuning.UNFINISHED):
                break
        parent_status = "FINISHED"
        if totals[tuning.FAILED]:
            parent_status = "FAILED"
        if totals[tuning.UNFINISHED]:
            parent_status = "KILLED"
        tracking.end_run(client, parent_run_id, parent_status)
    finally:
        tuning.stop_ray()
    if totals[tuning.UNFINISHED]:
        print(f"interrupted: {totals[tuning.UNFINISHED]} trial(s) unfinished; continue with:")
        print(f"  python -m sweep.run --resume --name {record.name} --storage-path {storage_path}")
    _print_next_steps(record, tracking_uri)
    if totals[tuning.UNFINISHED]:
        return 130
    return 1 if totals[tuning.FAILED] else 0


def _sweep_settings(args: argparse.Namespace, storage_path: str) -> tuple[SweepRecord | None, SpaceContext, dict, str]:
    """Return the sweep record (when resuming), the space context, the overrides and the tracking URI."""
    if args.resume:
        record = _resume_settings(args, storage_path)
        ignored = [
            flag
            for flag, value in (
                ("--set", args.set),
                ("--grid", args.grid),
                ("--data-root", args.data_root),
                ("--dataset", args.dataset),
            )
            if value
        ]
        if ignored:
            logger.warning("ignoring %s: a resumed sweep keeps the settings saved with it", ", ".join(ignored))
        args.space = record.space
        context = SpaceContext(
            data_root=Path(record.data_root) if record.data_root else None,
            dataset_paths={key: Path(value) for key, value in record.dataset_paths.items()},
            cache_dir=record.cache_dir,
            overrides=record.overrides,
        )
        return record, context, record.overrides, record.tracking_uri
    overrides = dict(parse_override(text) for text in args.set)
    for text in args.grid:
        key, values = parse_override(text)
        if not isinstance(values, list) or not values:
            raise SpaceError(f"--grid {text!r}: the value must be a non-empty JSON list, e.g. {key}=[0,1,2]")
        overrides[key] = {"grid_search": values}
    context = SpaceContext(
        data_root=resolve_data_root(args.data_root),
        dataset_paths=_parse_dataset_paths(args.dataset),
        cache_dir=args.cache_dir,
        overrides=overrides,
    )
    return None, context, overrides, args.tracking_uri or tracking.default_tracking_uri()


def _print_study(space: SearchSpace, name: str, result: tuning.StudyResult) -> None:
    counts = ", ".join(
        f"{result.count(status)} {label}"
        for status, label in (
            (tuning.FINISHED, "finished"),
            (tuning.FAILED, "failed"),
            (tuning.UNFINISHED, "unfinished"),
        )
    )
    print(f"trials of {name}: {counts}")
    if result.best:
        print(f"  best {space.metric}: {result.best[space.metric]:.4f}")


def _format_resources(resources: dict[str, float]) -> str:
    return ",".join(f"{key}={value:g}" for key, value in resources.items())


def _trial_resources(
    space: SearchSpace, args: argparse.Namespace, cluster: dict[str, float], record: SweepRecord
) -> dict[str, float]:
    if args.resume and record.resources:
        return dict(record.resources)
    cpus = args.cpus_per_trial if args.cpus_per_trial is not None else float(space.resources.get("cpu", 1))
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else float(space.resources.get("gpu", 0))
    if args.gpus_per_trial is None and gpus > 0 and cluster.get("GPU", 0) == 0:
        logger.info("the cluster has no GPU; trials run on CPUs")
        gpus = 0.0
    cpus = min(cpus, cluster.get("CPU", cpus)) if args.cpus_per_trial is None else cpus
    return {"cpu": cpus, "gpu": gpus}


def _print_next_steps(record: SweepRecord, tracking_uri: str) -> None:
    database = tracking.sqlite_path(tracking_uri)
    if database is None:
        print(f"look at the runs:   open {tracking_uri} in a browser")
    elif database.parent == Path.cwd():
        print("look at the runs:   mlflow ui")
    else:
        print(f"look at the runs:   mlflow ui --backend-store-uri {tracking_uri}")
    report = f"python -m sweep.report --experiment {record.experiment} --sweep {record.name}"
    if tracking_uri != tracking.default_tracking_uri():
        report += f" --tracking-uri {tracking_uri}"
    print(f"tables and figures: {report}")


if __name__ == "__main__":
    raise SystemExit(main())
