"""The Ray Tune trainable: one trial = one call of ``segcore.train_and_evaluate``.

The trial's flat config becomes a typed ``TrainConfig`` once (unknown keys are
rejected). Every epoch is logged to the trial's MLflow child run and reported
to Tune with a checkpoint; a restarted trial resumes from its last checkpoint
and reopens its run. At the end the best model, the overlays and the metrics
files are logged to the run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from ray import tune

from segcore.metrics import EPOCH, TEST_IOU
from segcore.training.config import TrainConfig
from segcore.training.loop import TrainResult, train_and_evaluate
from sweep import tracking
from sweep.datasets import DatasetSpec
from sweep.spaces import flatten_trial_config

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
PIP_REQUIREMENTS = ["torch", "segmentation-models-pytorch", "segsweep"]


class InjectedFailure(RuntimeError):
    """Raised on purpose by ``--inject-failure`` to exercise retries."""


@dataclass(frozen=True)
class SweepContext:
    """Settings that every trial of a sweep shares, passed once by the driver.

    Attributes:
        datasets: Resolved datasets by name.
        axes: Settings that vary across the sweep; each becomes a run tag.
        fail_once_at_epoch: Testing aid: a trial that starts without a
            checkpoint raises once when it reaches this epoch.
    """

    sweep_name: str
    space_name: str
    study_name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    datasets: dict[str, DatasetSpec]
    axes: tuple[str, ...] = ()
    cache_dir: str | None = None
    weights_cache: str | None = None
    fail_once_at_epoch: int | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


def build_train_config(config: dict[str, Any], context: SweepContext) -> TrainConfig:
    """Turn a trial's config into a ``TrainConfig``, filling in the dataset's folder and layout."""
    flat = flatten_trial_config(config)
    name = flat.get("dataset")
    if name not in context.datasets:
        raise ValueError(
            f"trial names dataset {name!r}, which the sweep did not resolve; known: {', '.join(context.datasets)}"
        )
    values = {**context.datasets[name].data_settings(), **flat}
    if context.cache_dir is not None:
        values.setdefault("cache_dir", context.cache_dir)
    if context.weights_cache is not None:
        values.setdefault("weights_cache", context.weights_cache)
    return TrainConfig.from_dict(values)


def _placement_tags() -> dict[str, str]:
    import ray

    tags = {
        tracking.NODE_TAG: ray.util.get_node_ip_address(),
        tracking.NODE_ID_TAG: ray.get_runtime_context().get_node_id(),
    }
    gpu_ids = ray.get_gpu_ids()
    if gpu_ids:
        tags[tracking.GPU_TAG] = ",".join(str(gpu) for gpu in gpu_ids)
    return tags


def _show_progress_logs() -> None:
    """Send this package's INFO logs (epochs, resumes) to the worker's output, which Ray shows on the driver."""
    for name in ("segcore", "sweep"):
        package_logger = logging.getLogger(name)
        if not package_logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            package_logger.addHandler(handler)
            package_logger.setLevel(logging.INFO)
            package_logger.propagate = False


def run_trial(config: dict[str, Any], context: SweepContext) -> None:
    """Train one trial of a sweep; Ray Tune calls this in a worker process."""
    _show_progress_logs()
    tune_context = tune.get_context()
    trial_id = tune_context.get_trial_id()
    client = MlflowClient(context.tracking_uri)
    flat = flatten_trial_config(config)
    try:
        train_config, config_error = build_train_config(config, context), None
    except Exception as error:  # noqa: BLE001 - recorded on the run below, then raised.
        train_config, config_error = None, error
    tags = {
        **context.extra_tags,
        **{axis: str(flat[axis]) for axis in context.axes if axis in flat},
        tracking.SWEEP_TAG: context.sweep_name,
        tracking.SPACE_TAG: context.space_name,
        tracking.STUDY_TAG: context.study_name,
        tracking.AXES_TAG: ",".join(context.axes),
        **_placement_tags(),
    }
    run_name = "-".join(str(flat[axis]) for axis in context.axes if axis in flat) or tune_context.get_trial_name()
    finished = tracking.find_trial_run(client, context.experiment_id, context.parent_run_id, trial_id)
    if tracking.is_complete(finished, TEST_IOU):
        # The driver died after this trial had finished but before Tune recorded it:
        # hand Tune the recorded result instead of training again.
        logger.info("trial %s already finished in MLflow run %s; not rerun", trial_id, finished.info.run_id)
        tune.report(dict(finished.data.metrics))
        return
    params = train_config.to_dict() if train_config is not None else flat
    run_id = tracking.open_trial_run(
        client, context.experiment_id, context.parent_run_id, trial_id, run_name, params, tags
    )
    if config_error is not None:
        tracking.end_run(client, run_id, "FAILED", config_error)
        raise config_error

    checkpoint = tune.get_checkpoint()
    fail_at = context.fail_once_at_epoch if checkpoint is None else None

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if fail_at is not None and metrics[EPOCH] == fail_at:
            raise InjectedFailure(f"injected failure at epoch {fail_at} (--inject-failure)")
        tracking.log_metrics(client, run_id, metrics, step=int(metrics[EPOCH]))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

    try:
        if checkpoint is None:
            result = train_and_evaluate(train_config, report, output_dir=_output_dir(tune_context))
        else:
            with checkpoint.as_directory() as folder:
                logger.info("trial %s resumes from checkpoint %s", trial_id, checkpoint.path)
                result = train_and_evaluate(
                    train_config, report, resume_from=Path(folder), output_dir=_output_dir(tune_context)
                )
        log_outputs(context.tracking_uri, run_id, result)
    except SystemExit:
        # Tune stops a trial (early stopping, Ctrl-C) by exiting its thread while the worker shuts
        # down; the driver closes the run (MlflowStatusCallback), because only the driver sees the reason.
        raise
    except torch.cuda.OutOfMemoryError as error:
        advice = (
            f"CUDA ran out of memory in trial {trial_id} ({context.extra_tags.get(tracking.RESOURCES_TAG, '')}). "
            "Trials that share a GPU through fractional --gpus-per-trial have no memory limit between them: "
            "give each trial a larger GPU fraction, or lower batch_size with --set batch_size=N."
        )
        logger.error(advice)
        tracking.end_run(client, run_id, "FAILED", error, advice)
        raise
    except BaseException as error:
        tracking.end_run(client, run_id, "FAILED", error)
        raise
    tracking.end_run(client, run_id, "FINISHED")


def _output_dir(tune_context) -> Path:
    return Path(tune_context.get_trial_dir()) / "outputs"


def log_outputs(tracking_uri: str, run_id: str, result: TrainResult) -> None:
    """Log the best model (loadable offline with ``mlflow.pytorch.load_model``) and the output files."""
    client = MlflowClient(tracking_uri)
    for name, path in result.files.items():
        artifact_path = "overlays" if name.startswith("overlay_") else None
        client.log_artifact(run_id, str(path), artifact_path)
    mlflow.set_tracking_uri(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # The model is pickled on purpose (the traced pt2 format needs an input example and fixed shapes);
    # mlflow.pytorch warns about pickle on every call.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            result.network,
            name=MODEL_ARTIFACT,
            pip_requirements=PIP_REQUIREMENTS,
            serialization_format="pickle",
        )
