"""Bad input: one DataError that names the file or value and the fix, and nothing half-done in the cache."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segcore.data import DataConfig, DataError, compute_class_weights, prepare_dataset
from segcore.data.__main__ import main as data_main
from segcore.data.imageio import read_image
from tests.test_data_builders import (
    NUCLEI,
    build_isic2017,
    cache_entries,
    copy_pairs,
    read_pixels,
    real_pairs,
    staging_folders,
    write_png,
)


@pytest.fixture
def nuclei_copy(shared_data, tmp_path) -> Path:
    """Ten real nuclei pairs copied into a folder layout that the test may break."""
    root = tmp_path / "nuclei"
    copy_pairs(shared_data, NUCLEI, root, count=10)
    return root


def first_stem(root: Path) -> str:
    return sorted((root / "images").iterdir())[0].stem


def config_for(root: Path, **changes) -> DataConfig:
    settings = {
        "layout": "folder",
        "root": str(root),
        "image_size": 32,
        "cache_dir": str(root.parent / "cache"),
        **changes,
    }
    return DataConfig.from_dict(settings)


def assert_fails_cleanly(config: DataConfig, pattern: str) -> DataError:
    """Check that preparing ``config`` raises a DataError matching ``pattern`` and caches nothing."""
    with pytest.raises(DataError, match=pattern) as caught:
        prepare_dataset(config)
    cache_dir = config.resolved_cache_dir()
    assert not cache_entries(cache_dir)
    assert not staging_folders(cache_dir)
    return caught.value


@pytest.mark.parametrize("layout", ["folder", "isic2017", "dermofit", "dermatomyositis"])
def test_missing_root_names_layout(tmp_path, layout):
    missing = tmp_path / "nowhere"
    config = DataConfig.from_dict({"layout": layout, "root": str(missing), "cache_dir": str(tmp_path / "cache")})
    assert_fails_cleanly(
        config, f"data root {re.escape(str(missing))} does not exist or is not a folder; layout '{layout}' expects "
    )


def test_missing_masks_folder(nuclei_copy):
    shutil.rmtree(nuclei_copy / "masks")
    assert_fails_cleanly(
        config_for(nuclei_copy), r"folder .*nuclei/masks is missing; layout 'folder' expects ROOT/images/"
    )


def test_missing_isic_folder(shared_data, tmp_path):
    build_isic2017(shared_data, tmp_path / "isic", {"train": 3, "val": 1, "test": 1})
    shutil.rmtree(tmp_path / "isic" / "ISIC-2017_Validation_Part1_GroundTruth")
    config = DataConfig.from_dict(
        {"layout": "isic2017", "root": str(tmp_path / "isic"), "cache_dir": str(tmp_path / "cache")}
    )
    assert_fails_cleanly(
        config, r"folder\(s\) ISIC-2017_Validation_Part1_GroundTruth missing under .*layout 'isic2017' expects"
    )


def test_missing_dermatomyositis_images(tmp_path):
    (tmp_path / "slides" / "masks").mkdir(parents=True)
    config = DataConfig.from_dict(
        {"layout": "dermatomyositis", "root": str(tmp_path / "slides"), "cache_dir": str(tmp_path / "cache")}
    )
    assert_fails_cleanly(
        config, r"folder .*slides/images is missing; layout 'dermatomyositis' expects ROOT/images/<slide>.tif \(8 pages"
    )


def test_images_without_masks(nuclei_copy):
    stems = sorted(path.stem for path in (nuclei_copy / "masks").iterdir())[:2]
    for stem in stems:
        (nuclei_copy / "masks" / f"{stem}.png").unlink()
    error = assert_fails_cleanly(config_for(nuclei_copy), r"2 image\(s\) without a mask: .*Add or remove the files")
    assert all(stem in str(error) for stem in stems)


def test_masks_without_images(nuclei_copy):
    stem = first_stem(nuclei_copy)
    (nuclei_copy / "images" / f"{stem}.png").unlink()
    assert_fails_cleanly(config_for(nuclei_copy), rf"1 mask\(s\) without an image: {stem}\. Add or remove the files")


def test_dermofit_lesion_without_mask(tmp_path, shared_data):
    folder = tmp_path / "dermofit" / "MEL" / "M1"
    folder.mkdir(parents=True)
    image, _ = real_pairs(shared_data, "isic2017_val_lesion")[0]
    write_png(folder / "M1.png", read_pixels(image))
    config = DataConfig.from_dict(
        {"layout": "dermofit", "root": str(tmp_path / "dermofit"), "cache_dir": str(tmp_path / "cache")}
    )
    assert_fails_cleanly(
        config, r"1 lesion folder\(s\) under .* lack <id>.png or <id>mask.png: MEL/M1\. Complete or remove them"
    )


def test_garbage_image(nuclei_copy):
    stem = first_stem(nuclei_copy)
    (nuclei_copy / "images" / f"{stem}.png").write_bytes(b"not an image at all")
    assert_fails_cleanly(
        config_for(nuclei_copy), rf"cannot decode image .*{stem}\.png: .*replace or remove it with its mask"
    )


def test_empty_image_file(nuclei_copy):
    stem = first_stem(nuclei_copy)
    (nuclei_copy / "images" / f"{stem}.png").write_bytes(b"")
    assert_fails_cleanly(config_for(nuclei_copy), rf"cannot decode image .*{stem}\.png")


def test_truncated_png_mask(nuclei_copy):
    stem = first_stem(nuclei_copy)
    mask = nuclei_copy / "masks" / f"{stem}.png"
    mask.write_bytes(mask.read_bytes()[: mask.stat().st_size // 2])
    assert_fails_cleanly(
        config_for(nuclei_copy),
        rf"cannot decode mask .*{stem}\.png: image file is truncated.*replace or remove it with its image",
    )


def test_truncated_jpeg_image(shared_data, tmp_path):
    root = tmp_path / "lesions"
    copy_pairs(shared_data, "isic2017_val_lesion", root, count=6)
    image = sorted((root / "images").iterdir())[0]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    assert_fails_cleanly(config_for(root), rf"cannot decode image .*{image.name}: image file is truncated")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_image(nuclei_copy, compression):
    stem = first_stem(nuclei_copy)
    png = nuclei_copy / "images" / f"{stem}.png"
    tiff = png.with_suffix(".tif")
    tifffile.imwrite(tiff, read_pixels(png), compression=compression)
    png.unlink()
    tiff.write_bytes(tiff.read_bytes()[: tiff.stat().st_size // 2])
    assert_fails_cleanly(
        config_for(nuclei_copy),
        rf"cannot read TIFF file .*{stem}\.tif: .*unreadable or truncated; replace or remove it",
    )


@pytest.mark.skipif(importlib.util.find_spec("imagecodecs") is not None, reason="imagecodecs decodes LZW")
def test_lzw_tiff_without_imagecodecs(nuclei_copy):
    stem = first_stem(nuclei_copy)
    png = nuclei_copy / "images" / f"{stem}.png"
    with Image.open(png) as image:
        image.save(png.with_suffix(".tif"), compression="tiff_lzw")
    png.unlink()
    assert_fails_cleanly(
        config_for(nuclei_copy), rf"cannot decode TIFF file .*{stem}\.tif: .*Install the imagecodecs package"
    )


def test_image_mask_size_mismatch(nuclei_copy):
    stem = first_stem(nuclei_copy)
    mask = nuclei_copy / "masks" / f"{stem}.png"
    write_png(mask, read_pixels(mask)[:-3, :-5])
    assert_fails_cleanly(
        config_for(nuclei_copy),
        rf"image .*{stem}\.png is 520 x 696 but its mask .* is 517 x 691 .*must have the same size",
    )


def test_page_beyond_tiff_pages(nuclei_copy):
    for png in (nuclei_copy / "images").iterdir():
        tifffile.imwrite(png.with_suffix(".tif"), np.stack([read_pixels(png)] * 2), photometric="minisblack")
        png.unlink()
    assert_fails_cleanly(
        config_for(nuclei_copy, layout_options={"page": 2}),
        r"\.tif has 2 page\(s\), but page 3 was requested. Check the marker or page option",
    )


def test_page_option_on_png(nuclei_copy):
    assert_fails_cleanly(
        config_for(nuclei_copy, layout_options={"page": 1}),
        r"page 2 was requested from .*\.png, but only TIFF files have pages",
    )


def test_too_many_image_channels(nuclei_copy):
    stem = first_stem(nuclei_copy)
    png = nuclei_copy / "images" / f"{stem}.png"
    pixels = read_pixels(png)
    tifffile.imwrite(
        png.with_suffix(".tif"), np.stack([pixels] * 5, axis=2), photometric="minisblack", planarconfig="contig"
    )
    png.unlink()
    assert_fails_cleanly(
        config_for(nuclei_copy), rf"image .*{stem}\.tif has shape \(520, 696, 5\); expected .* 1 to 4 channels"
    )


def test_float_image_out_of_range(nuclei_copy):
    stem = first_stem(nuclei_copy)
    png = nuclei_copy / "images" / f"{stem}.png"
    tifffile.imwrite(png.with_suffix(".tif"), read_pixels(png).astype(np.float32))
    png.unlink()
    assert_fails_cleanly(config_for(nuclei_copy), rf"{stem}\.tif has pixel type float32 with range .*Convert the file")


def test_mixed_channels_rejected(nuclei_copy, shared_data):
    stem = first_stem(nuclei_copy)
    png = nuclei_copy / "images" / f"{stem}.png"
    write_png(png, np.stack([read_pixels(png)] * 3, axis=2))
    assert_fails_cleanly(config_for(nuclei_copy), rf"mixes images with \[1, 3\] channels; .*{stem}\.png\. Convert them")


def test_training_split_without_foreground(nuclei_copy):
    for mask in (nuclei_copy / "masks").iterdir():
        write_png(mask, np.zeros_like(read_pixels(mask)))
    prepared = prepare_dataset(config_for(nuclei_copy))
    stats = prepared.pixel_stats("train")
    assert stats.foreground == 0
    for scheme in ("cdw", "median_frequency", "dedl"):
        with pytest.raises(
            DataError,
            match=rf"class weights '{scheme}': the training split has no foreground pixels.*explicit weights \[background, foreground\]",
        ):
            compute_class_weights(scheme, stats)
    assert compute_class_weights("uniform", stats) == (1.0, 1.0)


def test_empty_validation_split(nuclei_copy):
    for path in sorted((nuclei_copy / "images").iterdir())[5:]:
        path.unlink()
        (nuclei_copy / "masks" / path.name).unlink()
    # 70/10/20 of 5 images gives 4/0/1.
    assert_fails_cleanly(
        config_for(nuclei_copy),
        r"the val split\(s\) of dataset 'nuclei' came out empty \(5 samples in all.*Add images, raise max_images",
    )


def test_empty_split_from_splits_csv(nuclei_copy):
    stems = sorted(path.stem for path in (nuclei_copy / "images").iterdir())
    (nuclei_copy / "splits.csv").write_text(
        "stem,split\n" + "".join(f"{stem},{'train' if index else 'test'}\n" for index, stem in enumerate(stems))
    )
    assert_fails_cleanly(config_for(nuclei_copy), r"the val split\(s\) of dataset 'nuclei' came out empty")


def test_splits_csv_missing_row(nuclei_copy):
    stems = sorted(path.stem for path in (nuclei_copy / "images").iterdir())
    (nuclei_copy / "splits.csv").write_text("stem,split\n" + "".join(f"{stem},train\n" for stem in stems[1:]))
    assert_fails_cleanly(
        config_for(nuclei_copy), rf"splits.csv has no row for 1 sample\(s\): {stems[0]}\. Add a row for each"
    )


def test_splits_csv_unknown_stem(nuclei_copy):
    stems = sorted(path.stem for path in (nuclei_copy / "images").iterdir())
    (nuclei_copy / "splits.csv").write_text("stem,group\n" + "".join(f"{stem},g\n" for stem in [*stems, "ghost"]))
    assert_fails_cleanly(
        config_for(nuclei_copy), r"lists 1 stem\(s\) with no image/mask pair: ghost\. Remove those rows"
    )


def test_splits_csv_invalid_split(nuclei_copy):
    stems = sorted(path.stem for path in (nuclei_copy / "images").iterdir())
    (nuclei_copy / "splits.csv").write_text("stem,split\n" + "".join(f"{stem},holdout\n" for stem in stems))
    assert_fails_cleanly(
        config_for(nuclei_copy), r"splits.csv line 2: split 'holdout' is invalid; use one of train, val, test"
    )


def test_splits_csv_without_columns(nuclei_copy):
    (nuclei_copy / "splits.csv").write_text("name,fold\na,1\n")
    assert_fails_cleanly(
        config_for(nuclei_copy),
        r"needs a header with 'stem' and 'split' and/or 'group' columns; found \['fold', 'name'\]",
    )


def test_duplicate_stems(nuclei_copy):
    stem = first_stem(nuclei_copy)
    shutil.copy(nuclei_copy / "images" / f"{stem}.png", nuclei_copy / "images" / f"{stem}.tif")
    assert_fails_cleanly(
        config_for(nuclei_copy), rf"share the stem '{stem}': {stem}\.png and {stem}\.tif\. Keep one of them"
    )


def test_read_missing_file(tmp_path):
    with pytest.raises(DataError, match="image file not found: .*absent.png"):
        read_image(tmp_path / "absent.png")


def test_invalid_image_size():
    with pytest.raises(DataError, match="image_size must be an integer of at least 8 pixels or None, got 4"):
        DataConfig(layout="synthetic", image_size=4)


def test_unknown_data_setting():
    with pytest.raises(DataError, match="unknown data setting\\(s\\) imagesize; valid settings: dataset, layout"):
        DataConfig.from_dict({"imagesize": 224})


def test_cli_error_without_traceback(nuclei_copy, capsys):
    stem = first_stem(nuclei_copy)
    (nuclei_copy / "images" / f"{stem}.png").write_bytes(b"broken")
    code = data_main(
        ["inspect", str(nuclei_copy), "--image-size", "32", "--cache-dir", str(nuclei_copy.parent / "cache")]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"error: cannot decode image {nuclei_copy / 'images' / stem}.png")
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_missing_root(tmp_path, capsys):
    code = data_main(["inspect", str(tmp_path / "nowhere"), "--layout", "folder"])
    assert code == 2
    assert "layout 'folder' expects ROOT/images/" in capsys.readouterr().err
