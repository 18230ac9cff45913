"""The sample record: one image/mask pair found by a layout reader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SampleRecord:
    """One image file and its mask, before decoding.

    Attributes:
        stem: Identifier of the sample, unique within the dataset.
        image: Path of the image file.
        mask: Path of the mask file.
        split: ``train``, ``val`` or ``test`` when the layout fixes the split,
            otherwise ``None``.
        group: Samples with the same group (slide, patient, lesion) always land
            in the same split.
        stratum: Class used to stratify the split (``None`` for no stratification).
        page: TIFF page to read from the image file (0-based).
    """

    stem: str
    image: Path
    mask: Path
    split: str | None = None
    group: str | None = None
    stratum: str | None = None
    page: int = 0

    @property
    def group_key(self) -> str:
        """Group used for splitting: the record's own stem when it has no group."""
        return self.group if self.group is not None else self.stem
