"""Detection of a dataset folder's layout, or reading it from ``dataset.toml``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from segcore.data.errors import DataError
from segcore.data.imageio import TIFF_SUFFIXES, count_pages
from segcore.data.layouts import LAYOUTS
from segcore.data.layouts.dermatomyositis import MARKERS
from segcore.data.layouts.isic2017 import SPLIT_FOLDERS

DECLARATION_FILE = "dataset.toml"


def _read_declaration(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        declaration = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    layout = declaration.get("layout")
    if layout not in LAYOUTS:
        raise DataError(f"{path}: 'layout' is {layout!r}; set it to one of {', '.join(LAYOUTS)}")
    options = declaration.get("options", {})
    if not isinstance(options, dict):
        raise DataError(f"{path}: 'options' must be a table, got {type(options).__name__}")
    return layout, options


def _looks_like_dermofit(root: Path) -> bool:
    for class_folder in (p for p in root.iterdir() if p.is_dir()):
        for lesion_folder in (p for p in class_folder.iterdir() if p.is_dir()):
            if (lesion_folder / f"{lesion_folder.name}mask.png").is_file():
                return True
    return False


def _looks_like_slides(images: Path) -> bool:
    tiffs = [p for p in images.iterdir() if p.suffix.lower() in TIFF_SUFFIXES]
    return (
        bool(tiffs)
        and len(tiffs) == sum(1 for p in images.iterdir() if p.is_file() and not p.name.startswith("."))
        and (count_pages(tiffs[0]) == len(MARKERS))
    )


def detect_layout(root: Path) -> tuple[str, dict[str, Any]]:
    """Return the layout name and options of the dataset folder ``root``.

    A ``dataset.toml`` in ``root`` (``layout = "..."`` and an optional
    ``[options]`` table) takes precedence; otherwise the folder structure decides.
    """
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    declaration = root / DECLARATION_FILE
    if declaration.is_file():
        return _read_declaration(declaration)
    if all((root / folder).is_dir() for pair in SPLIT_FOLDERS.values() for folder in pair):
        return "isic2017", {}
    if (root / "images").is_dir() and (root / "masks").is_dir():
        if _looks_like_slides(root / "images"):
            return "dermatomyositis", {}
        return "folder", {}
    if _looks_like_dermofit(root):
        return "dermofit", {}
    raise DataError(
        f"cannot tell the layout of {root}: it matches none of {', '.join(LAYOUTS)}. "
        f'Write a {DECLARATION_FILE} there with a line layout = "<name>".'
    )
