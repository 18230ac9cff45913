"""The data configuration: which dataset, how it is split and preprocessed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from segcore.config_types import check_field_types
from segcore.data.errors import DataError
from segcore.data.layouts import get_layout

CACHE_ENVIRONMENT_VARIABLE = "SEGSWEEP_CACHE_DIR"


def default_cache_dir() -> Path:
    """Return ``$SEGSWEEP_CACHE_DIR``, else ``$XDG_CACHE_HOME/segsweep``, else ``~/.cache/segsweep``."""
    if os.environ.get(CACHE_ENVIRONMENT_VARIABLE):
        return Path(os.environ[CACHE_ENVIRONMENT_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segsweep"


@dataclass(frozen=True)
class DataConfig:
    """Location of a dataset and the steps that turn it into training samples.

    Attributes:
        dataset: Name shown in logs, tables and cache folders; defaults to the
            root folder's name, or the layout's name without a root. Names of
            ``synthetic`` datasets always contain "synthetic".
        layout: Layout name (see ``segcore.data.layouts.LAYOUTS``).
        root: Dataset folder; unused by the ``synthetic`` layout.
        layout_options: Options of the layout (``marker`` for dermatomyositis,
            ``page`` for TIFF folders, ``kind`` for synthetic data).
        split_seed: Seed of the 70/10/20 split, independent of the training seed.
        resize_steps: Square sides to resize to, in order, before ``image_size``
            (the study resizes lesion photos to 480 and then 224).
        image_size: Final square side after resizing; ``None`` keeps the
            native size.
        tile_size: Cut each (resized) image into square tiles of this side,
            zero-padded at the bottom and right; ``None`` for no tiling.
        rnorm: Apply Rnorm (chromaticity normalisation, see
            ``segcore.data.transforms.rnorm``) to RGB images.
        augment: Apply the training augmentation (rotation up to 3 degrees,
            horizontal and vertical flips) to the training split.
        max_images: Use a deterministic subset of this many source images
            (before tiling), for quick runs; ``None`` uses every image.
        cache_dir: Folder of the decoded-sample cache; defaults to
            :func:`default_cache_dir`.
    """

    dataset: str | None = None
    layout: str = "synthetic"
    root: str | None = None
    layout_options: Mapping[str, Any] = field(default_factory=dict)
    split_seed: int = 0
    resize_steps: tuple[int, ...] = ()
    image_size: int | None = None
    tile_size: int | None = None
    rnorm: bool = False
    augment: bool = True
    max_images: int | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_field_types(self, DataError)
        layout = get_layout(self.layout)
        object.__setattr__(self, "layout_options", layout.resolve_options(dict(self.layout_options)))
        object.__setattr__(self, "resize_steps", tuple(int(side) for side in self.resize_steps))
        if self.dataset is None:
            name = Path(self.root).name if self.root else self.layout
            if self.layout == "synthetic":
                name = f"synthetic-{self.layout_options['kind']}"
            object.__setattr__(self, "dataset", name)
        elif self.layout == "synthetic" and "synthetic" not in self.dataset:
            # Generated data must never pass for real data in logs, tables and tracked runs.
            object.__setattr__(self, "dataset", f"synthetic-{self.dataset}")
        for name in ("image_size", "tile_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 8):
                raise DataError(f"{name} must be an integer of at least 8 pixels or None, got {value!r}")
        if any(side < 8 for side in self.resize_steps):
            raise DataError(f"resize_steps must be sides of at least 8 pixels, got {self.resize_steps}")
        if self.resize_steps and self.image_size is None:
            raise DataError(f"resize_steps {self.resize_steps} need a final image_size")
        if self.max_images is not None and self.max_images < 3:
            raise DataError(f"max_images must be at least 3 (one image per split), got {self.max_images}")
        if layout.needs_root and self.root is None:
            raise DataError(f"layout {self.layout!r} needs a data root: {layout.expected}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
        """Build a config from ``values``, filling unset fields with the layout's study preprocessing.

        Raises:
            DataError: for keys that are not fields, listing the valid ones.
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise DataError(f"unknown data setting(s) {', '.join(unknown)}; valid settings: {', '.join(names)}")
        layout = get_layout(values.get("layout", cls.layout))
        return cls(**{**layout.preprocessing, **values})

    def with_overrides(self, **changes: Any) -> DataConfig:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    def resolved_cache_dir(self) -> Path:
        """Return the cache folder as a path."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
