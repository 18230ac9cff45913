"""From a data configuration to decoded, split, preprocessed arrays in the cache.

The flow is: layout reader -> records -> subset -> split -> decode and check
each pair -> resize -> tile -> stack per split -> cache entry. The cache entry
contains ``<split>_images.npy`` ``(N, H, W, C)`` (``uint8`` or ``uint16``, before
normalisation), ``<split>_masks.npy`` ``(N, H, W)`` ``uint8`` {0, 1} and
``meta.json`` with the sample ids and the pixel statistics of every split.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np

from segcore.data import cache
from segcore.data.class_weights import PixelStats
from segcore.data.config import DataConfig
from segcore.data.errors import DataError, format_stems
from segcore.data.imageio import read_image, read_mask
from segcore.data.layouts import get_layout
from segcore.data.records import SPLITS, SampleRecord
from segcore.data.splits import assign_splits, check_splits_not_empty
from segcore.data.tiling import cut_tiles, tile_grid

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitArrays:
    """The prepared samples of one split.

    Attributes:
        images: ``(N, H, W, C)`` ``uint8`` or ``uint16``, memory-mapped from the cache.
        masks: ``(N, H, W)`` ``uint8`` with values {0, 1}.
        ids: Sample ids: the source stem, with ``@r<row>c<col>`` for tiles.
        sources: Source stem of every sample.
    """

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset ready for training: split arrays plus their metadata."""

    config: DataConfig
    folder: Path
    splits: dict[str, SplitArrays]
    meta: dict[str, Any]

    @property
    def channels(self) -> int:
        """Number of image channels ``C``."""
        return int(self.meta["channels"])

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of every prepared sample."""
        height, width = self.meta["image_shape"]
        return int(height), int(width)

    @property
    def max_value(self) -> int:
        """Largest value of the stored pixel type (255 or 65535)."""
        return int(np.iinfo(np.dtype(self.meta["dtype"])).max)

    def pixel_stats(self, split: str = "train") -> PixelStats:
        """Return the pixel counts of one split's masks."""
        return PixelStats(**self.meta["pixel_stats"][split])


def list_records(config: DataConfig) -> list[SampleRecord]:
    """Return the dataset's records with splits assigned and ``max_images`` applied."""
    layout = get_layout(config.layout)
    root = Path(config.root).expanduser() if config.root else None
    records = layout.list_samples(root, dict(config.layout_options), config.resolved_cache_dir())
    if config.max_images is not None and config.max_images < len(records):
        records = _subset(records, config.max_images, config.split_seed)
    records = assign_splits(records, config.split_seed)
    counts = Counter(record.split for record in records)
    check_splits_not_empty(dict(counts), f"dataset {config.dataset!r}")
    return records


def _subset(records: list[SampleRecord], count: int, seed: int) -> list[SampleRecord]:
    """Pick ``count`` records deterministically, proportionally per fixed split when there is one."""
    rng = np.random.default_rng(seed)
    if all(record.split is not None for record in records):
        chosen = []
        for split in SPLITS:
            members = [record for record in records if record.split == split]
            share = max(1, round(count * len(members) / len(records))) if members else 0
            chosen += [members[i] for i in sorted(rng.permutation(len(members))[:share])]
        return chosen
    groups = sorted({record.group_key for record in records})
    order = rng.permutation(len(groups))
    kept: set[str] = set()
    total = 0
    for index in order:
        if total >= count:
            break
        kept.add(groups[index])
        total += sum(1 for record in records if record.group_key == groups[index])
    return [record for record in records if record.group_key in kept]


def cache_key(config: DataConfig, records: list[SampleRecord]) -> str:
    """Return the cache key of a dataset: preprocessing settings plus file signatures."""
    root = Path(config.root).expanduser().resolve() if config.root else None
    files = [
        (
            record.stem,
            cache.file_signature(record.image.resolve(), root),
            cache.file_signature(record.mask.resolve(), root),
            record.split,
            record.group,
            record.stratum,
            record.page,
        )
        for record in records
    ]
    settings = {
        "format": cache.CACHE_FORMAT,
        "layout": config.layout,
        "layout_options": dict(config.layout_options),
        "resize_steps": config.resize_steps,
        "image_size": config.image_size,
        "tile_size": config.tile_size,
    }
    return cache.fingerprint({"settings": settings, "files": files})


def _resize_pipeline(config: DataConfig) -> A.Compose | None:
    if config.image_size is None:
        return None
    sides = (*config.resize_steps, config.image_size)
    # Bilinear for images; albumentations resizes masks with nearest neighbour,
    # so they stay binary.
    return A.Compose([A.Resize(side, side, interpolation=1) for side in sides])


def _decode(record: SampleRecord, config: DataConfig, resize: A.Compose | None) -> dict[str, Any]:
    image = read_image(record.image, record.page)
    mask = read_mask(record.mask)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"image {record.image} is {image.shape[0]} x {image.shape[1]} but its mask {record.mask} is "
            f"{mask.shape[0]} x {mask.shape[1]} (height x width). Image and mask must have the same size."
        )
    source_shape = image.shape[:2]
    if resize is not None:
        resized = resize(image=image, mask=mask)
        image, mask = resized["image"], resized["mask"]
        if image.ndim == 2:
            image = image[:, :, None]
    if config.tile_size is not None:
        rows, cols = tile_grid(image.shape[0], image.shape[1], config.tile_size)
        images = cut_tiles(image, config.tile_size)
        masks = cut_tiles(mask, config.tile_size)
        ids = [f"{record.stem}@r{row}c{col}" for row in range(rows) for col in range(cols)]
    else:
        images, masks, ids = image[None], mask[None], [record.stem]
    return {"images": images, "masks": masks, "ids": ids, "source_shape": source_shape, "record": record}


def _decode_all(records: list[SampleRecord], config: DataConfig) -> list[dict[str, Any]]:
    resize = _resize_pipeline(config)
    workers = min(8, os.cpu_count() or 1)
    decoded = []
    step = max(1, len(records) // 10)
    # Decoding and resizing release the GIL (Pillow, OpenCV), so threads overlap them.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, item in enumerate(pool.map(lambda record: _decode(record, config, resize), records), start=1):
            decoded.append(item)
            if index == len(records) or (len(records) >= 100 and index % step == 0):
                logger.info("dataset %s: decoded %d/%d images", config.dataset, index, len(records))
    return decoded


def _check_consistency(decoded: list[dict[str, Any]], config: DataConfig) -> None:
    channels = Counter(item["images"].shape[-1] for item in decoded)
    if len(channels) > 1:
        common = channels.most_common(1)[0][0]
        odd = [item["record"].image.name for item in decoded if item["images"].shape[-1] != common]
        raise DataError(
            f"dataset {config.dataset!r} mixes images with {sorted(channels)} channels; most have {common}, "
            f"these differ: {format_stems(odd)}. Convert them to the same number of channels."
        )
    shapes = Counter(item["images"].shape[1:3] for item in decoded)
    if len(shapes) > 1:
        examples = {}
        for item in decoded:
            examples.setdefault(item["images"].shape[1:3], item["record"].stem)
        listing = "; ".join(f"{h} x {w} (e.g. {examples[(h, w)]})" for h, w in list(shapes)[:5])
        raise DataError(
            f"images of dataset {config.dataset!r} have {len(shapes)} different sizes: {listing}. "
            "Set image_size to resize them, or tile_size to cut them into tiles "
            "(--image-size N or --tile-size N; in a sweep --set image_size=N)."
        )


def _to_dtype(images: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Return ``images`` as ``dtype``, mapping 8-bit values 0..255 onto 0..65535 for ``uint16``."""
    if images.dtype == dtype:
        return images
    return images.astype(dtype) * 257


def _build_entry(staging: Path, config: DataConfig, records: list[SampleRecord], key: str) -> None:
    decoded = _decode_all(records, config)
    _check_consistency(decoded, config)
    dtype = np.uint16 if any(item["images"].dtype == np.uint16 for item in decoded) else np.uint8
    meta: dict[str, Any] = {
        "format": cache.CACHE_FORMAT,
        "key": key,
        "dataset": config.dataset,
        "layout": config.layout,
        "root": str(config.root) if config.root else None,
        "dtype": np.dtype(dtype).name,
        "channels": int(decoded[0]["images"].shape[-1]),
        "image_shape": list(decoded[0]["images"].shape[1:3]),
        "splits": {},
        "pixel_stats": {},
    }
    for split in SPLITS:
        items = [item for item in decoded if item["record"].split == split]
        # Scale each 8-bit image to the full 16-bit range before stacking, because
        # np.concatenate would promote it to uint16 with its values unchanged.
        images = np.concatenate([_to_dtype(item["images"], dtype) for item in items])
        masks = np.concatenate([item["masks"] for item in items])
        np.save(staging / f"{split}_images.npy", images)
        np.save(staging / f"{split}_masks.npy", masks)
        meta["splits"][split] = {
            "ids": [sample_id for item in items for sample_id in item["ids"]],
            "sources": [item["record"].stem for item in items for _ in item["ids"]],
            "source_shapes": [list(item["source_shape"]) for item in items],
            "groups": sorted({item["record"].group_key for item in items}),
            "strata": dict(Counter(str(item["record"].stratum) for item in items)),
        }
        meta["pixel_stats"][split] = PixelStats.from_masks(masks).to_dict()
    cache.write_meta(staging, meta)


def source_statistics(config: DataConfig) -> dict[str, dict[str, Any]]:
    """Return per split the source image sizes, channels and mask pixel statistics, at native size.

    Reads every pair once without caching or stacking, so it works for
    datasets whose images differ in size.
    """

    def measure(record: SampleRecord) -> tuple[SampleRecord, tuple[int, int], int, PixelStats]:
        image = read_image(record.image, record.page)
        mask = read_mask(record.mask)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"image {record.image} is {image.shape[:2]} but its mask {record.mask} is {mask.shape} (height, width)"
            )
        return record, image.shape[:2], image.shape[2], PixelStats.from_masks(mask[None])

    records = list_records(config)
    summary: dict[str, dict[str, Any]] = {
        split: {"source_shapes": [], "channels": Counter(), "stats": None} for split in SPLITS
    }
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for record, shape, channels, stats in pool.map(measure, records):
            entry = summary[record.split]
            entry["source_shapes"].append(list(shape))
            entry["channels"][channels] += 1
            entry["stats"] = stats if entry["stats"] is None else entry["stats"] + stats
    return summary


def _load_entry(folder: Path, config: DataConfig) -> PreparedDataset:
    meta = cache.read_meta(folder)
    splits = {}
    for split in SPLITS:
        info = meta["splits"][split]
        splits[split] = SplitArrays(
            images=np.load(folder / f"{split}_images.npy", mmap_mode="r"),
            masks=np.load(folder / f"{split}_masks.npy", mmap_mode="r"),
            ids=info["ids"],
            sources=info["sources"],
        )
    return PreparedDataset(config=config, folder=folder, splits=splits, meta=meta)


def prepare_dataset(config: DataConfig) -> PreparedDataset:
    """Return the dataset of ``config`` decoded, split and preprocessed, from the cache when possible.

    The first call for a dataset and preprocessing decodes every image and
    stores the arrays; later calls, from any process on the machine, memory-map
    them.

    Raises:
        DataError: for missing folders, unpaired or unreadable files, size
            mismatches, and splits that come out empty.
    """
    records = list_records(config)
    key = cache_key(config, records)
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(config.dataset))
    folder = config.resolved_cache_dir() / "prepared" / f"{safe_name}-{key[:16]}"
    cache.get_or_build(folder, lambda staging: _build_entry(staging, config, records, key))
    return _load_entry(folder, config)
