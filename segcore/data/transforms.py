"""Per-sample transforms applied when samples are loaded: augmentation, Rnorm, normalisation.

The cache stores images before these steps, so one cache entry serves every
setting of Rnorm and augmentation.
"""

from __future__ import annotations

import albumentations as A
import numpy as np
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Images that are not RGB use the mean of ImageNet's channel statistics for every channel.
GREY_MEAN = sum(IMAGENET_MEAN) / 3
GREY_STD = sum(IMAGENET_STD) / 3
MAX_ROTATION_DEGREES = 3


def rnorm(image: np.ndarray, **_: object) -> np.ndarray:
    """Rnorm: divide each channel of an RGB image by the pixel's R + G + B.

    The input is ``(H, W, 3)`` float in [0, 1]; the output is the normalised
    RGB (chromaticity) ``(r, g, b) = (R, G, B) / (R + G + B)``, so the three
    channels of a pixel sum to 1. Black pixels (R + G + B = 0) map to
    ``(0, 0, 0)``. This follows the normalised-RGB definition cited by the
    study (Thanh et al. 2019); the study gives no further detail.
    """
    total = image.sum(axis=2, keepdims=True)
    return np.divide(image, total, out=np.zeros_like(image), where=total > 0)


def normalisation_statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the per-channel mean and standard deviation used for ``channels`` channels."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (GREY_MEAN,) * channels, (GREY_STD,) * channels


def seed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Seed ``transform`` and each of its steps with its own seed drawn from ``seed``.

    ``Compose.set_random_seed`` in albumentations 2.0.8 gives every step the
    same seed, so the two flips (both p = 0.5) would always fire together and
    the rotation angle would follow the flip decision.
    """
    steps = list(transform.transforms)
    seeds = np.random.SeedSequence(seed).generate_state(len(steps) + 1)
    transform.set_random_seed(int(seeds[0]))
    for step, step_seed in zip(steps, seeds[1:], strict=True):
        if isinstance(step, A.BaseCompose):
            seed_transform(step, int(step_seed))
        else:
            step.set_random_seed(int(step_seed))


def build_transform(channels: int, max_value: int, augment: bool, apply_rnorm: bool) -> A.Compose:
    """Return the transform from a stored sample to network input.

    Input: image ``(H, W, C)`` ``uint8``/``uint16`` and mask ``(H, W)`` ``uint8``.
    Output: image ``(C, H, W)`` ``float32`` tensor and mask ``(H, W)`` ``uint8``
    tensor. Augmentation rotates (bilinear, zero fill) by up to 3 degrees and
    flips; masks use nearest-neighbour interpolation, so they stay binary.
    """
    steps: list[A.BasicTransform] = []
    if augment:
        steps += [
            A.Rotate(limit=MAX_ROTATION_DEGREES, border_mode=0, fill=0, fill_mask=0, p=1.0),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
        ]
    steps.append(A.ToFloat(max_value=max_value))
    if apply_rnorm and channels == 3:
        steps.append(A.Lambda(image=rnorm, name="rnorm"))
    mean, std = normalisation_statistics(channels)
    steps += [A.Normalize(mean=mean, std=std, max_pixel_value=1.0), ToTensorV2()]
    return A.Compose(steps)
