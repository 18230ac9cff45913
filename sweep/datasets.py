"""Named datasets of a sweep: where their folders are and how they are read.

A search space names datasets (``isic2017``, ``dermofit``, ``dermatomyositis``
or any folder name); the sweep finds each as ``DATA_ROOT/<name>``, where the
data root comes from ``--data-root`` or ``$SEGSWEEP_DATA_ROOT``. The layout of
a folder is detected, or declared in its ``dataset.toml``. Datasets of the
study get the study's preprocessing for their name, whatever layout they are
stored in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segcore.data.errors import DataError
from segcore.data.layouts import LAYOUTS
from segcore.data.layouts.detect import detect_layout

DATA_ROOT_VARIABLE = "SEGSWEEP_DATA_ROOT"

# Download sources of the study's datasets, shown when one is missing.
STUDY_SOURCES = {
    "isic2017": "Download it from https://challenge.isic-archive.com/data/#2017 (public, CC-0).",
    "dermofit": "License it from https://licensing.edinburgh-innovations.ed.ac.uk/product/dermofit-image-library.",
    "dermatomyositis": "It is private to the study's authors (NYU) and not distributed.",
}
STUDY_DATASETS = tuple(STUDY_SOURCES)
SYNTHETIC_DATASETS = {"synthetic-nuclei": "nuclei", "synthetic-lesion": "lesion"}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset resolved to a layout and a folder.

    Attributes:
        name: Name used by the search space and in every record.
        layout: Layout name.
        root: Dataset folder, absolute (``None`` for synthetic data).
        layout_options: Options of the layout.
        preprocessing: Data settings that the dataset's name implies (the
            study's preprocessing for its datasets).
    """

    name: str
    layout: str
    root: str | None
    layout_options: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def data_settings(self) -> dict[str, Any]:
        """Return the flat data settings for ``TrainConfig.from_dict``."""
        return {
            "dataset": self.name,
            "layout": self.layout,
            "root": self.root,
            "layout_options": dict(self.layout_options),
            **self.preprocessing,
        }


def resolve_data_root(data_root: str | Path | None) -> Path | None:
    """Return ``data_root``, else ``$SEGSWEEP_DATA_ROOT``, as an absolute path, or ``None``."""
    value = data_root or os.environ.get(DATA_ROOT_VARIABLE)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise DataError(
            f"data root {path} does not exist or is not a folder; pass --data-root with the folder that holds one sub-folder per dataset"
        )
    return path


def resolve_dataset(name: str, data_root: Path | None, overrides: dict[str, Path] | None = None) -> DatasetSpec:
    """Return the spec of dataset ``name``.

    Raises:
        DataError: when the dataset's folder is missing, saying which layout
            the folder should have and where the data comes from.
    """
    if name in SYNTHETIC_DATASETS:
        return DatasetSpec(name=name, layout="synthetic", root=None, layout_options={"kind": SYNTHETIC_DATASETS[name]})
    folder = (overrides or {}).get(name) or (data_root / name if data_root else None)
    if folder is None or not Path(folder).is_dir():
        expected = LAYOUTS[name].expected if name in LAYOUTS else LAYOUTS["folder"].expected
        where = f"{folder}" if folder else f"(no data root: pass --data-root or set {DATA_ROOT_VARIABLE})"
        source = f" {STUDY_SOURCES[name]}" if name in STUDY_SOURCES else ""
        raise DataError(f"dataset {name!r} not found at {where}; its folder should hold {expected}.{source}")
    folder = Path(folder).resolve()
    layout, options = detect_layout(folder)
    preprocessing = dict(LAYOUTS[name].preprocessing) if name in LAYOUTS and name in STUDY_SOURCES else {}
    return DatasetSpec(name=name, layout=layout, root=str(folder), layout_options=options, preprocessing=preprocessing)


def discover_datasets(data_root: Path) -> list[str]:
    """Return the names of the sub-folders of ``data_root`` whose layout can be detected."""
    names = []
    for folder in sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            detect_layout(folder)
        except DataError:
            continue
        names.append(folder.name)
    if not names:
        raise DataError(
            f"no dataset folders found under {data_root}; each sub-folder needs a known layout "
            f"({', '.join(LAYOUTS)}) or a dataset.toml naming it"
        )
    return names
