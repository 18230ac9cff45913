"""PNG overlays of image, ground truth and prediction for a few test samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

GROUND_TRUTH_COLOUR = np.array([0, 200, 0], np.float32)
PREDICTION_COLOUR = np.array([230, 0, 170], np.float32)


def to_display(image: np.ndarray) -> np.ndarray:
    """Convert a stored ``(H, W, C)`` image to ``(H, W, 3)`` ``uint8`` for display."""
    image = image.astype(np.float32)
    image = image / (65535.0 if image.max() > 255 else 255.0) * 255.0
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 2:
        image = np.concatenate([image, image[:, :, :1]], axis=2)
    return np.clip(image[:, :, :3], 0, 255).astype(np.uint8)


def tint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend ``colour`` into ``image`` where ``mask`` is 1."""
    blended = image.astype(np.float32)
    blended[mask > 0] = (1 - alpha) * blended[mask > 0] + alpha * colour
    return blended.astype(np.uint8)


def overlay_panel(image: np.ndarray, mask: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Return ``[image | ground truth | prediction]`` side by side, ``(H, 3 W, 3)`` ``uint8``."""
    display = to_display(image)
    return np.concatenate(
        [display, tint(display, mask, GROUND_TRUTH_COLOUR), tint(display, prediction, PREDICTION_COLOUR)], axis=1
    )


@torch.no_grad()
def write_overlays(network, dataset, count: int, folder: Path, device: torch.device) -> list[Path]:
    """Draw the first ``count`` samples of ``dataset`` with their prediction into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    network.eval()
    paths = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        prediction = network.predict(sample["image"][None].to(device))[0].cpu().numpy()
        panel = overlay_panel(
            np.asarray(dataset.arrays.images[index]), np.asarray(dataset.arrays.masks[index]), prediction
        )
        name = dataset.arrays.ids[index].replace("/", "_").replace("@", "_")
        path = folder / f"{index:02d}_{name}.png"
        Image.fromarray(panel).save(path)
        paths.append(path)
    return paths
