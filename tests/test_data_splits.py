"""Train/validation/test splits: deterministic, leak-free, stratified, and fixed by splits.csv."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from segcore.data import DataConfig, DataError, prepare_dataset
from segcore.data.dataset import build_datasets
from segcore.data.prepare import list_records
from segcore.data.records import SPLITS, SampleRecord
from segcore.data.splits import assign_splits, check_splits_not_empty
from tests.test_data_builders import NUCLEI, build_dermofit, real_pairs


def split_of(config: DataConfig) -> dict[str, str]:
    return {record.stem: record.split for record in list_records(config)}


def linked_nuclei(shared_data: Path, root: Path) -> list[str]:
    """Link every real nuclei pair into a folder layout at ``root``; return the stems."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image, mask in real_pairs(shared_data, NUCLEI):
        (root / "images" / image.name).symlink_to(image)
        (root / "masks" / mask.name).symlink_to(mask)
    return [image.stem for image, _ in real_pairs(shared_data, NUCLEI)]


@pytest.fixture
def nuclei(shared_data, tmp_path) -> DataConfig:
    return DataConfig(layout="folder", root=str(shared_data / NUCLEI), cache_dir=str(tmp_path))


def test_split_shares_70_10_20(nuclei):
    assert Counter(split_of(nuclei).values()) == {"train": 63, "val": 9, "test": 18}


def test_split_same_seed_same_split(nuclei):
    assert split_of(nuclei) == split_of(nuclei.with_overrides(split_seed=0))


def test_split_other_seed_other_split(nuclei):
    assert split_of(nuclei) != split_of(nuclei.with_overrides(split_seed=1))


def test_split_ignores_training_seed(nuclei):
    prepared = prepare_dataset(nuclei.with_overrides(image_size=32, max_images=20))
    first = build_datasets(prepared, seed=0)
    second = build_datasets(prepared, seed=12345)
    for split in SPLITS:
        assert first[split].arrays.ids == second[split].arrays.ids


def test_split_ignores_record_order():
    records = [SampleRecord(stem=f"s{index}", image=Path("i"), mask=Path("m")) for index in range(20)]
    forward = {record.stem: record.split for record in assign_splits(records, seed=3)}
    backward = {record.stem: record.split for record in assign_splits(records[::-1], seed=3)}
    assert forward == backward


def test_split_keeps_groups_whole():
    # 30 groups of 3 samples, as three tiles or images of one patient.
    records = [
        SampleRecord(stem=f"s{index}", image=Path("i"), mask=Path("m"), group=f"g{index // 3}") for index in range(90)
    ]
    assigned = assign_splits(records, seed=0)
    splits_of_group: dict[str, set[str]] = {}
    for record in assigned:
        splits_of_group.setdefault(record.group, set()).add(record.split)
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    assert Counter(record.split for record in assigned) == {"train": 63, "val": 9, "test": 18}


def test_splits_csv_group_column(shared_data, tmp_path):
    stems = linked_nuclei(shared_data, tmp_path / "nuclei")
    groups = {stem: f"patient{index % 15}" for index, stem in enumerate(stems)}
    (tmp_path / "nuclei" / "splits.csv").write_text(
        "stem,group\n" + "".join(f"{stem},{group}\n" for stem, group in groups.items())
    )
    records = list_records(DataConfig(layout="folder", root=str(tmp_path / "nuclei"), cache_dir=str(tmp_path)))
    split_of_patient: dict[str, set[str]] = {}
    for record in records:
        split_of_patient.setdefault(groups[record.stem], set()).add(record.split)
    assert all(len(splits) == 1 for splits in split_of_patient.values())
    assert {record.split for record in records} == set(SPLITS)


def test_splits_csv_split_column(shared_data, tmp_path):
    stems = linked_nuclei(shared_data, tmp_path / "nuclei")
    expected = {stem: SPLITS[index % 3] for index, stem in enumerate(stems)}
    # Mixed case, the "validation" alias and a byte-order mark, as a spreadsheet program saves them.
    aliases = {"train": "Train", "val": "validation", "test": "TEST"}
    text = "stem,split\n" + "".join(f"{stem},{aliases[split]}\n" for stem, split in expected.items())
    (tmp_path / "nuclei" / "splits.csv").write_bytes(text.encode("utf-8-sig"))
    config = DataConfig(layout="folder", root=str(tmp_path / "nuclei"), cache_dir=str(tmp_path))
    assert split_of(config) == expected
    assert split_of(config.with_overrides(split_seed=9)) == expected


def test_splits_csv_group_across_splits(shared_data, tmp_path):
    stems = linked_nuclei(shared_data, tmp_path / "nuclei")
    rows = [f"{stem},{SPLITS[index % 3]},{'patient0' if index < 2 else stem}" for index, stem in enumerate(stems)]
    (tmp_path / "nuclei" / "splits.csv").write_text("stem,split,group\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="group 'patient0' appears in both the train and val splits"):
        list_records(DataConfig(layout="folder", root=str(tmp_path / "nuclei"), cache_dir=str(tmp_path)))


def test_dermofit_split_stratified(shared_data, tmp_path):
    classes_of = build_dermofit(shared_data, tmp_path / "dermofit")
    for seed in range(4):
        records = list_records(
            DataConfig(layout="dermofit", root=str(tmp_path / "dermofit"), split_seed=seed, cache_dir=str(tmp_path))
        )
        counts = Counter((record.stratum, record.split) for record in records)
        # 7 or 8 lesions per class: every class has lesions in every split. Without
        # stratification the 22 lesions would give a validation split of 2 for 3 classes.
        for lesion_class in set(classes_of.values()):
            assert counts[(lesion_class, "val")] == 1
            assert counts[(lesion_class, "test")] in (1, 2)
            assert counts[(lesion_class, "train")] in (5, 6)


def test_max_images_subset_deterministic(nuclei):
    first = split_of(nuclei.with_overrides(max_images=20))
    assert len(first) == 20
    assert first == split_of(nuclei.with_overrides(max_images=20))


def test_empty_split_error_names_fix():
    with pytest.raises(DataError, match=r"the val split\(s\) of dataset 'tiny' came out empty .*raise max_images"):
        check_splits_not_empty({"train": 4, "test": 1}, "dataset 'tiny'")
