"""``train_and_evaluate``: one configuration of the study, from data to test metrics.

The function reads top to bottom as config -> data -> model -> loop -> metrics.
Each epoch it trains, validates and calls ``report(metrics, checkpoint_dir)``;
the weights with the best validation IoU are tested after the last epoch and
their test metrics are part of the last report. Nothing here imports Ray
or MLflow: the callback decides where metrics and checkpoints go.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from segcore import metrics as keys
from segcore.data.class_weights import compute_class_weights
from segcore.data.dataset import build_datasets, build_loader
from segcore.data.prepare import prepare_dataset
from segcore.losses import app_mse, weighted_cross_entropy
from segcore.metrics import SplitMetrics, metric_key
from segcore.models.app import AutoencoderPostProcessing
from segcore.models.factory import build_model
from segcore.models.network import SegmentationNetwork
from segcore.training.checkpoint import TrainingState, cpu_state_dict, load_checkpoint, save_checkpoint
from segcore.training.config import ConfigError, TrainConfig
from segcore.training.overlays import write_overlays

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, float], Path | None], None]

BEST_MODEL_FILE = "best_model.pt"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "metrics.csv"
OVERLAY_FOLDER = "overlays"


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


@dataclass
class TrainResult:
    """The outcome of a finished run.

    Attributes:
        metrics: The last report: last epoch's metrics plus ``test/*``.
        best_epoch: Epoch whose weights were tested.
        network: The tested segmentation network (no APP), on the CPU.
        class_weights: ``(background, foreground)`` weights used by the loss.
        files: Output files by name (config, metrics, model, overlays), when
            an output folder was given.
    """

    metrics: dict[str, float]
    best_epoch: int
    network: SegmentationNetwork
    class_weights: tuple[float, float]
    files: dict[str, Path] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Return the device for ``name``; ``auto`` is CUDA when available, else the CPU.

    Raises:
        ConfigError: when ``name`` requests CUDA on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return device


def resolve_acceleration(config: TrainConfig, device: torch.device) -> tuple[bool, bool]:
    """Return ``(amp, channels_last)``: the config's values, or on for CUDA and off elsewhere where unset."""
    on_cuda = device.type == "cuda"
    amp = config.amp if config.amp is not None else on_cuda
    channels_last = config.channels_last if config.channels_last is not None else on_cuda
    return amp, channels_last


def default_workers() -> int:
    """Return half the threads torch may use, at most 4 (0 on one or two threads)."""
    return min(4, torch.get_num_threads() // 2) if torch.get_num_threads() > 2 else 0


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch's images ``(B, C, H, W)`` and masks ``(B, H, W)`` to ``device``."""
    images = batch["image"].to(device, non_blocking=True)
    masks = batch["mask"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def train_one_epoch(
    network: nn.Module,
    app: nn.Module | None,
    loader,
    optimizers: list[torch.optim.Optimizer],
    class_weights: torch.Tensor,
    device: torch.device,
    epoch: int,
    amp: bool,
    channels_last: bool,
    progress: bool,
) -> dict[str, float]:
    """Run one training epoch; return the mean total, CE and APP losses.

    Raises:
        NonFiniteLossError: when a step's loss is NaN or infinite.
    """
    network.train()
    if app is not None:
        app.train()
    sums = {"loss": 0.0, "ce": 0.0, "app_mse": 0.0}
    samples = 0
    batches = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, unit="batch")
    for step, batch in enumerate(batches, start=1):
        images, masks = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = network(images)
            ce = weighted_cross_entropy(logits.float(), masks, class_weights)
            mse = app_mse(logits, masks, app) if app is not None else torch.zeros((), device=device)
            loss = ce + mse
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {epoch}, step {step} (CE {ce.item()}, APP MSE {mse.item()}); "
                "lower the learning rate or check the input images for invalid values"
            )
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        size = images.shape[0]
        samples += size
        sums["loss"] += loss.item() * size
        sums["ce"] += ce.item() * size
        sums["app_mse"] += mse.item() * size
        batches.set_postfix(loss=f"{loss.item():.4f}")
    return {name: total / max(samples, 1) for name, total in sums.items()}


@torch.no_grad()
def evaluate(
    network: nn.Module, loader, class_weights: torch.Tensor, device: torch.device, amp: bool, channels_last: bool
) -> dict[str, float]:
    """Return the split metrics (``iou``, ``dice``, ``accuracy``, ``mean_image_iou``) and the mean CE ``loss``."""
    network.eval()
    split_metrics = SplitMetrics()
    loss_sum, samples = 0.0, 0
    for batch in loader:
        images, masks = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = network(images)
        loss_sum += weighted_cross_entropy(logits.float(), masks, class_weights).item() * images.shape[0]
        samples += images.shape[0]
        split_metrics.update(logits.argmax(dim=1), masks)
    return {**split_metrics.compute(), "loss": loss_sum / max(samples, 1)}


def _split_metrics(split: str, values: dict[str, float]) -> dict[str, float]:
    return {metric_key(split, name): value for name, value in values.items()}


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    columns = sorted({key for row in history for key in row}, key=lambda k: (k != keys.EPOCH, k))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


@dataclass
class TrainingParts:
    """The trainable pieces of a run: the network, the optional APP head, their optimisers and the schedule."""

    network: SegmentationNetwork
    app: AutoencoderPostProcessing | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    app_optimizer: torch.optim.Optimizer | None

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers stepped after every batch."""
        return [self.optimizer] + ([self.app_optimizer] if self.app_optimizer is not None else [])

    @property
    def modules(self) -> dict[str, object]:
        """Everything with a state dict that a checkpoint stores, by name."""
        return {
            "network": self.network,
            "app": self.app,
            "optimizer": self.optimizer,
            "app_optimizer": self.app_optimizer,
            "scheduler": self.scheduler,
        }


def build_training_parts(
    config: TrainConfig, channels: int, width: int, device: torch.device, channels_last: bool
) -> TrainingParts:
    """Build the network (seeded), the APP head for inputs ``width`` pixels wide, Adam and the cosine schedule."""
    torch.manual_seed(config.seed)
    network = build_model(
        arch=config.arch,
        encoder=config.encoder,
        in_channels=channels,
        encoder_weights=config.encoder_weights,
        encoder_depth=config.encoder_depth,
        decoder_channels=config.decoder_channels,
        decoder_attention=config.decoder_attention,
        weights_cache=config.weights_cache,
    ).to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    app = AutoencoderPostProcessing(width, config.app).to(device) if config.app != "none" else None
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.cosine_t_max, eta_min=config.lr_min)
    app_optimizer = torch.optim.Adam(app.parameters(), lr=config.app_lr) if app is not None else None
    return TrainingParts(network, app, optimizer, scheduler, app_optimizer)


def train_and_evaluate(
    config: TrainConfig,
    report: Report | None = None,
    *,
    resume_from: Path | None = None,
    output_dir: Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train one configuration, keep the best validation weights and test them.

    Args:
        config: The run's configuration.
        report: Called after every epoch with the metrics and a folder holding
            the checkpoint; the folder is deleted after the call returns, so
            copy what you keep. The last call also carries ``test/*`` metrics.
        resume_from: Folder of a checkpoint written by an earlier run of the
            same config; training continues after its epoch and ends with the
            metrics of an uninterrupted run (bit for bit on the CPU).
        output_dir: When given, receives ``config.json``, ``metrics.csv``,
            ``metrics.json``, ``best_model.pt`` and ``overlays/*.png``.
        progress: Show a progress bar per epoch.

    Returns:
        The final metrics, the tested network and the output files.

    Raises:
        DataError: for invalid data.
        ConfigError: when the config requests CUDA on a machine without it.
        NonFiniteLossError: when the loss becomes NaN or infinite.
        EncoderWeightsError: when the encoder weights cannot be found.
    """
    seed_everything(config.seed)
    device = resolve_device(config.device)
    amp, channels_last = resolve_acceleration(config, device)

    # Data
    data = prepare_dataset(config.data)
    class_weights = compute_class_weights(config.class_weights, data.pixel_stats("train"), config.weight_ratio)
    weight_tensor = torch.tensor(class_weights, dtype=torch.float32, device=device)
    datasets = build_datasets(data, config.seed)
    workers = config.workers if config.workers is not None else default_workers()
    logger.info(
        "dataset %s: %s samples of %s x %s, %d channel(s); class weights %s = (%.4f, %.4f)",
        data.config.dataset,
        {split: len(dataset) for split, dataset in datasets.items()},
        *data.image_shape,
        data.channels,
        config.class_weights,
        *class_weights,
    )

    # Model and optimisers
    parts = build_training_parts(config, data.channels, data.image_shape[1], device, channels_last)
    network, app, optimizer, scheduler = parts.network, parts.app, parts.optimizer, parts.scheduler
    optimizers, modules = parts.optimizers, parts.modules

    state = TrainingState()
    if resume_from is not None:
        state = load_checkpoint(Path(resume_from), modules)
        logger.info("resumed from %s after epoch %d", resume_from, state.epoch)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        config.save(output_dir / "config.json")

    # Loop
    metrics: dict[str, float] = state.history[-1] if state.history else {}
    for epoch in range(state.epoch + 1, config.epochs + 1):
        datasets["train"].set_epoch(epoch)
        train_loader = build_loader(datasets["train"], config.batch_size, True, workers, config.seed, epoch)
        learning_rate = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            network, app, train_loader, optimizers, weight_tensor, device, epoch, amp, channels_last, progress
        )
        val = evaluate(
            network,
            build_loader(datasets["val"], config.batch_size, False, workers, config.seed),
            weight_tensor,
            device,
            amp,
            channels_last,
        )
        scheduler.step()
        if val["iou"] > state.best_val_iou:
            state.best_val_iou, state.best_epoch = val["iou"], epoch
            state.best_weights = cpu_state_dict(network)

        metrics = {
            keys.EPOCH: epoch,
            keys.LEARNING_RATE: learning_rate,
            keys.TRAIN_LOSS: train["loss"],
            keys.TRAIN_CE: train["ce"],
            **({keys.TRAIN_MSE: train["app_mse"]} if app is not None else {}),
            **_split_metrics("val", val),
            keys.BEST_EPOCH: state.best_epoch,
            keys.BEST_VAL_IOU: state.best_val_iou,
        }
        if epoch == config.epochs:
            metrics.update(_test(network, state, datasets, config, weight_tensor, device, amp, channels_last, workers))
        state.epoch = epoch
        state.history.append(metrics)
        logger.info(
            "epoch %d/%d: train loss %.4f, val IoU %.4f (best %.4f at epoch %d)",
            epoch,
            config.epochs,
            train["loss"],
            val["iou"],
            state.best_val_iou,
            state.best_epoch,
        )
        if output_dir is not None:
            _write_history(output_dir / HISTORY_FILE, state.history)
        if report is not None:
            with tempfile.TemporaryDirectory(prefix="segcore-checkpoint-") as folder:
                save_checkpoint(Path(folder), state, modules)
                config.save(Path(folder) / "config.json")
                report(dict(metrics), Path(folder))

    if metrics.get(keys.TEST_IOU) is None:
        # Resumed from the checkpoint of the last epoch: only the test is left to do.
        metrics.update(_test(network, state, datasets, config, weight_tensor, device, amp, channels_last, workers))
        if report is not None:
            report(dict(metrics), None)
    network.load_state_dict(state.best_weights)

    # Outputs
    files: dict[str, Path] = {}
    if output_dir is not None:
        files = _write_outputs(output_dir, config, network, metrics, state.history, datasets["test"], device)
    return TrainResult(
        metrics=metrics,
        best_epoch=state.best_epoch,
        network=network.to("cpu").to(memory_format=torch.contiguous_format),
        class_weights=class_weights,
        files=files,
    )


def _test(network, state, datasets, config, weight_tensor, device, amp, channels_last, workers) -> dict[str, float]:
    """Return the ``test/*`` metrics of the best validation weights; ``network`` keeps its own weights."""
    if state.best_weights is None:
        raise RuntimeError("no validation epoch has finished, so there are no best weights to test")
    # The last epoch's checkpoint is written after the test and must hold the trained
    # weights that its optimiser state belongs to, so they are put back afterwards.
    trained = cpu_state_dict(network)
    network.load_state_dict(state.best_weights)
    loader = build_loader(datasets["test"], config.batch_size, False, workers, config.seed)
    test = evaluate(network, loader, weight_tensor, device, amp, channels_last)
    network.load_state_dict(trained)
    if not all(math.isfinite(value) for value in test.values()):
        logger.warning("test metrics contain non-finite values: %s", test)
    return _split_metrics("test", test)


def _write_outputs(
    output_dir: Path, config: TrainConfig, network, metrics, history, test_dataset, device
) -> dict[str, Path]:
    files = {"config": output_dir / "config.json", "history": output_dir / HISTORY_FILE}
    _write_history(files["history"], history)
    files["metrics"] = output_dir / METRICS_FILE
    files["metrics"].write_text(json.dumps(metrics, indent=2, sort_keys=True))
    files["model"] = output_dir / BEST_MODEL_FILE
    torch.save({"config": config.to_dict(), "state_dict": cpu_state_dict(network)}, files["model"])
    for index, path in enumerate(
        write_overlays(network, test_dataset, config.overlays, output_dir / OVERLAY_FOLDER, device)
    ):
        files[f"overlay_{index}"] = path
    return files
