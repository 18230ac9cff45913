"""Segmentation networks, the APP head and encoder weights."""

from segcore.models.app import APP_SETTINGS, AutoencoderPostProcessing
from segcore.models.factory import ARCHITECTURES, build_model
from segcore.models.network import SegmentationNetwork
from segcore.models.weights import EncoderWeightsError

__all__ = [
    "APP_SETTINGS",
    "ARCHITECTURES",
    "AutoencoderPostProcessing",
    "EncoderWeightsError",
    "SegmentationNetwork",
    "build_model",
]
