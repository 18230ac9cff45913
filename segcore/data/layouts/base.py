"""Common parts of the layout readers: option checks, file pairing and ``splits.csv``."""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from segcore.data.errors import DataError, format_stems
from segcore.data.imageio import IMAGE_SUFFIXES
from segcore.data.records import SPLITS, SampleRecord

SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


class Layout(ABC):
    """A way of storing an image/mask dataset on disk.

    Class attributes:
        name: Registry name, as given to ``--layout``.
        expected: One sentence describing the folder structure, used in errors.
        options: Layout options with their defaults; unknown options are rejected.
        preprocessing: ``DataConfig`` fields that reproduce the study's
            preprocessing for this layout (resize, tiling, Rnorm).
        needs_root: ``False`` for layouts that generate their data.
    """

    name: ClassVar[str]
    expected: ClassVar[str]
    options: ClassVar[Mapping[str, Any]] = {}
    preprocessing: ClassVar[Mapping[str, Any]] = {}
    needs_root: ClassVar[bool] = True

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Return the layout's options with defaults filled in; reject unknown names."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(self.options) or "none"
            raise DataError(f"unknown option(s) {', '.join(unknown)} for layout {self.name!r}; valid options: {valid}")
        return {**self.options, **options}

    def check_root(self, root: str | Path | None) -> Path:
        """Return ``root`` as a path after checking that it is an existing folder."""
        if root is None:
            raise DataError(f"layout {self.name!r} needs a data root: {self.expected}")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataError(
                f"data root {path} does not exist or is not a folder; layout {self.name!r} expects {self.expected}"
            )
        return path

    def require_folder(self, root: Path, name: str) -> Path:
        """Return ``root / name`` after checking that it exists."""
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"folder {folder} is missing; layout {self.name!r} expects {self.expected}")
        return folder

    @abstractmethod
    def list_samples(self, root: Path | None, options: dict[str, Any], cache_dir: Path) -> list[SampleRecord]:
        """Find every image/mask pair under ``root``."""


def list_image_files(folder: Path) -> dict[str, Path]:
    """Map the stem of every image file in ``folder`` to its path; other files are ignored."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            raise DataError(
                f"two files in {folder} share the stem {path.stem!r}: {files[path.stem].name} and {path.name}. "
                "Keep one of them."
            )
        files[path.stem] = path
    return files


def pair_files(images: dict[str, Path], masks: dict[str, Path], where: Path) -> list[tuple[str, Path, Path]]:
    """Match images and masks by stem; raise listing the stems that have no partner."""
    without_mask = sorted(set(images) - set(masks))
    without_image = sorted(set(masks) - set(images))
    problems = []
    if without_mask:
        problems.append(f"{len(without_mask)} image(s) without a mask: {format_stems(without_mask)}")
    if without_image:
        problems.append(f"{len(without_image)} mask(s) without an image: {format_stems(without_image)}")
    if problems:
        raise DataError(
            f"images and masks under {where} do not match; " + "; ".join(problems) + ". Add or remove the files."
        )
    if not images:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found under {where}.")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def read_splits_csv(path: Path, stems: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Read ``splits.csv``: a ``stem`` column and a ``split`` column, a ``group`` column, or both.

    Returns a mapping from stem to ``(split, group)``. Every stem of the dataset
    needs a row, and every row needs a stem of the dataset.
    """
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet programs put before the header.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip().lower() for name in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
            columns = set(header)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path}: {error}. Save it as a UTF-8 CSV file.") from error
    if "stem" not in columns or not columns & {"split", "group"}:
        raise DataError(
            f"{path} needs a header with 'stem' and 'split' and/or 'group' columns; found {sorted(columns)}"
        )
    table: dict[str, tuple[str | None, str | None]] = {}
    for line, row in enumerate(rows, start=2):
        stem = (row.get("stem") or "").strip()
        split = (row.get("split") or "").strip().lower() or None
        group = (row.get("group") or "").strip() or None
        if split is not None and split not in SPLIT_ALIASES:
            raise DataError(f"{path} line {line}: split {split!r} is invalid; use one of {', '.join(SPLITS)}")
        if stem in table:
            raise DataError(f"{path} line {line}: stem {stem!r} is listed twice")
        table[stem] = (SPLIT_ALIASES[split] if split else None, group)
    missing = sorted(set(stems) - set(table))
    unknown = sorted(set(table) - set(stems))
    if missing:
        raise DataError(f"{path} has no row for {len(missing)} sample(s): {format_stems(missing)}. Add a row for each.")
    if unknown:
        raise DataError(
            f"{path} lists {len(unknown)} stem(s) with no image/mask pair: {format_stems(unknown)}. Remove those rows or add the files."
        )
    splits_given = {split is not None for split, _ in table.values()}
    if len(splits_given) > 1:
        raise DataError(f"{path}: either every row or no row must give a split")
    return table


def records_from_pairs(
    pairs: list[tuple[str, Path, Path]], splits_csv: Path | None, page: int = 0
) -> list[SampleRecord]:
    """Build records from matched pairs, taking split and group from ``splits_csv`` when it exists."""
    table = read_splits_csv(splits_csv, [stem for stem, _, _ in pairs]) if splits_csv and splits_csv.is_file() else {}
    records = []
    for stem, image, mask in pairs:
        split, group = table.get(stem, (None, None))
        records.append(SampleRecord(stem=stem, image=image, mask=mask, split=split, group=group, page=page))
    return records
