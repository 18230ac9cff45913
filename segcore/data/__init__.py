"""Datasets: layout readers, splits, preprocessing, class weights and the sample cache."""

from segcore.data.class_weights import PixelStats, compute_class_weights
from segcore.data.config import DataConfig
from segcore.data.errors import DataError
from segcore.data.prepare import PreparedDataset, prepare_dataset

__all__ = ["DataConfig", "DataError", "PixelStats", "PreparedDataset", "compute_class_weights", "prepare_dataset"]
