"""``python -m segcore.data inspect`` on the real shared folders and on synthetic data."""

from __future__ import annotations

import re
import subprocess
import sys

from segcore.data.__main__ import main as data_main
from tests.test_data_builders import LESIONS, NUCLEI

SCHEMES = ("dedl", "cdw", "median_frequency", "uniform")


def inspect(capsys, *args: str) -> str:
    code = data_main(["inspect", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def split_row(report: str, split: str) -> list[str]:
    return next(line for line in report.splitlines() if line.startswith(f"{split} ")).split()


def test_nuclei_native_sizes(shared_data, tmp_path, capsys):
    report = inspect(capsys, str(shared_data / NUCLEI), "--cache-dir", str(tmp_path))
    assert report.startswith("dataset dsb2018_fluo_nuclei (layout folder, root ")
    assert "channels: 1 (90 images)" in report
    assert split_row(report, "train")[:3] == ["train", "63", "-"]
    assert split_row(report, "val")[:3] == ["val", "9", "-"]
    assert split_row(report, "test")[:3] == ["test", "18", "-"]
    # The four source sizes make the images impossible to stack without a resize.
    assert "not prepared for training: images of dataset 'dsb2018_fluo_nuclei' have 4 different sizes" in report
    assert "Set image_size to resize them, or tile_size to cut them into tiles" in report
    assert "520x696: 51" in report
    assert "class weights from the training split at native size" in report
    for scheme in SCHEMES:
        assert re.search(rf"^  {scheme} +\(\d\.\d{{4}}, \d\.\d{{4}}\)$", report, re.MULTILINE)


def test_lesions_native_sizes(shared_data, tmp_path, capsys):
    report = inspect(capsys, str(shared_data / LESIONS), "--cache-dir", str(tmp_path))
    assert "channels: 3 (22 images)" in report
    assert "have 4 different sizes" in report
    sizes = {"1936x2592", "2000x3008", "1536x2304", "768x1024"}
    assert all(size in report for size in sizes)
    assert sum(int(split_row(report, split)[1]) for split in ("train", "val", "test")) == 22


def test_lesions_study_preprocessing(shared_data, tmp_path, capsys):
    report = inspect(
        capsys,
        str(shared_data / LESIONS),
        "--image-size",
        "224",
        "--resize-steps",
        "480",
        "--rnorm",
        "--cache-dir",
        str(tmp_path),
    )
    assert "prepared: 224 x 224 px, uint8, cache " in report
    assert split_row(report, "train")[:3] == ["train", "15", "15"]
    assert "class weights from the training split as prepared" in report
    assert "not prepared" not in report


def test_nuclei_resized(shared_data, tmp_path, capsys):
    report = inspect(capsys, str(shared_data / NUCLEI), "--image-size", "256", "--cache-dir", str(tmp_path))
    assert "prepared: 256 x 256 px, uint8" in report
    train = split_row(report, "train")
    assert train[:3] == ["train", "63", "63"]
    # The native and prepared foreground fractions of the nuclei masks are about 0.15.
    assert 0.1 < float(train[3]) < 0.2
    assert 0.1 < float(train[4]) < 0.2
    assert f"(f = {float(train[4]):.4f})" in report


def test_nuclei_tiled(shared_data, tmp_path, capsys):
    report = inspect(
        capsys, str(shared_data / NUCLEI), "--tile-size", "256", "--max-images", "10", "--cache-dir", str(tmp_path)
    )
    assert "prepared: 256 x 256 px" in report
    rows = {split: split_row(report, split) for split in ("train", "val", "test")}
    # Tiles outnumber source images: a 520 x 696 image gives 3 x 3 tiles of 256.
    assert all(int(row[2]) > int(row[1]) for row in rows.values())


def test_synthetic_default(tmp_path, capsys):
    report = inspect(capsys, "--cache-dir", str(tmp_path))
    assert report.startswith("dataset synthetic-nuclei (layout synthetic, root none, generated into the cache)")
    assert "prepared: 128 x 128 px" in report


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segcore.data",
            "inspect",
            "--layout",
            "synthetic",
            "--option",
            "kind=lesion",
            "--option",
            "count=12",
            "--cache-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "dataset synthetic-lesion" in result.stdout
    assert "channels: 3 (12 images)" in result.stdout
