"""The training configuration: one configuration of the study, as a frozen dataclass."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from segcore.config_types import check_field_types
from segcore.data.class_weights import SCHEMES
from segcore.data.config import DataConfig
from segcore.models.app import APP_SETTINGS
from segcore.models.factory import architecture_class, check_encoder


class ConfigError(ValueError):
    """Raised for an invalid or unknown configuration value."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides one training run.

    The defaults are the study's: U-Net with a ResNet-18 encoder of depth 3
    and ImageNet weights, decoder channels (256, 128, 64) with scSE attention,
    Adam at lr 3.6e-4 and weight decay 1e-5, cosine annealing (T_max 50,
    minimum lr 3.4e-4) stepped per epoch, 50 epochs, batch size 16, cdw weights.

    Attributes:
        data: Dataset and preprocessing.
        arch: smp architecture name.
        encoder: smp encoder name.
        encoder_weights: ``"imagenet"``, ``None``, or a local weights file.
        weights_cache: Folder of pre-fetched ImageNet weights.
        app: Autoencoder post-processing: ``none``, ``relu`` or ``gelu``.
        app_lr: Learning rate of the APP's own Adam optimiser.
        class_weights: A scheme name (``dedl``, ``cdw``, ``median_frequency``,
            ``uniform``, ``ratio``) or explicit ``(background, foreground)``.
        weight_ratio: Foreground/background ratio for the ``ratio`` scheme.
        seed: Training seed (model initialisation, shuffling, augmentation).
        workers: Data loader worker processes; ``None`` picks half the
            threads torch may use, at most 4.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: bf16 autocast; ``None`` turns it on for CUDA only.
        channels_last: channels-last memory format; ``None`` turns it on for CUDA only.
        overlays: Number of test images drawn as PNG overlays at the end.
    """

    data: DataConfig = field(default_factory=DataConfig)
    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = "imagenet"
    weights_cache: str | None = None
    encoder_depth: int = 3
    decoder_channels: tuple[int, ...] = (256, 128, 64)
    decoder_attention: str | None = "scse"
    app: str = "none"
    app_lr: float = 1e-3
    class_weights: str | tuple[float, float] = "cdw"
    weight_ratio: float | None = None
    seed: int = 0
    epochs: int = 50
    batch_size: int = 16
    lr: float = 3.6e-4
    weight_decay: float = 1e-5
    lr_min: float = 3.4e-4
    cosine_t_max: int = 50
    workers: int | None = None
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    overlays: int = 4

    def __post_init__(self) -> None:
        check_field_types(self, ConfigError)
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        if not isinstance(self.class_weights, str):
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
            if len(self.class_weights) != 2:
                raise ConfigError(
                    f"class_weights must be a scheme name or [background, foreground], got {self.class_weights}"
                )
        elif self.class_weights not in SCHEMES:
            raise ConfigError(
                f"unknown class_weights {self.class_weights!r}; valid: {', '.join(SCHEMES)} or [background, foreground]"
            )
        if self.class_weights == "ratio" and (self.weight_ratio is None or self.weight_ratio <= 0):
            raise ConfigError(f"class_weights 'ratio' needs a positive weight_ratio, got {self.weight_ratio!r}")
        if self.app not in APP_SETTINGS:
            raise ConfigError(f"unknown app {self.app!r}; valid: {', '.join(APP_SETTINGS)}")
        try:
            architecture_class(self.arch)
            check_encoder(self.encoder)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if len(self.decoder_channels) != self.encoder_depth:
            raise ConfigError(
                f"decoder_channels {self.decoder_channels} has {len(self.decoder_channels)} entries but encoder_depth "
                f"is {self.encoder_depth}; give one entry per encoder stage"
            )
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ConfigError(f"invalid device {self.device!r}; use auto, cpu, cuda or cuda:N") from None
        for name in ("epochs", "batch_size", "encoder_depth", "cosine_t_max"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("lr", "app_lr", "lr_min", "weight_decay"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {self.workers}")
        if self.encoder_weights in ("none", "None", ""):
            object.__setattr__(self, "encoder_weights", None)

    @classmethod
    def field_names(cls) -> list[str]:
        """Return the flat keys accepted by :meth:`from_dict`: training and data settings."""
        train = [f.name for f in fields(cls) if f.name != "data"]
        return train + [f.name for f in fields(DataConfig)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build a config from one flat dict of training and data settings.

        Raises:
            ConfigError: for keys that are neither, listing the valid keys.
        """
        train_names = {f.name for f in fields(cls)} - {"data"}
        data_names = {f.name for f in fields(DataConfig)}
        unknown = sorted(set(values) - train_names - data_names)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; valid settings: {', '.join(cls.field_names())}"
            )
        data = DataConfig.from_dict({k: v for k, v in values.items() if k in data_names})
        return cls(data=data, **{k: v for k, v in values.items() if k in train_names})

    def to_dict(self) -> dict[str, Any]:
        """Return the flat dict that :meth:`from_dict` reads back."""
        values = asdict(self)
        data = values.pop("data")
        data["layout_options"] = dict(self.data.layout_options)
        return {**values, **data}

    def save(self, path: Path) -> None:
        """Write the config as JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config written by :meth:`save`."""
        return cls.from_dict(json.loads(path.read_text()))
