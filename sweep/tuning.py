"""Every call into Ray: starting or joining a cluster, checking storage, running and restoring Tuners.

Ray's API changes between releases, so the rest of the sweep goes through
this module alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow import MlflowClient
from ray import tune

from segcore.metric_keys import TEST_IOU
from sweep import tracking
from sweep.spaces import SearchSpace, Study
from sweep.trainable import SweepContext, run_trial

logger = logging.getLogger(__name__)

# Filesystem types that every node of a cluster can mount at the same path.
NETWORK_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "lustre",
    "gpfs",
    "beegfs",
    "ceph",
    "cephfs",
    "glusterfs",
    "9p",
    "virtiofs",
    "wekafs",
)


class ClusterError(RuntimeError):
    """Raised when the cluster cannot run the sweep as configured."""


FINISHED = "FINISHED"
FAILED = "FAILED"
UNFINISHED = "KILLED"


@dataclass(frozen=True)
class StudyResult:
    """Final status of every trial of a study, kept by the driver.

    Attributes:
        statuses: Trial id to the MLflow run status its trial deserves:
            ``FINISHED`` (completed or stopped early by the scheduler),
            ``FAILED`` (out of retries), or ``KILLED`` (not done when the sweep
            was interrupted; ``--resume`` continues it).
        best: The best trial's config and metric, when any trial reported.
    """

    name: str
    statuses: dict[str, str]
    best: dict[str, Any] | None

    def count(self, status: str) -> int:
        """Return how many trials have ``status``."""
        return sum(1 for value in self.statuses.values() if value == status)


def start_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> dict[str, float]:
    """Join the cluster at ``address`` or start a local one; return the cluster's resources."""
    if ray.is_initialized():
        return ray.cluster_resources()
    # Tune warns about frequent experiment snapshots, which num_to_keep=1 checkpoints cause by design.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **options)
    resources = ray.cluster_resources()
    logger.info(
        "Ray cluster: %d node(s), %s CPU(s), %s GPU(s)",
        len(alive_nodes()),
        resources.get("CPU", 0),
        resources.get("GPU", 0),
    )
    return resources


def stop_ray() -> None:
    """Disconnect from Ray (and stop the local cluster this process started)."""
    if ray.is_initialized():
        ray.shutdown()


def alive_nodes() -> list[dict[str, Any]]:
    """Return the nodes of the cluster that are alive."""
    return [node for node in ray.nodes() if node.get("Alive")]


def filesystem_type(path: Path) -> str:
    """Return the type of the filesystem that contains ``path`` (Linux ``/proc/mounts``), or ``unknown``."""
    path = path.resolve()
    best, fstype = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fstype
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        if (str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(
            best
        ):
            best, fstype = mount_point, parts[2]
    return fstype


def check_storage(storage_path: str, node_count: int, shared: bool) -> None:
    """Refuse a multi-node sweep whose storage path is local to one node.

    Since Ray 2.7 nothing is synced to the head node: checkpoints and results
    must go to storage that every node mounts.
    """
    if node_count <= 1 or shared or "://" in storage_path:
        return
    fstype = filesystem_type(Path(storage_path))
    if fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."):
        return
    raise ClusterError(
        f"the cluster has {node_count} nodes but storage path {storage_path} is on a local {fstype} filesystem of "
        "this node, so trials on other nodes could neither save nor find checkpoints. Pass --storage-path with a "
        "folder every node mounts at the same path (NFS, Lustre, ...) or a URI such as s3://bucket/sweeps; "
        "if this folder is shared after all, add --shared-storage."
    )


def check_resources(cluster: Mapping[str, float], per_trial: Mapping[str, float]) -> None:
    """Raise when one trial requests more CPUs or GPUs than the whole cluster has."""
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        requested = float(per_trial.get(key, 0))
        if requested > cluster.get(name, 0):
            raise ClusterError(
                f"each trial requests {requested:g} {name}(s) but the cluster has {cluster.get(name, 0):g}; "
                f"lower --{key}s-per-trial or add nodes"
            )


class MlflowStatusCallback(tune.Callback):
    """Closes a trial's MLflow run from the driver.

    A trial stopped by the scheduler, a killed actor or a lost node cannot close
    its own run. A run that ends without test metrics was stopped early.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def _close(self, trial, status: str) -> None:
        client = MlflowClient(self.tracking_uri)
        filters = {tracking.TRIAL_ID_TAG: trial.trial_id, tracking.PARENT_RUN_TAG: self.parent_run_id}
        for run in tracking.find_runs(client, self.experiment_id, filters):
            if run.info.status == "RUNNING":
                if status == "FINISHED" and TEST_IOU not in run.data.metrics:
                    client.set_tag(run.info.run_id, tracking.STOPPED_EARLY_TAG, "true")
                client.set_terminated(run.info.run_id, status=status)
                logger.info("closed MLflow run of trial %s as %s", trial.trial_id, status)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial, "FAILED")


def _trial_dirname(trial) -> str:
    return trial.trial_id


def run_study(
    space: SearchSpace,
    study: Study,
    context: SweepContext,
    storage_path: str,
    resources: Mapping[str, float],
    resume: bool,
    max_concurrent: int | None = None,
) -> StudyResult:
    """Run one study with Ray Tune, or continue it from ``storage_path`` when ``resume`` is set.

    A restored study never reruns finished trials; unfinished and failed
    trials continue from their last checkpoint.
    """
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": float(resources.get("cpu", 1)), "gpu": float(resources.get("gpu", 0))},
    )
    experiment_path = os.path.join(storage_path, study.name)
    if resume and tune.Tuner.can_restore(experiment_path):
        logger.info("restoring study %s from %s", study.name, experiment_path)
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        search_alg = study.search_alg(study.param_space) if study.search_alg else None
        scheduler = study.scheduler(study.param_space) if study.scheduler else None
        tuner = tune.Tuner(
            trainable,
            param_space=study.param_space,
            tune_config=tune.TuneConfig(
                metric=space.metric,
                mode=space.mode,
                num_samples=study.num_samples,
                search_alg=search_alg,
                scheduler=scheduler,
                max_concurrent_trials=max_concurrent,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=study.name,
                storage_path=storage_path,
                failure_config=tune.FailureConfig(max_failures=space.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[MlflowStatusCallback(context.tracking_uri, context.experiment_id, context.parent_run_id)],
                verbose=1,
            ),
        )
    results = tuner.fit()
    # The statuses come from the state Tune saved, as a restore reads it: after
    # Ctrl-C, Tune marks every trial TERMINATED in memory but saves the ones it
    # cut off as PENDING, so that a restore continues them.
    saved = tune.ExperimentAnalysis(experiment_path)
    statuses = {trial.trial_id: _run_status(trial.status) for trial in saved.trials}
    best = None
    try:
        # scope="all": a trial's best epoch counts, not only its last one.
        best_result = results.get_best_result(
            metric=space.metric, mode=space.mode, scope="all", filter_nan_and_inf=True
        )
        history = best_result.metrics_dataframe[space.metric]
        best = {"config": best_result.config, space.metric: history.max() if space.mode == "max" else history.min()}
    except (RuntimeError, ValueError, KeyError, TypeError):
        best = None
    return StudyResult(name=study.name, statuses=statuses, best=best)


def _run_status(trial_status: str) -> str:
    if trial_status == "TERMINATED":
        return FINISHED
    if trial_status == "ERROR":
        return FAILED
    return UNFINISHED
