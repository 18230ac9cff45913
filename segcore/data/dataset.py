"""PyTorch datasets and loaders over prepared split arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from segcore.data.prepare import PreparedDataset, SplitArrays
from segcore.data.transforms import build_transform, seed_transform


class SegmentationDataset(Dataset):
    """Samples of one split as ``{"image": (C, H, W) float32, "mask": (H, W) int64, "index": int}``.

    Augmentation is seeded per sample from ``(seed, epoch, index)``, so a
    sample's augmentation does not depend on the number of loader workers or on
    where a resumed run restarted. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self, arrays: SplitArrays, channels: int, max_value: int, augment: bool, apply_rnorm: bool, seed: int = 0
    ):
        self.arrays = arrays
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.transform = build_transform(channels, max_value, augment=augment, apply_rnorm=apply_rnorm)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image = np.array(self.arrays.images[index])
        mask = np.array(self.arrays.masks[index])
        if self.augment:
            sample_seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
            seed_transform(self.transform, int(sample_seed))
        output = self.transform(image=image, mask=mask)
        return {"image": output["image"], "mask": output["mask"].long(), "index": index}


def build_datasets(data: PreparedDataset, seed: int) -> dict[str, SegmentationDataset]:
    """Return the train, val and test datasets; only the training split is augmented."""
    config = data.config
    return {
        split: SegmentationDataset(
            data.splits[split],
            channels=data.channels,
            max_value=data.max_value,
            augment=config.augment and split == "train",
            apply_rnorm=config.rnorm,
            seed=seed,
        )
        for split in data.splits
    }


def build_loader(
    dataset: SegmentationDataset, batch_size: int, shuffle: bool, workers: int, seed: int, epoch: int = 0
) -> DataLoader:
    """Return a loader whose shuffling order is a function of ``(seed, epoch)`` alone."""
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, epoch, 7]).generate_state(1)[0]))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        persistent_workers=False,
    )
