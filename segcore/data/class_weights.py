"""Cross-entropy class weights computed from the training masks.

With ``f`` the foreground fraction of all training pixels:

- ``dedl``: background ``1 - f``, foreground ``f`` (the DEDL "distribution" weights).
- ``cdw``: background ``f``, foreground ``1 - f`` (cross-distribution weights).
- ``median_frequency`` (Eigen & Fergus 2015): ``freq_c`` is the pixels of class
  ``c`` over the total pixels of the training images in which ``c`` is present,
  and ``weight_c = median(freq) / freq_c``; with two classes the median is the
  mean of the two frequencies.
- ``uniform``: ``(1, 1)``.
- ``ratio``: background ``1 / (1 + r)``, foreground ``r / (1 + r)`` for a given
  foreground/background ratio ``r``.
- explicit ``(background, foreground)`` numbers.

All weights are returned in the order ``(background, foreground)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from segcore.data.errors import DataError

SCHEMES = ("dedl", "cdw", "median_frequency", "uniform", "ratio")
FREQUENCY_SCHEMES = ("dedl", "cdw", "median_frequency")


@dataclass(frozen=True)
class PixelStats:
    """Pixel counts of a split's masks, enough for every weight scheme.

    Attributes:
        foreground: Foreground pixels over all images.
        total: All pixels over all images.
        pixels_in_images_with_foreground: Total pixels of the images that hold
            at least one foreground pixel.
        pixels_in_images_with_background: Total pixels of the images that hold
            at least one background pixel.
        images: Number of images (tiles, for tiled datasets).
    """

    foreground: int
    total: int
    pixels_in_images_with_foreground: int
    pixels_in_images_with_background: int
    images: int

    @property
    def background(self) -> int:
        """Background pixels over all images."""
        return self.total - self.foreground

    @property
    def foreground_fraction(self) -> float:
        """Foreground pixels over all pixels, ``f``."""
        return self.foreground / self.total if self.total else float("nan")

    def to_dict(self) -> dict[str, int]:
        """Return the counts as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> PixelStats:
        """Count the pixels of ``(N, H, W)`` masks with values {0, 1}."""
        if masks.ndim != 3:
            raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
        per_image = masks.reshape(masks.shape[0], -1).sum(axis=1, dtype=np.int64)
        image_pixels = masks.shape[1] * masks.shape[2]
        return cls(
            foreground=int(per_image.sum()),
            total=int(masks.shape[0] * image_pixels),
            pixels_in_images_with_foreground=int((per_image > 0).sum() * image_pixels),
            pixels_in_images_with_background=int((per_image < image_pixels).sum() * image_pixels),
            images=int(masks.shape[0]),
        )

    def __add__(self, other: PixelStats) -> PixelStats:
        return PixelStats(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


def _check_both_classes(stats: PixelStats, scheme: str) -> None:
    if stats.total == 0:
        raise DataError(f"class weights {scheme!r}: the training split has no pixels")
    if stats.foreground == 0:
        raise DataError(
            f"class weights {scheme!r}: the training split has no foreground pixels, so the weights would "
            "divide by zero. Check that the masks mark the region of interest with values above 0, "
            "or give explicit weights [background, foreground]."
        )
    if stats.foreground == stats.total:
        raise DataError(
            f"class weights {scheme!r}: every training pixel is foreground, so the weights would divide by "
            "zero. Check the masks, or give explicit weights [background, foreground]."
        )


def median_frequency_weights(stats: PixelStats) -> tuple[float, float]:
    """Return the median-frequency weights ``(background, foreground)``."""
    _check_both_classes(stats, "median_frequency")
    frequency_background = stats.background / stats.pixels_in_images_with_background
    frequency_foreground = stats.foreground / stats.pixels_in_images_with_foreground
    median = (frequency_background + frequency_foreground) / 2
    return median / frequency_background, median / frequency_foreground


def compute_class_weights(
    scheme: str | Sequence[float], stats: PixelStats | None = None, ratio: float | None = None
) -> tuple[float, float]:
    """Return the ``(background, foreground)`` weights of ``scheme``.

    Args:
        scheme: A name from ``SCHEMES`` or explicit ``(background, foreground)`` weights.
        stats: Pixel counts of the training split; needed by ``dedl``, ``cdw``
            and ``median_frequency``.
        ratio: Foreground/background ratio for the ``ratio`` scheme.

    Raises:
        DataError: for an unknown scheme, invalid weights, or a training split
            whose masks hold a single class.
    """
    if not isinstance(scheme, str):
        weights = tuple(float(value) for value in scheme)
        if len(weights) != 2 or min(weights) < 0 or max(weights) <= 0 or not all(np.isfinite(weights)):
            raise DataError(
                f"explicit class weights must be two non-negative finite numbers [background, foreground], got {scheme!r}"
            )
        return weights[0], weights[1]
    if scheme not in SCHEMES:
        raise DataError(
            f"unknown class weight scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)} or [background, foreground]"
        )
    if scheme == "uniform":
        return 1.0, 1.0
    if scheme == "ratio":
        if ratio is None or not np.isfinite(ratio) or ratio <= 0:
            raise DataError(f"class weight scheme 'ratio' needs a positive weight_ratio, got {ratio!r}")
        return 1 / (1 + ratio), ratio / (1 + ratio)
    if stats is None:
        raise ValueError(f"class weight scheme {scheme!r} needs the training pixel statistics")
    if scheme == "median_frequency":
        return median_frequency_weights(stats)
    _check_both_classes(stats, scheme)
    fraction = stats.foreground_fraction
    if scheme == "dedl":
        return 1 - fraction, fraction
    return fraction, 1 - fraction


def all_scheme_weights(stats: PixelStats) -> dict[str, tuple[float, float] | str]:
    """Return the weights of every data-derived scheme, or the error text where one fails."""
    table: dict[str, tuple[float, float] | str] = {}
    for scheme in (*FREQUENCY_SCHEMES, "uniform"):
        try:
            table[scheme] = compute_class_weights(scheme, stats)
        except DataError as error:
            table[scheme] = str(error)
    return table
