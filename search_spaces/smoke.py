"""A few-minute sweep on 2 CPU cores: two configurations per dataset.

With ``--data-root`` it runs on every dataset folder found there (layout
detected or declared in ``dataset.toml``); without one, on generated synthetic
nuclei and lesion images, so that it works on a machine with nothing else.
Images are resized to 64 px and at most 12 images per dataset are used.
"""

from ray import tune

from sweep.spaces import SearchSpace, SpaceContext, Study

CONFIGURATIONS = [
    {"arch": "unet", "app": "none", "class_weights": "cdw"},
    {"arch": "unetplusplus", "app": "relu", "class_weights": "median_frequency"},
]


def build(context: SpaceContext) -> SearchSpace:
    param_space = {
        "dataset": tune.grid_search(context.available_datasets()),
        "configuration": tune.grid_search(CONFIGURATIONS),
        "encoder": "resnet18",
        "encoder_weights": None,
        "seed": 0,
        "epochs": 2,
        "batch_size": 4,
        "image_size": 64,
        "resize_steps": [],
        "max_images": 12,
        "workers": 0,
        "overlays": 2,
    }
    return SearchSpace(
        name="smoke",
        description="Two small configurations per dataset, 2 epochs at 64 px: checks the whole path in minutes on a CPU.",
        studies=(Study(name="grid", param_space=param_space),),
        seeds=1,
        resources={"cpu": 1, "gpu": 0},
        max_failures=1,
    )
