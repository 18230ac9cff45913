"""The ``isic2017`` layout: the ISIC 2017 challenge (part 1) folders as released.

The challenge published six folders; their names and file names are kept as
downloaded from https://challenge.isic-archive.com/data/#2017:

- ``ISIC-2017_Training_Data/ISIC_<id>.jpg`` with ``ISIC-2017_Training_Part1_GroundTruth/ISIC_<id>_segmentation.png``
- the same for ``Validation`` and ``Test_v2``.

Superpixel images (``ISIC_<id>_superpixels.png``) and metadata CSV files are
ignored. The official split (2000 / 150 / 600) is used as is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from segcore.data.errors import DataError
from segcore.data.layouts.base import Layout, pair_files
from segcore.data.records import SampleRecord

SPLIT_FOLDERS = {
    "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
    "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
}
IMAGE_NAME = re.compile(r"^(ISIC_\d+)\.jpe?g$", re.IGNORECASE)
MASK_NAME = re.compile(r"^(ISIC_\d+)_segmentation\.png$", re.IGNORECASE)


def _match_files(folder: Path, pattern: re.Pattern[str]) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if match and path.is_file():
            files[match.group(1)] = path
    return files


class Isic2017Layout(Layout):
    """ISIC 2017 lesion segmentation with the official training, validation and test folders."""

    name = "isic2017"
    expected = (
        "the ISIC 2017 part 1 folders ISIC-2017_Training_Data, ISIC-2017_Training_Part1_GroundTruth, "
        "ISIC-2017_Validation_Data, ISIC-2017_Validation_Part1_GroundTruth, ISIC-2017_Test_v2_Data and "
        "ISIC-2017_Test_v2_Part1_GroundTruth, holding ISIC_<id>.jpg and ISIC_<id>_segmentation.png"
    )
    preprocessing = {"resize_steps": (480,), "image_size": 224, "rnorm": True}

    def list_samples(self, root: Path | None, options: dict[str, Any], cache_dir: Path) -> list[SampleRecord]:
        root = self.check_root(root)
        missing = [name for pair in SPLIT_FOLDERS.values() for name in pair if not (root / name).is_dir()]
        if missing:
            raise DataError(
                f"folder(s) {', '.join(missing)} missing under {root}; layout 'isic2017' expects {self.expected}"
            )
        records = []
        for split, (image_folder, mask_folder) in SPLIT_FOLDERS.items():
            images = _match_files(root / image_folder, IMAGE_NAME)
            masks = _match_files(root / mask_folder, MASK_NAME)
            for stem, image, mask in pair_files(images, masks, root / image_folder):
                records.append(SampleRecord(stem=stem, image=image, mask=mask, split=split))
        return records
