"""The study's grid: 840 training runs, five seeds each, no early stopping.

datasets {dermatomyositis, dermofit, isic2017} x weights {cdw, median_frequency},
plus dedl on dermatomyositis (7 dataset/weight pairs), x architectures
{unet, unetplusplus} x encoders {resnet18, resnet34, resnet50, resnet101}
x APP {none, relu, gelu} x seeds {0..4}: 7 x 2 x 4 x 3 x 5 = 840.

Every run: ImageNet encoder weights, depth 3, decoder (256, 128, 64) with scSE,
Adam lr 3.6e-4, weight decay 1e-5, cosine annealing to 3.4e-4, 50 epochs,
batch size 16; the best validation checkpoint is tested.
"""

from ray import tune

from sweep.datasets import STUDY_DATASETS
from sweep.spaces import SearchSpace, SpaceContext, Study

SEEDS = [0, 1, 2, 3, 4]
TASKS = [
    {"dataset": dataset, "class_weights": weights}
    for dataset in STUDY_DATASETS
    for weights in ("cdw", "median_frequency")
] + [{"dataset": "dermatomyositis", "class_weights": "dedl"}]


def build(context: SpaceContext) -> SearchSpace:
    param_space = {
        "task": tune.grid_search(TASKS),
        "arch": tune.grid_search(["unet", "unetplusplus"]),
        "encoder": tune.grid_search(["resnet18", "resnet34", "resnet50", "resnet101"]),
        "app": tune.grid_search(["none", "relu", "gelu"]),
        "seed": tune.grid_search(SEEDS),
        "encoder_weights": "imagenet",
        "epochs": 50,
        "batch_size": 16,
    }
    return SearchSpace(
        name="paper_grid",
        description="The study's 840-run grid (7 dataset/weight pairs x 2 architectures x 4 encoders x 3 APP x 5 seeds).",
        studies=(Study(name="grid", param_space=param_space),),
        seeds=len(SEEDS),
        resources={"cpu": 4, "gpu": 1},
    )
