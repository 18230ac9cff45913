"""The ``dermatomyositis`` layout: multi-page TIFF slides of muscle biopsies.

``ROOT/images/<slide>.tif`` has 8 pages in the order of ``MARKERS``;
``ROOT/masks/<slide>.png|tif`` is the slide's cell mask. An optional
``ROOT/splits.csv`` (``stem``, ``split`` and/or ``group``) fixes the split or
names the patient of each slide, so that one patient's slides stay in one split.
Slides are cut into 480 x 480 tiles after the split, so tiles of one slide never
cross splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcore.data.errors import DataError
from segcore.data.imageio import count_pages
from segcore.data.layouts.base import Layout, list_image_files, pair_files, records_from_pairs
from segcore.data.records import SampleRecord

MARKERS = ("DAPI", "CXCR3", "CD19", "CXCR5", "PD1", "CD4", "CD27", "autofluorescence")


def marker_page(marker: str) -> int:
    """Return the 0-based page of ``marker`` (case-insensitive)."""
    names = [name.lower() for name in MARKERS]
    if str(marker).lower() not in names:
        raise DataError(f"unknown marker {marker!r}; valid markers: {', '.join(MARKERS)}")
    return names.index(str(marker).lower())


class DermatomyositisLayout(Layout):
    """Multi-page TIFF slides, one page per marker, with one mask per slide."""

    name = "dermatomyositis"
    expected = (
        "ROOT/images/<slide>.tif (8 pages: "
        + ", ".join(MARKERS)
        + ") and ROOT/masks/<slide>.png|tif, optional ROOT/splits.csv"
    )
    options = {"marker": "DAPI"}
    preprocessing = {"tile_size": 480}

    def list_samples(self, root: Path | None, options: dict[str, Any], cache_dir: Path) -> list[SampleRecord]:
        root = self.check_root(root)
        page = marker_page(options["marker"])
        images = list_image_files(self.require_folder(root, "images"))
        masks = list_image_files(self.require_folder(root, "masks"))
        pairs = pair_files(images, masks, root)
        for _, image, _ in pairs:
            if image.suffix.lower() not in (".tif", ".tiff"):
                raise DataError(f"slide {image} is not a TIFF file; layout 'dermatomyositis' expects {self.expected}")
            pages = count_pages(image)
            if pages <= page:
                raise DataError(
                    f"slide {image} has {pages} page(s), but marker {options['marker']} is page {page + 1} "
                    f"(page order: {', '.join(MARKERS)}). Choose another marker or fix the file."
                )
        return records_from_pairs(pairs, root / "splits.csv", page=page)
