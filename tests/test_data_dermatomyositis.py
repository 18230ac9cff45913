"""The dermatomyositis layout on multi-page TIFF slides built from real nuclei images, and tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from segcore.data import DataConfig, DataError, prepare_dataset
from segcore.data.layouts.dermatomyositis import MARKERS, marker_page
from segcore.data.layouts.detect import detect_layout
from segcore.data.prepare import PreparedDataset, list_records
from segcore.data.records import SPLITS
from segcore.data.tiling import cut_tiles, stitch_tiles, tile_grid
from tests.test_data_builders import SLIDE_SHAPE, build_dermatomyositis, cache_entries, staging_folders

SLIDES = 6


@pytest.fixture(scope="module")
def slides(shared_data, tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("dermatomyositis")
    return root, build_dermatomyositis(shared_data, root, SLIDES)


@pytest.fixture(scope="module")
def prepared(slides, tmp_path_factory) -> PreparedDataset:
    root, _ = slides
    cache_dir = tmp_path_factory.mktemp("dermatomyositis-cache")
    return prepare_dataset(
        DataConfig.from_dict({"layout": "dermatomyositis", "root": str(root), "cache_dir": str(cache_dir)})
    )


def tiles_of(prepared: PreparedDataset, slide: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the image and mask tiles of ``slide`` in the order they are stored."""
    for split in SPLITS:
        arrays = prepared.splits[split]
        indices = [index for index, source in enumerate(arrays.sources) if source == slide]
        if indices:
            return arrays.images[indices], arrays.masks[indices]
    raise AssertionError(f"slide {slide} is in no split")


def test_tile_grid_of_study_slide():
    assert tile_grid(1408, 1876, 480) == (3, 4)


def test_cut_tiles_pads_bottom_right():
    slide = np.arange(1, 13, dtype=np.uint8).reshape(3, 4)
    tiles = cut_tiles(slide, 2)
    assert tiles.shape == (4, 2, 2)
    assert np.array_equal(tiles[1], [[3, 4], [7, 8]])
    assert np.array_equal(tiles[3], [[11, 12], [0, 0]])


def test_stitch_inverts_cut_with_channels():
    slide = np.random.default_rng(0).integers(0, 65535, (37, 53, 3), dtype=np.uint16)
    assert np.array_equal(stitch_tiles(cut_tiles(slide, 16), 37, 53), slide)


def test_stitch_rejects_wrong_tile_count():
    with pytest.raises(ValueError, match="cannot cover"):
        stitch_tiles(np.zeros((11, 480, 480), np.uint8), *SLIDE_SHAPE)


def test_marker_page_order():
    assert [marker_page(marker) for marker in MARKERS] == list(range(8))
    assert marker_page("cd4") == 5


def test_unknown_marker_lists_valid_ones():
    with pytest.raises(DataError, match="unknown marker 'CD8'; valid markers: DAPI, CXCR3"):
        marker_page("CD8")


def test_study_tile_size_default(slides):
    config = DataConfig.from_dict({"layout": "dermatomyositis", "root": str(slides[0])})
    assert config.tile_size == 480
    assert config.layout_options["marker"] == "DAPI"


def test_twelve_tiles_per_slide(prepared):
    counts = {split: len(prepared.splits[split]) for split in SPLITS}
    assert sum(counts.values()) == 12 * SLIDES
    assert prepared.image_shape == (480, 480)
    for split in SPLITS:
        assert all(prepared.splits[split].sources.count(source) == 12 for source in prepared.splits[split].sources)


def test_tile_ids_name_row_and_column(prepared):
    ids = [sample_id for split in SPLITS for sample_id in prepared.splits[split].ids]
    assert "slide00@r0c0" in ids
    assert "slide00@r2c3" in ids


def test_tiles_of_slide_stay_in_one_split(prepared):
    sources = {split: set(prepared.splits[split].sources) for split in SPLITS}
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    assert {split: len(sources[split]) for split in SPLITS} == {"train": 4, "val": 1, "test": 1}


def test_stitched_tiles_give_back_slide(prepared, slides):
    _, arrays = slides
    for slide in ("slide00", "slide03"):
        images, masks = tiles_of(prepared, slide)
        assert np.array_equal(stitch_tiles(images[..., 0], *SLIDE_SHAPE), arrays[slide][0])
        assert np.array_equal(stitch_tiles(masks, *SLIDE_SHAPE), (arrays[f"{slide}/mask"] > 0).astype(np.uint8))


def test_padding_is_background(prepared):
    images, masks = tiles_of(prepared, "slide01")
    # Row 2 of the tile grid covers slide rows 960..1439; rows 1408.. are padding.
    bottom = 1408 - 960
    assert not images[8:, bottom:].any()
    assert not masks[8:, bottom:].any()


def test_marker_selects_page(slides, tmp_path):
    root, arrays = slides
    config = DataConfig.from_dict(
        {
            "layout": "dermatomyositis",
            "root": str(root),
            "layout_options": {"marker": "CD4"},
            "max_images": 6,
            "cache_dir": str(tmp_path),
        }
    )
    prepared = prepare_dataset(config)
    images, _ = tiles_of(prepared, "slide02")
    assert np.array_equal(stitch_tiles(images[..., 0], *SLIDE_SHAPE), arrays["slide02"][MARKERS.index("CD4")])


def test_marker_changes_cache_key(slides, prepared, tmp_path):
    root, _ = slides
    config = DataConfig.from_dict(
        {
            "layout": "dermatomyositis",
            "root": str(root),
            "layout_options": {"marker": "CD19"},
            "cache_dir": str(prepared.folder.parent.parent),
        }
    )
    assert prepare_dataset(config).folder != prepared.folder


def test_too_few_pages_for_marker(shared_data, tmp_path):
    root = tmp_path / "slides"
    build_dermatomyositis(shared_data, root, slides=1, pages=4)
    config = DataConfig.from_dict(
        {
            "layout": "dermatomyositis",
            "root": str(root),
            "layout_options": {"marker": "PD1"},
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    with pytest.raises(
        DataError, match=r"slide00\.tif has 4 page\(s\), but marker PD1 is page 5 .*Choose another marker"
    ):
        prepare_dataset(config)
    assert not cache_entries(tmp_path / "cache")
    assert not staging_folders(tmp_path / "cache")


def test_slide_that_is_not_tiff(slides, tmp_path):
    root = tmp_path / "png_slides"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    source = slides[0] / "masks" / "slide00.png"
    (root / "images" / "slide00.png").write_bytes(source.read_bytes())
    (root / "masks" / "slide00.png").write_bytes(source.read_bytes())
    with pytest.raises(DataError, match=r"slide00\.png is not a TIFF file"):
        list_records(DataConfig.from_dict({"layout": "dermatomyositis", "root": str(root), "cache_dir": str(tmp_path)}))


def test_patient_groups_from_splits_csv(slides, tmp_path):
    root = tmp_path / "grouped"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for folder in ("images", "masks"):
        for path in (slides[0] / folder).iterdir():
            (root / folder / path.name).symlink_to(path)
    patients = {f"slide{index:02d}": f"patient{index // 2}" for index in range(SLIDES)}
    splits = {"patient0": "train", "patient1": "val", "patient2": "test"}
    rows = [f"{slide},{splits[patient]},{patient}" for slide, patient in patients.items()]
    (root / "splits.csv").write_text("stem,split,group\n" + "\n".join(rows) + "\n")
    records = list_records(
        DataConfig.from_dict({"layout": "dermatomyositis", "root": str(root), "cache_dir": str(tmp_path)})
    )
    assert {record.stem: record.split for record in records} == {
        slide: splits[patient] for slide, patient in patients.items()
    }
    assert {record.stem: record.group for record in records} == patients


def test_detect_slides(slides):
    assert detect_layout(slides[0]) == ("dermatomyositis", {})


def test_slide_pages_written_as_pages(slides):
    root, _ = slides
    with tifffile.TiffFile(root / "images" / "slide01.tif") as tif:
        assert len(tif.pages) == 8
        assert tif.pages[0].shape == SLIDE_SHAPE
