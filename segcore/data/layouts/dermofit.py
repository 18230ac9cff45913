"""The ``dermofit`` layout: one folder per lesion class, one folder per lesion.

``ROOT/<class>/<lesion id>/<lesion id>.png`` contains the photograph and
``<lesion id>mask.png`` its mask, as in the Dermofit Image Library
(classes AK, BCC, DF, IEC, MEL, ML, PYO, SCC, SK, VASC). The split is 70/10/20,
stratified by class, from the split seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcore.data.errors import DataError, format_stems
from segcore.data.layouts.base import Layout
from segcore.data.records import SampleRecord


class DermofitLayout(Layout):
    """Dermofit Image Library: class folders, lesion folders, ``<id>.png`` and ``<id>mask.png``."""

    name = "dermofit"
    expected = "ROOT/<class>/<lesion id>/<lesion id>.png with <lesion id>mask.png beside it"
    preprocessing = {"resize_steps": (480,), "image_size": 224, "rnorm": True}

    def list_samples(self, root: Path | None, options: dict[str, Any], cache_dir: Path) -> list[SampleRecord]:
        root = self.check_root(root)
        records = []
        incomplete = []
        for class_folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for lesion_folder in sorted(p for p in class_folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                lesion = lesion_folder.name
                image = lesion_folder / f"{lesion}.png"
                mask = lesion_folder / f"{lesion}mask.png"
                if not image.is_file() or not mask.is_file():
                    incomplete.append(f"{class_folder.name}/{lesion}")
                    continue
                records.append(
                    SampleRecord(stem=lesion, image=image, mask=mask, group=lesion, stratum=class_folder.name)
                )
        if incomplete:
            raise DataError(
                f"{len(incomplete)} lesion folder(s) under {root} lack <id>.png or <id>mask.png: "
                f"{format_stems(incomplete)}. Complete or remove them."
            )
        if not records:
            raise DataError(f"no lesions found under {root}; layout 'dermofit' expects {self.expected}")
        stems = [record.stem for record in records]
        duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
        if duplicates:
            raise DataError(
                f"lesion id(s) found in more than one class folder under {root}: {format_stems(duplicates)}"
            )
        return records
