"""Builders for the data tests: dataset layouts made in temporary folders from the real shared images.

This module contains no tests. The other ``test_data_*`` modules import its
functions to build the ``isic2017``, ``dermofit``, ``dermatomyositis`` and
``folder`` layouts from the real images under the shared data folder, and to
check that a failed preparation left nothing behind in the cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from segcore.data.layouts.dermatomyositis import MARKERS
from segcore.data.layouts.isic2017 import SPLIT_FOLDERS

NUCLEI = "dsb2018_fluo_nuclei"
LESIONS = "isic2017_val_lesion"
SLIDE_SHAPE = (1408, 1876)


def real_pairs(shared_data: Path, name: str) -> list[tuple[Path, Path]]:
    """Return the sorted ``(image, mask)`` paths of one shared dataset."""
    images = sorted((shared_data / name / "images").iterdir())
    masks = {path.stem: path for path in (shared_data / name / "masks").iterdir()}
    return [(image, masks[image.stem]) for image in images]


def read_pixels(path: Path) -> np.ndarray:
    """Decode a real image or mask with Pillow, independently of the code under test."""
    with Image.open(path) as image:
        return np.asarray(image)


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as PNG, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def copy_pairs(shared_data: Path, name: str, root: Path, count: int | None = None) -> list[str]:
    """Copy the first ``count`` real pairs of ``name`` into a ``folder`` layout at ``root``; return their stems."""
    pairs = real_pairs(shared_data, name)[:count]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for image, mask in pairs:
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(mask, root / "masks" / mask.name)
    return [image.stem for image, _ in pairs]


def build_isic2017(shared_data: Path, root: Path, counts: dict[str, int]) -> dict[str, list[str]]:
    """Lay out the real lesion photos as the ISIC 2017 challenge released them; return the stems per split.

    Each data folder also gets a superpixel image and a metadata CSV, which the
    reader must ignore.
    """
    pairs = real_pairs(shared_data, LESIONS)
    stems: dict[str, list[str]] = {}
    start = 0
    for split, (image_folder, mask_folder) in SPLIT_FOLDERS.items():
        (root / image_folder).mkdir(parents=True)
        (root / mask_folder).mkdir(parents=True)
        chosen = pairs[start : start + counts[split]]
        start += counts[split]
        for image, mask in chosen:
            shutil.copy(image, root / image_folder / image.name)
            shutil.copy(mask, root / mask_folder / f"{image.stem}_segmentation.png")
        first = chosen[0][0].stem
        write_png(root / image_folder / f"{first}_superpixels.png", np.zeros((4, 4, 3), np.uint8))
        (root / image_folder / f"{image_folder}_metadata.csv").write_text("image_id,age_approximate\n")
        stems[split] = [image.stem for image, _ in chosen]
    return stems


def build_dermofit(shared_data: Path, root: Path, classes: tuple[str, ...] = ("BCC", "MEL", "SK")) -> dict[str, str]:
    """Lay out the real lesion photos as Dermofit does (``<class>/<id>/<id>.png``, ``<id>mask.png``).

    The photos are decoded at a quarter of their size (JPEG draft mode) to keep
    the test fast, so every lesion keeps its own size. Lesions are dealt to the
    classes in turn; returns the class of every lesion id.
    """
    classes_of: dict[str, str] = {}
    for index, (image, mask) in enumerate(real_pairs(shared_data, LESIONS)):
        lesion_class = classes[index % len(classes)]
        lesion = f"{lesion_class[0]}{index}"
        folder = root / lesion_class / lesion
        with Image.open(image) as photo:
            photo.draft("RGB", (photo.width // 4, photo.height // 4))
            small = photo.convert("RGB")
        with Image.open(mask) as outline:
            small_mask = outline.resize(small.size, Image.Resampling.NEAREST)
        folder.mkdir(parents=True)
        # Fast PNG compression: the default level takes most of the build time.
        small.save(folder / f"{lesion}.png", compress_level=1)
        small_mask.save(folder / f"{lesion}mask.png", compress_level=1)
        classes_of[lesion] = lesion_class
    return classes_of


def slide_page(path: Path) -> np.ndarray:
    """Return a real nuclei image repeated and cropped to the 1408 x 1876 slide size."""
    pixels = read_pixels(path)
    reps = (-(-SLIDE_SHAPE[0] // pixels.shape[0]), -(-SLIDE_SHAPE[1] // pixels.shape[1]))
    return np.tile(pixels, reps)[: SLIDE_SHAPE[0], : SLIDE_SHAPE[1]]


def build_dermatomyositis(
    shared_data: Path, root: Path, slides: int, pages: int = len(MARKERS)
) -> dict[str, np.ndarray]:
    """Write ``slides`` multi-page TIFF slides of 1408 x 1876 px built from real nuclei images.

    Page ``p`` of slide ``s`` repeats the real image ``s * pages + p``, so every
    page of every slide differs. The mask repeats the real instance-label mask
    of the first page's image and is stored as a 16-bit PNG. The first slide is
    zlib-compressed. Returns every slide's pages as ``(pages, H, W)`` ``uint8``
    plus its mask under ``<slide>/mask``.
    """
    pairs = real_pairs(shared_data, NUCLEI)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    arrays: dict[str, np.ndarray] = {}
    for slide in range(slides):
        stem = f"slide{slide:02d}"
        sources = pairs[slide * pages : (slide + 1) * pages]
        stack = np.stack([slide_page(image) for image, _ in sources])
        mask = slide_page(sources[0][1])
        # minisblack keeps a stack of 3 or 4 pages from being written as one RGB(A) page.
        compression = "zlib" if slide == 0 else None
        tifffile.imwrite(root / "images" / f"{stem}.tif", stack, photometric="minisblack", compression=compression)
        write_png(root / "masks" / f"{stem}.png", mask)
        arrays[stem] = stack
        arrays[f"{stem}/mask"] = mask
    return arrays


def cache_entries(cache_dir: Path) -> list[Path]:
    """Return the complete entries (folders with ``meta.json``) of the prepared-sample cache."""
    prepared = cache_dir / "prepared"
    if not prepared.is_dir():
        return []
    return sorted(path for path in prepared.iterdir() if (path / "meta.json").is_file())


def staging_folders(cache_dir: Path) -> list[Path]:
    """Return the staging folders (``*.tmp-*``) anywhere under the cache."""
    if not cache_dir.is_dir():
        return []
    return sorted(cache_dir.rglob("*.tmp-*"))
