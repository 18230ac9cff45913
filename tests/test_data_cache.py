"""The decoded-sample cache: reuse, keys, failed builds, and two processes building one entry."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segcore.data import DataConfig, DataError, prepare_dataset
from segcore.data.cache import get_or_build
from segcore.data.records import SPLITS
from tests.test_data_builders import NUCLEI, cache_entries, copy_pairs, staging_folders

BUILT = "built cache entry"

# Two copies of this script prepare the same dataset and print a digest of the arrays they
# got. Each signals that its imports are done and waits for the start file, so that both
# call prepare_dataset at the same moment. The log goes to stderr.
BUILDER_SCRIPT = """
import hashlib, json, logging, sys, time
from pathlib import Path

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(process)d %(name)s: %(message)s")
from segcore.data import DataConfig, prepare_dataset

settings, handshake = json.loads(sys.argv[1]), Path(sys.argv[2])
(handshake / f"ready-{sys.argv[3]}").touch()
while not (handshake / "start").exists():
    time.sleep(0.01)
prepared = prepare_dataset(DataConfig.from_dict(settings))
digest = hashlib.sha256()
for split in ("train", "val", "test"):
    digest.update(prepared.splits[split].images.tobytes())
    digest.update(prepared.splits[split].masks.tobytes())
print(json.dumps({"folder": str(prepared.folder), "digest": digest.hexdigest()}))
"""


@pytest.fixture
def nuclei_copy(shared_data, tmp_path) -> Path:
    """Twelve real nuclei pairs copied into a folder layout that the test may change."""
    root = tmp_path / "nuclei"
    copy_pairs(shared_data, NUCLEI, root, count=12)
    return root


def config_for(root: Path, cache_dir: Path, **changes) -> DataConfig:
    return DataConfig(layout="folder", root=str(root), image_size=48, cache_dir=str(cache_dir), **changes)


def count_built(caplog) -> int:
    return sum(BUILT in record.getMessage() for record in caplog.records)


def test_second_prepare_reuses_entry(nuclei_copy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="segcore.data")
    config = config_for(nuclei_copy, tmp_path / "cache")
    first = prepare_dataset(config)
    meta_mtime = (first.folder / "meta.json").stat().st_mtime_ns
    second = prepare_dataset(config)
    assert count_built(caplog) == 1
    assert second.folder == first.folder
    assert (second.folder / "meta.json").stat().st_mtime_ns == meta_mtime
    assert len(cache_entries(tmp_path / "cache")) == 1


def test_reused_entry_same_arrays(nuclei_copy, tmp_path):
    config = config_for(nuclei_copy, tmp_path / "cache")
    first, second = prepare_dataset(config), prepare_dataset(config)
    for split in SPLITS:
        assert np.array_equal(first.splits[split].images, second.splits[split].images)
        assert first.splits[split].ids == second.splits[split].ids


def test_entry_arrays_memory_mapped(nuclei_copy, tmp_path):
    prepared = prepare_dataset(config_for(nuclei_copy, tmp_path / "cache"))
    assert isinstance(prepared.splits["train"].images, np.memmap)


def test_changed_file_new_key(nuclei_copy, tmp_path):
    config = config_for(nuclei_copy, tmp_path / "cache")
    before = prepare_dataset(config).folder
    image = sorted((nuclei_copy / "images").iterdir())[0]
    later = image.stat().st_mtime_ns + 10**9
    os.utime(image, ns=(later, later))
    assert prepare_dataset(config).folder != before


def test_rewritten_file_new_key(nuclei_copy, tmp_path):
    config = config_for(nuclei_copy, tmp_path / "cache")
    before = prepare_dataset(config).folder
    mask = sorted((nuclei_copy / "masks").iterdir())[0]
    mask.write_bytes(mask.read_bytes() + b"\0")
    assert prepare_dataset(config).folder != before


def test_added_file_new_key(nuclei_copy, shared_data, tmp_path):
    config = config_for(nuclei_copy, tmp_path / "cache")
    before = prepare_dataset(config)
    copy_pairs(shared_data, NUCLEI, nuclei_copy, count=13)
    after = prepare_dataset(config)
    assert after.folder != before.folder
    assert sum(len(after.splits[split]) for split in SPLITS) == 13


def test_removed_file_new_key(nuclei_copy, tmp_path):
    config = config_for(nuclei_copy, tmp_path / "cache")
    before = prepare_dataset(config).folder
    stem = sorted((nuclei_copy / "images").iterdir())[0].stem
    (nuclei_copy / "images" / f"{stem}.png").unlink()
    (nuclei_copy / "masks" / f"{stem}.png").unlink()
    assert prepare_dataset(config).folder != before


def test_preprocessing_in_key(nuclei_copy, tmp_path):
    config = config_for(nuclei_copy, tmp_path / "cache")
    assert prepare_dataset(config).folder != prepare_dataset(config.with_overrides(image_size=32)).folder
    assert prepare_dataset(config).folder != prepare_dataset(config.with_overrides(split_seed=1)).folder


def test_load_time_steps_share_entry(nuclei_copy, tmp_path):
    # Rnorm and augmentation run when samples are loaded, so one entry serves every setting.
    config = config_for(nuclei_copy, tmp_path / "cache")
    assert prepare_dataset(config).folder == prepare_dataset(config.with_overrides(rnorm=True, augment=False)).folder


def test_entry_named_after_dataset(nuclei_copy, tmp_path):
    prepared = prepare_dataset(config_for(nuclei_copy, tmp_path / "cache", dataset="nuclei subset/1"))
    assert prepared.folder.name.startswith("nuclei_subset_1-")
    assert json.loads((prepared.folder / "meta.json").read_text())["dataset"] == "nuclei subset/1"


def test_failed_build_leaves_nothing(tmp_path):
    def build(staging: Path) -> None:
        (staging / "train_images.npy").write_bytes(b"partial")
        raise DataError("decoding failed")

    with pytest.raises(DataError, match="decoding failed"):
        get_or_build(tmp_path / "entry", build)
    assert not (tmp_path / "entry").exists()
    assert not list(tmp_path.glob("entry.tmp-*"))


def test_stale_staging_removed(tmp_path):
    # A staging folder left by a builder that was killed.
    (tmp_path / "entry.tmp-99999").mkdir()
    (tmp_path / "entry.tmp-99999" / "train_images.npy").write_bytes(b"partial")
    get_or_build(tmp_path / "entry", lambda staging: (staging / "meta.json").write_text("{}"))
    assert (tmp_path / "entry" / "meta.json").is_file()
    assert not list(tmp_path.glob("entry.tmp-*"))


def test_two_processes_build_once(nuclei_copy, tmp_path):
    cache_dir = tmp_path / "cache"
    settings = {
        "layout": "folder",
        "root": str(nuclei_copy),
        "image_size": 64,
        "resize_steps": [480],
        "cache_dir": str(cache_dir),
    }

    handshake = tmp_path / "handshake"
    handshake.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER_SCRIPT, json.dumps(settings), str(handshake), str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for index in range(2)
    ]

    deadline = time.monotonic() + 120
    while len(list(handshake.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (handshake / "start").touch()

    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [stderr for _, stderr in outputs]
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    logs = "".join(stderr for _, stderr in outputs)
    assert logs.count(BUILT) == 1
    assert results[0] == results[1]
    assert len(cache_entries(cache_dir)) == 1
    assert not staging_folders(cache_dir)
