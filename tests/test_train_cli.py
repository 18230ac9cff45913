"""``python -m segcore.train`` in process: output files, --resume after an interruption, and bad flags."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segcore.train
from segcore.models import build_model
from segcore.training import TrainConfig


class StopAfterReport(Exception):
    """Raised after the first epoch's report to interrupt a run, as a killed process would."""


@dataclass
class CommandRun:
    code: int
    out: Path
    stdout: str
    stderr: str


def run_command(arguments: list[str]) -> CommandRun:
    """Run ``segcore.train.main`` and capture what it prints."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = segcore.train.main(arguments)
    out = Path(arguments[arguments.index("--out") + 1])
    return CommandRun(code, out, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def flags(shared_data, session_cache) -> list[str]:
    """Flags of a seconds-long run: 12 nuclei images at 64 px, 2 epochs, no pretrained weights."""
    return [
        str(shared_data / "dsb2018_fluo_nuclei"),
        "--layout=folder",
        "--image-size=64",
        "--max-images=12",
        f"--cache-dir={session_cache}",
        "--encoder-weights=none",
        "--epochs=2",
        "--batch-size=4",
        "--workers=0",
        "--device=cpu",
    ]


@pytest.fixture(scope="module")
def full_run(flags, tmp_path_factory) -> CommandRun:
    return run_command([*flags, "--out", str(tmp_path_factory.mktemp("cli") / "full")])


@pytest.fixture(scope="module")
def resumed_run(flags, tmp_path_factory) -> CommandRun:
    out = tmp_path_factory.mktemp("cli") / "resumed"
    train_and_evaluate = segcore.train.train_and_evaluate

    def stop_after_first_report(config, report, **options):
        def report_then_stop(metrics, folder):
            report(metrics, folder)
            raise StopAfterReport

        return train_and_evaluate(config, report_then_stop, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segcore.train, "train_and_evaluate", stop_after_first_report)
        with pytest.raises(StopAfterReport):
            run_command([*flags, "--no-progress", "--out", str(out)])
    return run_command([*flags, "--no-progress", "--resume", "--out", str(out)])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_exit_code(full_run):
    assert full_run.code == 0, full_run.stderr


def test_cli_prints_test_metrics(full_run):
    printed = json.loads(full_run.stdout[: full_run.stdout.rindex("}") + 1])
    saved = json.loads((full_run.out / "metrics.json").read_text())
    assert printed["test/iou"] == round(saved["test/iou"], 4)
    assert printed["best_epoch"] == saved["best/epoch"]
    assert f"outputs in {full_run.out}" in full_run.stdout


def test_cli_progress_bar(full_run):
    assert "batch/s" in full_run.stderr or "s/batch" in full_run.stderr


def test_cli_config_json(full_run):
    config = TrainConfig.load(full_run.out / "config.json")
    assert config.epochs == 2
    assert config.encoder_weights is None
    assert config.data.layout == "folder"
    assert config.data.image_size == 64


def test_cli_metrics_csv(full_run):
    rows = read_rows(full_run.out / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0]["test/iou"] == ""
    assert float(rows[1]["val/iou"]) >= 0.0


def test_cli_metrics_json(full_run):
    saved = json.loads((full_run.out / "metrics.json").read_text())
    last_row = read_rows(full_run.out / "metrics.csv")[-1]
    for name in ("test/iou", "test/dice", "test/accuracy", "test/mean_image_iou"):
        assert saved[name] == float(last_row[name])


def test_cli_best_model_loads(full_run):
    saved = torch.load(full_run.out / "best_model.pt", weights_only=False)
    network = build_model("unet", "resnet18", in_channels=1)
    network.load_state_dict(saved["state_dict"])
    assert saved["config"]["arch"] == "unet"


def test_cli_overlays(full_run):
    paths = sorted((full_run.out / "overlays").glob("*.png"))
    # The 12 images split 8/1/3 and the overlay default is 4, so all 3 test images are drawn.
    assert len(paths) == 3
    assert np.asarray(Image.open(paths[0])).shape == (64, 3 * 64, 3)


def test_cli_checkpoint_folder(full_run):
    assert (full_run.out / "checkpoint" / "checkpoint.pt").is_file()
    assert not (full_run.out / "checkpoint.tmp").exists()


def test_cli_resume_equals_uninterrupted(full_run, resumed_run):
    assert resumed_run.code == 0, resumed_run.stderr
    saved = json.loads((resumed_run.out / "metrics.json").read_text())
    assert saved == json.loads((full_run.out / "metrics.json").read_text())


def test_cli_resume_keeps_history(resumed_run):
    rows = read_rows(resumed_run.out / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"]


def test_cli_resume_without_checkpoint(flags, tmp_path):
    run = run_command([*flags, "--resume", "--out", str(tmp_path)])
    assert run.code == 2
    assert run.stderr.startswith("error: --resume: no checkpoint in")


def test_cli_resume_changed_flags(flags, full_run):
    run = run_command([*flags, "--seed=1", "--resume", "--out", str(full_run.out)])
    assert run.code == 2
    assert "error: --resume: the flags differ from the config saved" in run.stderr


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--class-weights=nope", "error: unknown class_weights 'nope'"),
        ("--class-weights=1,x", "error: --class-weights '1,x' is neither a scheme name nor"),
        ("--arch=unet3", "error: unknown architecture 'unet3'; valid architectures: unet, unetplusplus"),
        ("--encoder=resnet-18", "error: unknown encoder 'resnet-18'"),
        ("--device=gpu", "error: invalid device 'gpu'"),
    ],
)
def test_cli_invalid_setting(flags, tmp_path, flag, message):
    run = run_command([*flags, flag, "--out", str(tmp_path)])
    assert run.code == 2
    assert run.stderr.startswith(message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cli_cuda_unavailable(flags, tmp_path):
    run = run_command([*flags, "--device=cuda", "--out", str(tmp_path)])
    assert run.code == 2
    assert "error: device 'cuda' requested but CUDA is not available" in run.stderr


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--epochs=two", "error: argument --epochs: invalid int value: 'two'"),
        ("--app=tanh", "error: argument --app: invalid choice: 'tanh'"),
        ("--no-such-flag", "error: unrecognized arguments: --no-such-flag"),
    ],
)
def test_cli_invalid_flag(flags, tmp_path, flag, message):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        segcore.train.main([*flags, flag, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in stderr.getvalue()
