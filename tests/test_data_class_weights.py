"""Cross-entropy class weights: hand-computed cases, the study's weights in sweep/reference, and the cached statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from segcore.data import DataConfig, DataError, PixelStats, compute_class_weights, prepare_dataset
from segcore.data.class_weights import SCHEMES, all_scheme_weights
from segcore.data.records import SPLITS
from tests.test_data_builders import NUCLEI

REFERENCE_WEIGHTS = Path(__file__).resolve().parents[1] / "sweep" / "reference" / "paper_ce_weights.csv"

# Two 2 x 2 masks: one foreground pixel in the first, none in the second.
# f = 1/8; freq_bg = 7/8 (both images have background), freq_fg = 1/4 (only the first has foreground).
TINY_MASKS = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], np.uint8)


@pytest.fixture
def tiny() -> PixelStats:
    return PixelStats.from_masks(TINY_MASKS)


def paper_stats(foreground_fraction: float, share_with_foreground: float) -> PixelStats:
    """Pixel counts of 1000 tiles of 480 x 480 with the study's foreground fraction.

    ``share_with_foreground`` is the share of pixels that lie in tiles with
    foreground; every tile has background.
    """
    total = 1000 * 480 * 480
    return PixelStats(
        foreground=round(foreground_fraction * total),
        total=total,
        pixels_in_images_with_foreground=round(share_with_foreground * total),
        pixels_in_images_with_background=total,
        images=1000,
    )


# The pixel statistics that the study gives for each dataset.
PAPER_STATS = {
    "isic2017": paper_stats(0.2020, 1.0),
    "dermofit": paper_stats(0.3037, 1.0),
    "dermatomyositis": paper_stats(0.1479, 0.880),
}


def reference_rows() -> list[dict[str, str]]:
    with REFERENCE_WEIGHTS.open() as handle:
        return list(csv.DictReader(handle))


def test_pixel_stats_from_tiny_masks(tiny):
    assert tiny.foreground == 1
    assert tiny.total == 8
    assert tiny.pixels_in_images_with_foreground == 4
    assert tiny.pixels_in_images_with_background == 8
    assert tiny.images == 2


def test_pixel_stats_all_foreground_image():
    stats = PixelStats.from_masks(np.array([[[1, 1], [1, 1]], [[0, 1], [0, 0]]], np.uint8))
    assert stats.pixels_in_images_with_background == 4
    assert stats.pixels_in_images_with_foreground == 8


def test_pixel_stats_add(tiny):
    assert tiny + tiny == PixelStats(
        foreground=2, total=16, pixels_in_images_with_foreground=8, pixels_in_images_with_background=16, images=4
    )


def test_dedl_tiny(tiny):
    assert compute_class_weights("dedl", tiny) == pytest.approx((0.875, 0.125))


def test_cdw_tiny(tiny):
    assert compute_class_weights("cdw", tiny) == pytest.approx((0.125, 0.875))


def test_median_frequency_tiny(tiny):
    # median = (7/8 + 1/4) / 2 = 9/16; weights (9/16) / (7/8) = 9/14 and (9/16) / (1/4) = 9/4.
    assert compute_class_weights("median_frequency", tiny) == pytest.approx((9 / 14, 9 / 4))


def test_uniform_weights():
    assert compute_class_weights("uniform") == (1.0, 1.0)


def test_explicit_weights():
    assert compute_class_weights([0.25, 4]) == (0.25, 4.0)


def test_ratio_weights():
    assert compute_class_weights("ratio", ratio=3.0) == pytest.approx((0.25, 0.75))


@pytest.mark.parametrize("weights", [[1.0], [1.0, 2.0, 3.0], [-1.0, 1.0], [0.0, 0.0], [1.0, float("nan")]])
def test_explicit_weights_invalid(weights):
    with pytest.raises(DataError, match=r"two non-negative finite numbers \[background, foreground\]"):
        compute_class_weights(weights)


def test_unknown_scheme_lists_valid_ones():
    with pytest.raises(
        DataError,
        match="unknown class weight scheme 'inverse'; valid schemes: dedl, cdw, median_frequency, uniform, ratio",
    ):
        compute_class_weights("inverse")


@pytest.mark.parametrize("scheme", ["dedl", "cdw", "median_frequency"])
def test_no_foreground_rejected(scheme):
    stats = PixelStats.from_masks(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(
        DataError, match=f"class weights '{scheme}': the training split has no foreground pixels.*explicit weights"
    ):
        compute_class_weights(scheme, stats)


def test_only_foreground_rejected():
    stats = PixelStats.from_masks(np.ones((3, 4, 4), np.uint8))
    with pytest.raises(DataError, match="every training pixel is foreground"):
        compute_class_weights("median_frequency", stats)


def test_all_schemes_report_failures_as_text():
    table = all_scheme_weights(PixelStats.from_masks(np.zeros((1, 2, 2), np.uint8)))
    assert "no foreground pixels" in table["cdw"]
    assert table["uniform"] == (1.0, 1.0)


def test_reference_covers_study_schemes():
    rows = reference_rows()
    assert {(row["dataset"], row["weights"]) for row in rows} == {
        (dataset, scheme) for dataset in PAPER_STATS for scheme in ("cdw", "median_frequency")
    }
    assert {row["weights"] for row in rows} <= set(SCHEMES)


def test_cdw_reproduces_paper():
    # The study's foreground fractions have 4 decimals, so cdw matches to 4 decimals.
    for row in reference_rows():
        if row["weights"] == "cdw":
            weights = compute_class_weights("cdw", PAPER_STATS[row["dataset"]])
            assert weights == pytest.approx((float(row["background"]), float(row["foreground"])), abs=5e-5)


def test_median_frequency_reproduces_paper():
    # Median frequency divides by the rounded fractions, so the last digit can move: ISIC 2017
    # gives (0.6266, 2.4752) for (0.6265, 2.4755), dermofit (0.7181, 1.6464) for (0.7180, 1.6466),
    # dermatomyositis (0.5986, 3.0350) for (0.5986, 3.0348). All are within 1e-3.
    for row in reference_rows():
        if row["weights"] == "median_frequency":
            weights = compute_class_weights("median_frequency", PAPER_STATS[row["dataset"]])
            assert weights == pytest.approx((float(row["background"]), float(row["foreground"])), abs=1e-3)


def test_median_frequency_dermatomyositis_frequency():
    stats = PAPER_STATS["dermatomyositis"]
    assert stats.foreground / stats.pixels_in_images_with_foreground == pytest.approx(0.1681, abs=5e-5)


def test_prepared_stats_cached_per_split(shared_data, tmp_path):
    config = DataConfig(
        layout="folder", root=str(shared_data / NUCLEI), image_size=32, max_images=20, cache_dir=str(tmp_path)
    )
    prepared = prepare_dataset(config)
    for split in SPLITS:
        assert prepared.pixel_stats(split) == PixelStats.from_masks(np.asarray(prepared.splits[split].masks))
    assert prepared.meta["pixel_stats"]["train"] == prepared.pixel_stats("train").to_dict()
    reloaded = prepare_dataset(config)
    assert reloaded.pixel_stats("train") == prepared.pixel_stats("train")


def test_training_stats_exclude_other_splits(shared_data, tmp_path):
    config = DataConfig(
        layout="folder", root=str(shared_data / NUCLEI), image_size=32, max_images=20, cache_dir=str(tmp_path)
    )
    prepared = prepare_dataset(config)
    train = prepared.pixel_stats("train")
    assert train.images == len(prepared.splits["train"])
    assert train != prepared.pixel_stats("train") + prepared.pixel_stats("val")
