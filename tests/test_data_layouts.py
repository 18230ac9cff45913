"""Layout readers on the real shared images: folder directly, isic2017 and dermofit built in temporary folders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from segcore.data import DataConfig, DataError, prepare_dataset
from segcore.data.layouts import LAYOUTS, get_layout
from segcore.data.layouts.detect import detect_layout
from segcore.data.prepare import list_records
from segcore.data.records import SPLITS
from tests.test_data_builders import LESIONS, NUCLEI, build_dermofit, build_isic2017, read_pixels, real_pairs

ISIC_COUNTS = {"train": 14, "val": 3, "test": 5}


@pytest.fixture(scope="module")
def isic_root(shared_data, tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("isic2017")
    return root, build_isic2017(shared_data, root, ISIC_COUNTS)


@pytest.fixture(scope="module")
def dermofit_root(shared_data, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("dermofit")
    return root, build_dermofit(shared_data, root)


def test_layout_registry_names():
    assert set(LAYOUTS) == {"folder", "isic2017", "dermofit", "dermatomyositis", "synthetic"}


def test_unknown_layout_lists_valid_names():
    with pytest.raises(
        DataError, match="unknown layout 'voc'; valid layouts: folder, isic2017, dermofit, synthetic, dermatomyositis"
    ):
        get_layout("voc")


def test_unknown_layout_option_lists_valid_ones():
    with pytest.raises(DataError, match="unknown option.*colour.*valid options: page"):
        DataConfig(layout="folder", root="/unused", layout_options={"colour": 1})


def test_folder_reads_every_nuclei_pair(shared_data, tmp_path):
    config = DataConfig(layout="folder", root=str(shared_data / NUCLEI), cache_dir=str(tmp_path))
    records = list_records(config)
    assert len(records) == 90
    assert {record.image.parent.name for record in records} == {"images"}
    assert all(record.image.stem == record.mask.stem for record in records)


def test_folder_ignores_readme_and_manifest(shared_data, tmp_path):
    config = DataConfig(layout="folder", root=str(shared_data / LESIONS), cache_dir=str(tmp_path))
    records = list_records(config)
    assert len(records) == 22
    assert not {record.image.suffix for record in records} - {".jpg"}
    assert {record.mask.suffix for record in records} == {".png"}


def test_folder_arrays_match_files(shared_data, tmp_path):
    # Ten real 520 x 696 nuclei pairs, linked into a folder layout so that no resize is needed.
    same_size = [
        (image, mask) for image, mask in real_pairs(shared_data, NUCLEI) if read_pixels(image).shape == (520, 696)
    ][:10]
    root = tmp_path / "nuclei"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image, mask in same_size:
        (root / "images" / image.name).symlink_to(image)
        (root / "masks" / mask.name).symlink_to(mask)
    prepared = prepare_dataset(DataConfig(layout="folder", root=str(root), cache_dir=str(tmp_path / "cache")))
    train = prepared.splits["train"]
    image, mask = {image.stem: (image, mask) for image, mask in same_size}[train.sources[0]]
    assert prepared.channels == 1
    assert train.images.dtype == np.uint8
    assert np.array_equal(train.images[0, :, :, 0], read_pixels(image))
    assert np.array_equal(train.masks[0], (read_pixels(mask) > 0).astype(np.uint8))


def test_isic2017_uses_official_splits(isic_root, tmp_path):
    root, stems = isic_root
    records = list_records(DataConfig(layout="isic2017", root=str(root), cache_dir=str(tmp_path)))
    for split in SPLITS:
        assert sorted(record.stem for record in records if record.split == split) == sorted(stems[split])


def test_isic2017_ignores_superpixels_and_csv(isic_root, tmp_path):
    root, _ = isic_root
    records = list_records(DataConfig(layout="isic2017", root=str(root), cache_dir=str(tmp_path)))
    assert len(records) == sum(ISIC_COUNTS.values())
    assert all(record.image.suffix == ".jpg" for record in records)
    assert all(record.mask.name.endswith("_segmentation.png") for record in records)


def test_isic2017_study_preprocessing(isic_root, tmp_path):
    root, stems = isic_root
    config = DataConfig.from_dict({"layout": "isic2017", "root": str(root), "cache_dir": str(tmp_path)})
    assert config.resize_steps == (480,)
    assert config.image_size == 224
    assert config.rnorm is True
    prepared = prepare_dataset(config)
    assert prepared.image_shape == (224, 224)
    assert prepared.channels == 3
    assert {split: len(prepared.splits[split]) for split in SPLITS} == ISIC_COUNTS
    assert set(np.unique(prepared.splits["train"].masks)) == {0, 1}


def test_isic2017_max_images_keeps_every_split(isic_root, tmp_path):
    root, _ = isic_root
    records = list_records(DataConfig(layout="isic2017", root=str(root), max_images=4, cache_dir=str(tmp_path)))
    counts = Counter(record.split for record in records)
    assert set(counts) == set(SPLITS)


def test_dermofit_reads_classes(dermofit_root, tmp_path):
    root, classes_of = dermofit_root
    records = list_records(DataConfig(layout="dermofit", root=str(root), cache_dir=str(tmp_path)))
    assert {record.stem: record.stratum for record in records} == classes_of
    assert all(record.mask.name == f"{record.stem}mask.png" for record in records)


def test_dermofit_study_preprocessing(dermofit_root, tmp_path):
    root, _ = dermofit_root
    prepared = prepare_dataset(
        DataConfig.from_dict({"layout": "dermofit", "root": str(root), "cache_dir": str(tmp_path)})
    )
    assert prepared.image_shape == (224, 224)
    assert sum(len(prepared.splits[split]) for split in SPLITS) == 22


def test_detect_isic2017(isic_root):
    assert detect_layout(isic_root[0]) == ("isic2017", {})


def test_detect_dermofit(dermofit_root):
    assert detect_layout(dermofit_root[0]) == ("dermofit", {})


def test_detect_folder(shared_data):
    assert detect_layout(shared_data / NUCLEI) == ("folder", {})


def test_detect_reads_dataset_toml(tmp_path):
    (tmp_path / "dataset.toml").write_text('layout = "dermatomyositis"\n[options]\nmarker = "CD4"\n')
    assert detect_layout(tmp_path) == ("dermatomyositis", {"marker": "CD4"})


def test_detect_unknown_layout_hint(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match='dataset.toml there with a line layout = "<name>"'):
        detect_layout(tmp_path)
