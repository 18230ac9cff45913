"""Training checkpoints: everything needed to resume a run exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"


@dataclass
class TrainingState:
    """Progress of a run that is not in the model or optimisers.

    Attributes:
        epoch: Last completed epoch (0 before training).
        best_val_iou: Best validation IoU so far (-1 before the first epoch).
        best_epoch: Epoch of ``best_val_iou``.
        best_weights: State dict of the network at ``best_epoch``, on the CPU.
        history: One metrics dict per completed epoch.
    """

    epoch: int = 0
    best_val_iou: float = -1.0
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached CPU copy of a module's state dict."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in module.state_dict().items()}


def save_checkpoint(folder: Path, state: TrainingState, modules: dict[str, Any]) -> Path:
    """Write ``state``, the state dicts of ``modules`` and the RNG states into ``folder``."""
    payload = {
        "state": {
            "epoch": state.epoch,
            "best_val_iou": state.best_val_iou,
            "best_epoch": state.best_epoch,
            "best_weights": state.best_weights,
            "history": state.history,
        },
        "modules": {name: module.state_dict() for name, module in modules.items() if module is not None},
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    torch.save(payload, path)
    return path


def load_checkpoint(folder: Path, modules: dict[str, Any]) -> TrainingState:
    """Restore ``modules`` and the RNG states from ``folder`` and return the training state.

    Raises:
        FileNotFoundError: when ``folder`` contains no checkpoint.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass the folder that contains {CHECKPOINT_FILE}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    for name, module in modules.items():
        if module is None:
            continue
        if name not in payload["modules"]:
            raise ValueError(f"checkpoint {path} has no state for {name!r}; was it written with the same config?")
        module.load_state_dict(payload["modules"][name])
    rng = payload["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return TrainingState(**payload["state"])
