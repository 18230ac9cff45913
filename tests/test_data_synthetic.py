"""The synthetic layout: generated into the cache, deterministic, exact masks, labelled synthetic everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.data import DataConfig, DataError, prepare_dataset
from segcore.data.layouts import synthetic as synthetic_layout
from segcore.data.layouts.synthetic import generate_lesion, generate_nuclei, write_synthetic_dataset
from segcore.data.records import SPLITS
from tests.test_data_builders import read_pixels, staging_folders


def synthetic(cache_dir, **options) -> DataConfig:
    return DataConfig(layout="synthetic", layout_options={"count": 12, **options}, cache_dir=str(cache_dir))


def test_default_config_is_synthetic():
    config = DataConfig()
    assert config.layout == "synthetic"
    assert config.dataset == "synthetic-nuclei"
    assert config.root is None


def test_generated_into_cache(tmp_path):
    prepared = prepare_dataset(synthetic(tmp_path))
    folder = tmp_path / "synthetic" / "nuclei-n12-s128-seed0"
    assert len(list((folder / "images").iterdir())) == 12
    assert "Not real data" in (folder / "README.md").read_text()
    assert not staging_folders(tmp_path)
    assert prepared.folder.name.startswith("synthetic-nuclei-")


def test_every_id_labelled_synthetic(tmp_path):
    prepared = prepare_dataset(synthetic(tmp_path, kind="lesion"))
    ids = [sample_id for split in SPLITS for sample_id in prepared.splits[split].ids]
    assert len(ids) == 12
    assert all(sample_id.startswith("synthetic_lesion_") for sample_id in ids)
    assert prepared.meta["dataset"] == "synthetic-lesion"


def test_custom_name_keeps_synthetic_label():
    assert DataConfig(layout="synthetic", dataset="demo").dataset == "synthetic-demo"
    assert DataConfig(layout="synthetic", dataset="my-synthetic-set").dataset == "my-synthetic-set"


def test_nuclei_one_channel(tmp_path):
    prepared = prepare_dataset(synthetic(tmp_path))
    assert prepared.channels == 1
    assert prepared.image_shape == (128, 128)


def test_lesion_three_channels(tmp_path):
    prepared = prepare_dataset(synthetic(tmp_path, kind="lesion", size=64))
    assert prepared.channels == 3
    assert prepared.image_shape == (64, 64)


def test_same_seed_same_data(tmp_path):
    first = prepare_dataset(synthetic(tmp_path / "a"))
    second = prepare_dataset(synthetic(tmp_path / "b"))
    for split in SPLITS:
        assert np.array_equal(first.splits[split].images, second.splits[split].images)
        assert np.array_equal(first.splits[split].masks, second.splits[split].masks)


def test_other_seed_other_data(tmp_path):
    first = prepare_dataset(synthetic(tmp_path))
    second = prepare_dataset(synthetic(tmp_path, seed=1))
    assert not np.array_equal(first.splits["train"].images[0], second.splits["train"].images[0])


def test_written_masks_exact(tmp_path):
    write_synthetic_dataset(tmp_path / "lesion", "lesion", count=2, size=64, seed=5)
    rng = np.random.default_rng(5)
    for index in range(2):
        image, mask = generate_lesion(rng, 64)
        assert np.array_equal(read_pixels(tmp_path / "lesion" / "images" / f"synthetic_lesion_{index:04d}.png"), image)
        assert np.array_equal(
            read_pixels(tmp_path / "lesion" / "masks" / f"synthetic_lesion_{index:04d}.png"), mask * 255
        )


def test_nuclei_bright_inside_mask():
    image, mask = generate_nuclei(np.random.default_rng(0), 128)
    assert set(np.unique(mask)) == {0, 1}
    assert image[mask == 1].mean() > image[mask == 0].mean() + 80


def test_lesion_dark_inside_mask():
    image, mask = generate_lesion(np.random.default_rng(0), 128)
    brightness = image.astype(float).mean(axis=2)
    assert image.shape == (128, 128, 3)
    assert brightness[mask == 1].mean() < brightness[mask == 0].mean() - 60


def test_generation_failure_leaves_no_staging(tmp_path, monkeypatch):
    def fail(rng, size):
        raise OSError("disk full")

    monkeypatch.setitem(synthetic_layout.GENERATORS, "nuclei", fail)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset(synthetic(tmp_path))
    assert not staging_folders(tmp_path)
    assert not (tmp_path / "synthetic" / "nuclei-n12-s128-seed0").exists()


def test_unknown_kind_lists_valid_ones(tmp_path):
    with pytest.raises(DataError, match="unknown synthetic kind 'cells'; valid kinds: nuclei, lesion"):
        prepare_dataset(synthetic(tmp_path, kind="cells"))


def test_too_few_images(tmp_path):
    with pytest.raises(DataError, match="synthetic data needs count >= 3 and size >= 16; got count=2"):
        prepare_dataset(synthetic(tmp_path, count=2))
