"""The ``folder`` layout: ``images/`` and ``masks/`` with matching file stems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcore.data.layouts.base import Layout, list_image_files, pair_files, records_from_pairs
from segcore.data.records import SampleRecord


class FolderLayout(Layout):
    """``ROOT/images/<stem>.<ext>`` and ``ROOT/masks/<stem>.<ext>``, optional ``ROOT/splits.csv``.

    Without ``splits.csv`` the split is drawn from the split seed (70/10/20).
    Option ``page`` selects the page (0-based) of multi-page TIFF images.
    """

    name = "folder"
    expected = "ROOT/images/<stem>.png|jpg|tif and ROOT/masks/<stem>.png|tif with the same stems, and an optional ROOT/splits.csv"
    options = {"page": 0}

    def list_samples(self, root: Path | None, options: dict[str, Any], cache_dir: Path) -> list[SampleRecord]:
        root = self.check_root(root)
        images = list_image_files(self.require_folder(root, "images"))
        masks = list_image_files(self.require_folder(root, "masks"))
        pairs = pair_files(images, masks, root)
        return records_from_pairs(pairs, root / "splits.csv", page=int(options["page"]))
