"""``python -m segcore.train``: train and test one configuration, without Ray or MLflow.

Writes into ``--out``: ``config.json``, ``metrics.csv`` (one row per epoch),
``metrics.json`` (the final metrics, test included), ``best_model.pt``,
``overlays/*.png`` and ``checkpoint/`` (the last epoch, for ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from segcore.cli_options import add_data_options, data_settings
from segcore.data.errors import DataError
from segcore.models.weights import EncoderWeightsError
from segcore.training.checkpoint import CHECKPOINT_FILE
from segcore.training.config import ConfigError, TrainConfig
from segcore.training.loop import NonFiniteLossError, train_and_evaluate

CHECKPOINT_FOLDER = "checkpoint"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segcore.train", description="Train and test one segmentation configuration."
    )
    parser.add_argument("root", nargs="?", help="dataset folder (omit for --layout synthetic)")
    add_data_options(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="unet", help="smp architecture: unet, unetplusplus, fpn, ... (default: unet)")
    model.add_argument("--encoder", default="resnet18", help="smp encoder (default: resnet18)")
    model.add_argument(
        "--encoder-weights",
        default="imagenet",
        help="imagenet, none, or a local .safetensors/.pth file (default: imagenet)",
    )
    model.add_argument(
        "--weights-dir", help="pre-fetched ImageNet weights (default: $SEGSWEEP_WEIGHTS_DIR or the Hugging Face cache)"
    )
    model.add_argument(
        "--app",
        default="none",
        choices=["none", "relu", "gelu"],
        help="autoencoder post-processing head (default: none)",
    )
    training = parser.add_argument_group("training")
    training.add_argument(
        "--class-weights",
        default="cdw",
        help="dedl, cdw, median_frequency, uniform, ratio, or BACKGROUND,FOREGROUND (default: cdw)",
    )
    training.add_argument("--weight-ratio", type=float, help="foreground/background ratio for --class-weights ratio")
    training.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    training.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
    training.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16)")
    training.add_argument("--lr", type=float, default=3.6e-4, help="Adam learning rate (default: 3.6e-4)")
    training.add_argument(
        "--workers", type=int, help="data loader worker processes (default: half the torch threads, at most 4)"
    )
    training.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    training.add_argument(
        "--no-amp", dest="amp", action="store_false", default=None, help="turn off bf16 autocast on CUDA"
    )
    training.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default=None,
        help="turn off the channels-last memory format on CUDA",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, help="output folder (default: runs/<dataset>-<arch>-<encoder>-<date>-<time>)"
    )
    output.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return parser


def _class_weights(text: str) -> str | list[float]:
    if "," in text:
        try:
            return [float(part) for part in text.split(",")]
        except ValueError:
            raise ConfigError(
                f"--class-weights {text!r} is neither a scheme name nor BACKGROUND,FOREGROUND numbers"
            ) from None
    return text


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Return the run's config from the command-line flags."""
    values = {
        **data_settings(args, args.root),
        "arch": args.arch,
        "encoder": args.encoder,
        "encoder_weights": None if args.encoder_weights.lower() == "none" else args.encoder_weights,
        "weights_cache": args.weights_dir,
        "app": args.app,
        "class_weights": _class_weights(args.class_weights),
        "weight_ratio": args.weight_ratio,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "workers": args.workers,
        "device": args.device,
        "amp": args.amp,
        "channels_last": args.channels_last,
    }
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        config = build_config(args)
        out = (
            args.out
            or Path("runs") / f"{config.data.dataset}-{config.arch}-{config.encoder}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        checkpoint = out / CHECKPOINT_FOLDER
        resume_from = None
        if args.resume:
            if not (checkpoint / CHECKPOINT_FILE).is_file():
                raise ConfigError(
                    f"--resume: no checkpoint in {checkpoint}; give the --out folder of the interrupted run"
                )
            saved = TrainConfig.load(out / "config.json")
            if saved != config:
                raise ConfigError(
                    f"--resume: the flags differ from the config saved in {out / 'config.json'}; repeat the original flags"
                )
            resume_from = checkpoint

        def keep_checkpoint(metrics: dict[str, float], folder: Path | None) -> None:
            if folder is None:
                return
            staging = out / f"{CHECKPOINT_FOLDER}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(folder, staging)
            shutil.rmtree(checkpoint, ignore_errors=True)
            staging.rename(checkpoint)

        result = train_and_evaluate(
            config, keep_checkpoint, resume_from=resume_from, output_dir=out, progress=args.progress
        )
    except (DataError, ConfigError, EncoderWeightsError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    test = {key: round(value, 4) for key, value in result.metrics.items() if key.startswith("test/")}
    print(json.dumps({"best_epoch": result.best_epoch, **test}, indent=2))
    print(f"outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
