"""Deterministic, leak-free train/validation/test splits.

Samples that share a group (a slide's tiles, a patient's images, a lesion)
always land in the same split. Within each stratum (a lesion class, or the
whole dataset) the groups are shuffled with the split seed and handed out one
by one to the split that is furthest below its target share of samples. The
split seed is independent of the training seed, so every training seed of a
sweep uses the same split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from segcore.data.errors import DataError
from segcore.data.records import SPLITS, SampleRecord

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def assign_splits(
    records: Sequence[SampleRecord], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> list[SampleRecord]:
    """Return ``records`` with ``split`` set, keeping groups whole and strata balanced.

    Records that already carry a split (official splits, ``splits.csv``) keep it.

    Raises:
        DataError: when one group's records carry different fixed splits.
    """
    if all(record.split is not None for record in records):
        _check_groups_within_one_split(records)
        return list(records)
    if any(record.split is not None for record in records):
        raise DataError("some samples have a fixed split and others do not; give a split for every sample or for none")
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")

    groups: dict[str, list[SampleRecord]] = defaultdict(list)
    for record in records:
        groups[record.group_key].append(record)
    strata: dict[str, list[str]] = defaultdict(list)
    for key in sorted(groups):
        strata[str(groups[key][0].stratum)].append(key)

    rng = np.random.default_rng(seed)
    split_of_group: dict[str, str] = {}
    for stratum in sorted(strata):
        keys = strata[stratum]
        order = rng.permutation(len(keys))
        sizes = dict.fromkeys(SPLITS, 0)
        total = sum(len(groups[key]) for key in keys)
        for index in order:
            key = keys[index]
            # The split furthest below its target share takes the next group.
            deficits = [fraction * total - sizes[split] for split, fraction in zip(SPLITS, fractions, strict=True)]
            split = SPLITS[int(np.argmax(deficits))]
            split_of_group[key] = split
            sizes[split] += len(groups[key])
    return [_with_split(record, split_of_group[record.group_key]) for record in records]


def _with_split(record: SampleRecord, split: str) -> SampleRecord:
    return SampleRecord(
        stem=record.stem,
        image=record.image,
        mask=record.mask,
        split=split,
        group=record.group,
        stratum=record.stratum,
        page=record.page,
    )


def _check_groups_within_one_split(records: Sequence[SampleRecord]) -> None:
    seen: dict[str, str] = {}
    for record in records:
        if record.group is None:
            continue
        first = seen.setdefault(record.group, record.split)
        if first != record.split:
            raise DataError(
                f"group {record.group!r} appears in both the {first} and {record.split} splits "
                f"(sample {record.stem}); put all samples of a group in one split"
            )


def check_splits_not_empty(counts: dict[str, int], where: str) -> None:
    """Raise when a split came out empty, saying how many samples there are."""
    empty = [split for split in SPLITS if counts.get(split, 0) == 0]
    if empty:
        total = sum(counts.values())
        raise DataError(
            f"the {' and '.join(empty)} split(s) of {where} came out empty ({total} samples in all, "
            f"{counts}). Add images, raise max_images, or fix the split with a splits.csv."
        )
