"""Exploratory search of the foreground/background cross-entropy weight ratio, per dataset.

The ratio ``r`` (weights ``1 / (1 + r)`` and ``r / (1 + r)``) is searched on a
log scale between 0.25 and 64 by Optuna's TPE sampler through Ray Tune, with
ASHA stopping weak trials early on validation IoU. Each dataset is its own
search, started from the ratios of the study's cdw and median-frequency weights
computed on that dataset's training masks. Only the ratio matters: PyTorch's
weighted cross-entropy divides by the sum of the weights.
"""

import csv
import logging
from importlib import resources

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from segcore.data.class_weights import compute_class_weights
from segcore.data.errors import DataError
from segcore.metrics import VAL_IOU
from sweep.datasets import STUDY_DATASETS
from sweep.spaces import SearchSpace, SpaceContext, Study

EPOCHS = 50
logger = logging.getLogger(__name__)

SAMPLES_PER_DATASET = 32
RATIO_RANGE = (0.25, 64.0)


def published_ratios(dataset: str) -> list[float]:
    """Return the ratios of the study's published cdw and median-frequency weights for ``dataset``."""
    table = resources.files("sweep") / "reference" / "paper_ce_weights.csv"
    with table.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["dataset"] == dataset]
    return distinct([round(float(row["foreground"]) / float(row["background"]), 4) for row in rows])


def starting_ratios(context: SpaceContext, dataset: str) -> list[float]:
    """Return the distinct foreground/background ratios of cdw and median frequency on ``dataset``.

    They come from the dataset's training masks; when the dataset is not on
    this machine (``--dry-run`` elsewhere), from the study's published weights.
    """
    try:
        stats = context.pixel_stats(dataset)
    except DataError:
        published = published_ratios(dataset)
        if not published:
            raise
        logger.info(
            "dataset %s not found here; starting from the study's published weight ratios %s", dataset, published
        )
        return published
    ratios = []
    for scheme in ("cdw", "median_frequency"):
        background, foreground = compute_class_weights(scheme, stats)
        ratios.append(round(foreground / background, 4))
    return distinct(ratios)


def distinct(ratios: list[float], tolerance: float = 0.01) -> list[float]:
    """Return the sorted ratios, dropping any within ``tolerance`` (relative) of a smaller one.

    With a lesion in every image, cdw and median frequency give the same ratio,
    and one starting trial is enough.
    """
    kept: list[float] = []
    for ratio in sorted(ratios):
        if not kept or ratio > kept[-1] * (1 + tolerance):
            kept.append(ratio)
    return kept


def build(context: SpaceContext) -> SearchSpace:
    datasets = sorted(context.dataset_paths) or (
        list(STUDY_DATASETS)
        if context.data_root is None
        else [d for d in STUDY_DATASETS if (context.data_root / d).is_dir()] or context.available_datasets()
    )
    studies = []
    for dataset in datasets:
        points = [{"weight_ratio": ratio} for ratio in starting_ratios(context, dataset)]

        def searcher(param_space, points=points):
            return OptunaSearch(points_to_evaluate=points, seed=0)

        def scheduler(param_space):
            epochs = int(param_space["epochs"])
            return ASHAScheduler(
                time_attr="epoch",
                max_t=epochs,
                grace_period=max(1, min(5, epochs // 4)),
                reduction_factor=3,
                # A trial that reaches the last epoch finishes by itself, so it logs its test metrics and model.
                stop_last_trials=False,
            )

        param_space = {
            "dataset": dataset,
            "class_weights": "ratio",
            "weight_ratio": tune.loguniform(*RATIO_RANGE),
            "arch": "unet",
            "encoder": "resnet34",
            "encoder_weights": "imagenet",
            "app": "none",
            "seed": 0,
            "epochs": EPOCHS,
            "batch_size": 16,
        }
        studies.append(
            Study(
                name=dataset,
                param_space=param_space,
                num_samples=SAMPLES_PER_DATASET,
                search_alg=searcher,
                scheduler=scheduler,
            )
        )
    return SearchSpace(
        name="ce_weights",
        description=f"Optuna TPE + ASHA over the CE weight ratio on {VAL_IOU}, one search per dataset.",
        studies=tuple(studies),
        seeds=1,
        resources={"cpu": 4, "gpu": 1},
    )
