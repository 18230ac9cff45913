"""The training loop, its configuration and checkpoints."""

from segcore.training.config import ConfigError, TrainConfig
from segcore.training.loop import NonFiniteLossError, TrainResult, train_and_evaluate

__all__ = ["ConfigError", "NonFiniteLossError", "TrainConfig", "TrainResult", "train_and_evaluate"]
