"""Decoding and preprocessing: bit depths, channels, pages, binary masks, augmentation, Rnorm and normalisation."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from segcore.data import DataConfig, prepare_dataset
from segcore.data.dataset import SegmentationDataset, build_datasets
from segcore.data.imageio import read_image, read_mask
from segcore.data.prepare import SplitArrays
from segcore.data.records import SPLITS
from segcore.data.transforms import (
    GREY_MEAN,
    GREY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transform,
    normalisation_statistics,
    rnorm,
    seed_transform,
)
from tests.test_data_builders import LESIONS, NUCLEI, read_pixels, real_pairs, write_png


@pytest.fixture(scope="module")
def lesion_crop(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """A real lesion photo (RGB) shrunk to 96 x 128, and its mask (0/255) resized to match.

    ISIC_0014601's lesion sits off-centre, so each flip of its mask overlaps
    the original by less than 0.7 IoU.
    """
    pairs = {image.stem: (image, mask) for image, mask in real_pairs(shared_data, LESIONS)}
    image, mask = pairs["ISIC_0014601"]
    with Image.open(image) as photo, Image.open(mask) as outline:
        small = photo.resize((128, 96), Image.Resampling.BILINEAR)
        return np.asarray(small), np.asarray(outline.resize((128, 96), Image.Resampling.NEAREST))


@pytest.fixture(scope="module")
def nuclei_prepared(shared_data, tmp_path_factory):
    config = DataConfig(
        layout="folder",
        root=str(shared_data / NUCLEI),
        image_size=64,
        resize_steps=(480,),
        max_images=12,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    return prepare_dataset(config)


def test_read_mask_instance_labels(shared_data):
    _, mask = real_pairs(shared_data, NUCLEI)[0]
    labels = read_pixels(mask)
    assert labels.dtype == np.uint16
    assert labels.max() > 1
    binary = read_mask(mask)
    assert binary.dtype == np.uint8
    assert set(np.unique(binary)) == {0, 1}
    assert binary.sum() == (labels > 0).sum()


def test_read_mask_0_255(shared_data):
    _, mask = real_pairs(shared_data, LESIONS)[0]
    assert set(np.unique(read_pixels(mask))) == {0, 255}
    assert np.array_equal(read_mask(mask), (read_pixels(mask) == 255).astype(np.uint8))


def test_read_mask_0_1(lesion_crop, tmp_path):
    _, outline = lesion_crop
    path = write_png(tmp_path / "mask.png", (outline > 0).astype(np.uint8))
    assert np.array_equal(read_mask(path), (outline > 0).astype(np.uint8))


def test_read_mask_palette_indices(lesion_crop, tmp_path):
    _, outline = lesion_crop
    mask = Image.fromarray((outline > 0).astype(np.uint8), mode="P")
    # Index 0 (background) is shown white and index 1 (lesion) black: the labels are the indices.
    mask.putpalette([255, 255, 255, 0, 0, 0])
    mask.save(tmp_path / "mask.png")
    assert np.array_equal(read_mask(tmp_path / "mask.png"), (outline > 0).astype(np.uint8))


def test_read_rgba_png_drops_alpha(lesion_crop, tmp_path):
    pixels, _ = lesion_crop
    alpha = np.full(pixels.shape[:2] + (1,), 128, np.uint8)
    path = write_png(tmp_path / "rgba.png", np.concatenate([pixels, alpha], axis=2))
    assert Image.open(path).mode == "RGBA"
    assert np.array_equal(read_image(path), pixels)


def test_read_16bit_grey_tiff(shared_data, tmp_path):
    image, _ = real_pairs(shared_data, NUCLEI)[0]
    pixels = read_pixels(image).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "grey16.tif", pixels)
    result = read_image(tmp_path / "grey16.tif")
    assert result.dtype == np.uint16
    assert np.array_equal(result[..., 0], pixels)


def test_read_16bit_grey_png(shared_data, tmp_path):
    image, _ = real_pairs(shared_data, NUCLEI)[0]
    pixels = read_pixels(image).astype(np.uint16) * 257
    path = write_png(tmp_path / "grey16.png", pixels)
    assert np.array_equal(read_image(path)[..., 0], pixels)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_read_contiguous_tiff_channels(lesion_crop, tmp_path, channels):
    pixels, _ = lesion_crop
    stack = np.concatenate([pixels, pixels[..., :1]], axis=2)[..., :channels].astype(np.uint16) * 257
    photometric = "rgb" if channels >= 3 else "minisblack"
    tifffile.imwrite(tmp_path / "image.tif", stack, photometric=photometric, planarconfig="contig")
    assert np.array_equal(read_image(tmp_path / "image.tif"), stack)


def test_read_planar_rgb_tiff(lesion_crop, tmp_path):
    pixels, _ = lesion_crop
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(pixels, 2, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "planar.tif"), pixels)


def test_folder_page_option(shared_data, tmp_path):
    pairs = real_pairs(shared_data, NUCLEI)
    same_size = [(image, mask) for image, mask in pairs if read_pixels(image).shape == (520, 696)][:6]
    root = tmp_path / "pages"
    for index in range(len(same_size)):
        # Page p of stack i is the real image (i + p) mod 6; the mask belongs to page 2's image.
        stack = np.stack([read_pixels(same_size[(index + page) % 6][0]) for page in range(3)])
        (root / "images").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"stack{index}.tif", stack, photometric="minisblack")
        write_png(root / "masks" / f"stack{index}.png", read_pixels(same_size[(index + 2) % 6][1]))
    prepared = prepare_dataset(
        DataConfig(layout="folder", root=str(root), layout_options={"page": 2}, cache_dir=str(tmp_path / "cache"))
    )
    for split in SPLITS:
        arrays = prepared.splits[split]
        for position, stem in enumerate(arrays.sources):
            index = int(stem.removeprefix("stack"))
            assert np.array_equal(arrays.images[position, :, :, 0], read_pixels(same_size[(index + 2) % 6][0]))


def test_mixed_bit_depths_scaled(shared_data, tmp_path):
    root = tmp_path / "mixed"
    pairs = [
        (image, mask) for image, mask in real_pairs(shared_data, NUCLEI) if read_pixels(image).shape == (520, 696)
    ][:10]
    for index, (image, mask) in enumerate(pairs):
        pixels = read_pixels(image)
        if index % 2:
            (root / "images").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "images" / f"{image.stem}.tif", pixels.astype(np.uint16) * 257)
        else:
            write_png(root / "images" / f"{image.stem}.png", pixels)
        write_png(root / "masks" / f"{mask.stem}.png", read_pixels(mask))
    prepared = prepare_dataset(DataConfig(layout="folder", root=str(root), cache_dir=str(tmp_path / "cache")))
    originals = {image.stem: read_pixels(image) for image, _ in pairs}
    assert prepared.max_value == 65535
    for split in SPLITS:
        arrays = prepared.splits[split]
        for position, stem in enumerate(arrays.sources):
            # Every 8-bit image is stored at 257 times its value, like its 16-bit neighbours.
            assert np.array_equal(arrays.images[position, :, :, 0], originals[stem].astype(np.uint16) * 257)


def test_resize_keeps_masks_binary(nuclei_prepared):
    for split in SPLITS:
        masks = nuclei_prepared.splits[split].masks
        assert masks.dtype == np.uint8
        assert masks.shape[1:] == (64, 64)
        assert set(np.unique(masks)) <= {0, 1}
    assert nuclei_prepared.pixel_stats("train").foreground > 0


def test_resize_steps_applied_in_order(shared_data, tmp_path):
    image, mask = real_pairs(shared_data, LESIONS)[0]
    root = tmp_path / "one"
    for index in range(6):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"copy{index}.jpg").symlink_to(image)
        (root / "masks" / f"copy{index}.png").symlink_to(mask)
    prepared = prepare_dataset(
        DataConfig.from_dict(
            {
                "layout": "folder",
                "root": str(root),
                "resize_steps": [480],
                "image_size": 224,
                "cache_dir": str(tmp_path),
            }
        )
    )
    resize = A.Compose([A.Resize(480, 480, interpolation=1), A.Resize(224, 224, interpolation=1)])
    expected = resize(image=read_pixels(image), mask=(read_pixels(mask) > 0).astype(np.uint8))
    assert np.array_equal(prepared.splits["train"].images[0], expected["image"])
    assert np.array_equal(prepared.splits["train"].masks[0], expected["mask"])


def test_ce_target_int64_binary(nuclei_prepared):
    datasets = build_datasets(nuclei_prepared, seed=0)
    for split in SPLITS:
        sample = datasets[split][0]
        assert sample["mask"].dtype == torch.int64
        assert sample["mask"].shape == (64, 64)
        assert set(sample["mask"].unique().tolist()) <= {0, 1}
        assert sample["image"].dtype == torch.float32
        assert sample["image"].shape == (1, 64, 64)


def test_augmentation_only_on_train(nuclei_prepared):
    datasets = build_datasets(nuclei_prepared, seed=0)
    assert datasets["train"].augment is True
    assert datasets["val"].augment is False
    assert datasets["test"].augment is False


def test_eval_sample_is_normalised_stored_image(nuclei_prepared):
    dataset = build_datasets(nuclei_prepared, seed=0)["val"]
    stored = nuclei_prepared.splits["val"].images[0, :, :, 0].astype(np.float32) / 255
    expected = (stored - GREY_MEAN) / GREY_STD
    assert torch.allclose(dataset[0]["image"][0], torch.from_numpy(expected), atol=1e-5)
    assert torch.equal(dataset[0]["mask"], torch.from_numpy(nuclei_prepared.splits["val"].masks[0].astype(np.int64)))


def test_augmentation_seeded_per_sample(nuclei_prepared):
    dataset = build_datasets(nuclei_prepared, seed=3)["train"]
    first = dataset[1]["image"]
    assert torch.equal(dataset[1]["image"], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["image"], first)


def augmented_masks(mask: np.ndarray, epochs: int) -> list[np.ndarray]:
    """Return the training-augmented ``mask`` of each epoch."""
    arrays = SplitArrays(images=mask[None, :, :, None] * 255, masks=mask[None], ids=["lesion"], sources=["lesion"])
    dataset = SegmentationDataset(arrays, channels=1, max_value=255, augment=True, apply_rnorm=False, seed=0)
    results = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        results.append(dataset[0]["mask"].numpy())
    return results


def test_augmentation_small_rotation_and_flips(lesion_crop):
    mask = (lesion_crop[1] > 0).astype(np.uint8)
    variants = {"none": mask, "horizontal": mask[:, ::-1], "vertical": mask[::-1], "both": mask[::-1, ::-1]}
    for name in ("horizontal", "vertical", "both"):
        assert (mask & variants[name]).sum() / (mask | variants[name]).sum() < 0.7
    seen = set()
    for augmented in augmented_masks(mask, epochs=16):
        assert set(np.unique(augmented)) <= {0, 1}
        ious = {name: (augmented & variant).sum() / (augmented | variant).sum() for name, variant in variants.items()}
        best = max(ious, key=ious.get)
        # A rotation of at most 3 degrees moves few pixels of a 96 x 128 lesion mask.
        assert ious[best] > 0.9
        seen.add(best)
    assert seen == set(variants)


def test_flips_drawn_independently():
    # A marker pixel in the top-left corner shows which flips were applied.
    image = np.zeros((9, 9, 1), np.uint8)
    image[1, 1] = 255
    transform = build_transform(1, 255, augment=True, apply_rnorm=False)
    corners = set()
    for seed in range(64):
        seed_transform(transform, seed)
        mask = transform(image=image, mask=(image[..., 0] > 0).astype(np.uint8))["mask"].numpy()
        row, col = np.argwhere(mask)[0]
        corners.add((bool(row > 4), bool(col > 4)))
    assert corners == {(False, False), (False, True), (True, False), (True, True)}


def test_transform_rotation_limit():
    rotations = [
        step
        for step in build_transform(3, 255, augment=True, apply_rnorm=False).transforms
        if isinstance(step, A.Rotate)
    ]
    assert len(rotations) == 1
    assert tuple(rotations[0].limit) == (-3, 3)


def test_rnorm_hand_values():
    image = np.array([[[0.2, 0.3, 0.5], [0.1, 0.1, 0.2], [0.0, 0.0, 0.0]]], np.float32)
    expected = np.array([[[0.2, 0.3, 0.5], [0.25, 0.25, 0.5], [0.0, 0.0, 0.0]]], np.float32)
    assert np.allclose(rnorm(image), expected)


def test_rnorm_channels_sum_to_one(lesion_crop):
    normalised = rnorm(lesion_crop[0].astype(np.float32) / 255)
    lit = lesion_crop[0].sum(axis=2) > 0
    assert np.allclose(normalised.sum(axis=2)[lit], 1.0, atol=1e-6)


def test_rnorm_docstring_states_definition():
    assert "(R, G, B) / (R + G + B)" in rnorm.__doc__
    assert "Black pixels" in rnorm.__doc__


def test_normalisation_statistics():
    assert normalisation_statistics(3) == (IMAGENET_MEAN, IMAGENET_STD)
    assert normalisation_statistics(1) == ((GREY_MEAN,), (GREY_STD,))
    assert GREY_MEAN == pytest.approx((0.485 + 0.456 + 0.406) / 3)


def test_rgb_normalised_with_imagenet(lesion_crop):
    image = lesion_crop[0]
    output = build_transform(3, 255, augment=False, apply_rnorm=False)(
        image=image, mask=np.zeros(image.shape[:2], np.uint8)
    )["image"]
    red = (image[0, 0, 0] / 255 - 0.485) / 0.229
    assert float(output[0, 0, 0]) == pytest.approx(red, abs=1e-5)


def test_rnorm_then_imagenet(lesion_crop):
    image = lesion_crop[0]
    output = build_transform(3, 255, augment=False, apply_rnorm=True)(
        image=image, mask=np.zeros(image.shape[:2], np.uint8)
    )["image"]
    pixel = image[5, 7].astype(np.float64)
    green = (pixel[1] / pixel.sum() - 0.456) / 0.224
    assert float(output[1, 5, 7]) == pytest.approx(green, abs=1e-5)


def test_16bit_scaled_by_max_value():
    image = np.full((8, 8, 1), 65535, np.uint16)
    output = build_transform(1, 65535, augment=False, apply_rnorm=False)(image=image, mask=np.zeros((8, 8), np.uint8))[
        "image"
    ]
    assert float(output[0, 0, 0]) == pytest.approx((1.0 - GREY_MEAN) / GREY_STD, abs=1e-5)
