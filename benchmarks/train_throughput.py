"""Measure training throughput in images/s: the model alone, and the data pipeline alone.

Model: ``train_one_epoch`` on random tensors (forward, weighted cross-entropy,
backward, Adam step, non-finite check). The networks are the study's: U-Net and
U-Net++ with ResNet-18 and ResNet-34 encoders of depth 3, decoder channels
(256, 128, 64), scSE and 2 classes. They run on the CPU and, when present, on
CUDA with bf16 autocast and channels-last. Warm-up steps are not timed.

Data: the training split of real lesion photos, prepared as the study does
(Rnorm, bilinear resize to 480 then 224, or to 480 alone). The photos are read
through ``SegmentationDataset`` with augmentation and ``build_loader`` with
``default_workers()`` workers, one loader per epoch as in training. Preparing
the cache and one warm-up epoch are not timed; worker start-up in each timed
epoch is.

    python benchmarks/train_throughput.py                    # CPU, and CUDA when present
    python benchmarks/train_throughput.py --sizes 224 --archs unet --encoders resnet18
    python benchmarks/train_throughput.py --skip-data --cuda-steps 50

These are figures to read, not pass/fail checks.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py, beside this script

from segcore.data.config import DataConfig
from segcore.data.dataset import build_datasets, build_loader
from segcore.data.prepare import prepare_dataset
from segcore.models import AutoencoderPostProcessing, build_model
from segcore.training.loop import default_workers, train_one_epoch

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_LESIONS = REPOSITORY.parent / "shared" / "data" / "isic2017_val_lesion"
# cdw weights of ISIC 2017 as the study computed them; the values do not change the cost.
CLASS_WEIGHTS = (0.2020, 0.7980)
STUDY_BATCH_SIZE = 16


@dataclass
class Measurement:
    """One row of the results table."""

    device: str
    part: str
    setting: str
    size: int
    batch_size: int
    images_per_second: float
    timing: str
    workers: int | None = None


def machine_lines() -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable), torch threads "
        f"{torch.get_num_threads()}, load average {load}",
        f"software: Python {platform.python_version()}, torch {torch.__version__}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)")
    return lines


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(
    arch: str,
    encoder: str,
    size: int,
    batch_size: int,
    device: torch.device,
    warmup: int,
    steps: int,
    app: str,
) -> Measurement:
    """Time ``steps`` training steps of one network on random ``(B, 3, size, size)`` images."""
    on_cuda = device.type == "cuda"
    torch.manual_seed(0)
    network = build_model(arch, encoder, in_channels=3).to(device)
    if on_cuda:
        network = network.to(memory_format=torch.channels_last)
    head = AutoencoderPostProcessing(size, app).to(device) if app != "none" else None
    optimizers = [torch.optim.Adam(network.parameters(), lr=3.6e-4, weight_decay=1e-5)]
    if head is not None:
        optimizers.append(torch.optim.Adam(head.parameters(), lr=1e-3))
    batch = {
        "image": torch.randn(batch_size, 3, size, size, device=device),
        "mask": torch.randint(0, 2, (batch_size, size, size), device=device),
    }
    weights = torch.tensor(CLASS_WEIGHTS, device=device)

    def run(count: int) -> None:
        train_one_epoch(network, head, [batch] * count, optimizers, weights, device, 1, on_cuda, on_cuda, False)

    run(warmup)
    synchronize(device)
    durations = []
    for _ in range(steps):
        started = time.perf_counter()
        run(1)
        synchronize(device)
        durations.append(time.perf_counter() - started)
    # Other jobs on a shared machine only add time, so the fastest step is the best
    # estimate of the step's own cost, as in timeit's "best of N".
    fastest = min(durations)
    timing = f"fastest of {steps} steps {fastest:.3f} s, median {statistics.median(durations):.3f} s"
    setting = f"{arch} {encoder}" + (f" APP {app}" if head is not None else "")
    return Measurement(device.type, "model", setting, size, batch_size, batch_size / fastest, timing)


def time_data(
    root: Path, size: int, batch_size: int, epochs: int, max_images: int | None, cache_dir: str | None
) -> Measurement:
    """Time ``epochs`` passes of the augmented training loader over the prepared lesion photos."""
    resize_steps = [480] if size < 480 else []
    config = DataConfig.from_dict(
        {
            "layout": "folder",
            "root": str(root),
            "image_size": size,
            "resize_steps": resize_steps,
            "rnorm": True,
            "max_images": max_images,
            "cache_dir": cache_dir,
        }
    )
    started = time.perf_counter()
    prepared = prepare_dataset(config)
    logging.info("prepared %s at %d px in %.1f s (not timed)", root.name, size, time.perf_counter() - started)
    dataset = build_datasets(prepared, seed=0)["train"]
    workers = default_workers()

    def run(first_epoch: int, count: int) -> int:
        images = 0
        for epoch in range(first_epoch, first_epoch + count):
            dataset.set_epoch(epoch)
            for batch in build_loader(dataset, batch_size, True, workers, 0, epoch):
                images += batch["image"].shape[0]
        return images

    # One untimed epoch first, so that page-ins of the cache file and library start-up are not counted.
    run(0, 1)
    started = time.perf_counter()
    images = run(1, epochs)
    seconds = time.perf_counter() - started
    setting = f"lesions, Rnorm, augmentation, {workers} workers"
    timing = f"{images} images in {epochs} epochs, {seconds:.2f} s"
    return Measurement("cpu", "data", setting, size, batch_size, images / seconds, timing, workers)


def print_table(rows: list[Measurement]) -> None:
    print(f"{'device':<6} {'part':<5} {'setting':<42} {'size':>5} {'batch':>5} {'images/s':>9}  timing")
    for row in rows:
        print(
            f"{row.device:<6} {row.part:<5} {row.setting:<42} {row.size:>5} {row.batch_size:>5} "
            f"{row.images_per_second:>9.2f}  {row.timing}"
        )


def print_comparison(rows: list[Measurement]) -> None:
    """Compare the data pipeline with the fastest model per device and size."""
    data = {row.size: row for row in rows if row.part == "data"}
    models = [row for row in rows if row.part == "model" and row.size in data]
    if not models:
        return
    print()
    print("Does the data pipeline keep up with the fastest model measured?")
    for device in sorted({row.device for row in models}):
        for size in sorted(data):
            candidates = [row for row in models if row.device == device and row.size == size]
            if not candidates:
                continue
            fastest = max(candidates, key=lambda row: row.images_per_second)
            supply = data[size].images_per_second
            verdict = "yes" if supply >= fastest.images_per_second else "no"
            print(
                f"  {device} {size} px: data {supply:.1f} images/s vs {fastest.setting} "
                f"{fastest.images_per_second:.1f} images/s: {verdict} ({supply / fastest.images_per_second:.1f}x)"
            )
            if data[size].workers == 0:
                # Without workers the main process loads each batch before the step, so the times add up.
                combined = 1 / (1 / supply + 1 / fastest.images_per_second)
                print(f"    no loader workers: loading and training in turn give about {combined:.1f} images/s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 480], help="square image sides in pixels")
    parser.add_argument("--archs", nargs="+", default=["unet", "unetplusplus"], help="smp architectures")
    parser.add_argument("--encoders", nargs="+", default=["resnet18", "resnet34"], help="smp encoders")
    parser.add_argument("--app", default="none", choices=["none", "relu", "gelu"], help="add the APP head to the model")
    parser.add_argument("--cpu-batch-size", type=int, default=2, help="model batch size on the CPU (default: 2)")
    parser.add_argument("--cpu-steps", type=int, default=3, help="timed model steps on the CPU (default: 3)")
    parser.add_argument(
        "--cuda-batch-size", type=int, default=STUDY_BATCH_SIZE, help="model batch size on CUDA (default: 16)"
    )
    parser.add_argument("--cuda-steps", type=int, default=20, help="timed model steps on CUDA (default: 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed model steps (default: 1, plus 3 on CUDA)")
    parser.add_argument("--no-cpu-model", action="store_true", help="skip the model on the CPU")
    parser.add_argument("--skip-data", action="store_true", help="skip the data pipeline")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_LESIONS, help="folder of lesion images and masks")
    parser.add_argument("--data-images", type=int, help="use a subset of this many source images (default: all)")
    parser.add_argument("--data-epochs", type=int, default=20, help="passes over the training split (default: 20)")
    parser.add_argument("--cache-dir", help="decoded-sample cache (default: $SEGSWEEP_CACHE_DIR or ~/.cache/segsweep)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("segcore").setLevel(logging.WARNING)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print("\n".join(machine_lines()))
    print(f"model: train_one_epoch on random tensors, APP {args.app}; data: batch size {STUDY_BATCH_SIZE}")
    print()

    devices = [] if args.no_cpu_model else [(torch.device("cpu"), args.cpu_batch_size, args.warmup, args.cpu_steps)]
    if torch.cuda.is_available():
        # NOTE: this CUDA path (bf16, channels-last) has not been run on a GPU yet.
        devices.append((torch.device("cuda"), args.cuda_batch_size, args.warmup + 3, args.cuda_steps))
    rows: list[Measurement] = []
    for device, batch_size, warmup, steps in devices:
        for size in args.sizes:
            for arch in args.archs:
                for encoder in args.encoders:
                    row = time_model(arch, encoder, size, batch_size, device, warmup, steps, args.app)
                    logging.info("%s %s %d px: %.2f images/s", device.type, row.setting, size, row.images_per_second)
                    rows.append(row)
    if not args.skip_data:
        for size in args.sizes:
            row = time_data(args.data_root, size, STUDY_BATCH_SIZE, args.data_epochs, args.data_images, args.cache_dir)
            logging.info("data %d px: %.2f images/s", size, row.images_per_second)
            rows.append(row)

    print()
    print_table(rows)
    print_comparison(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
