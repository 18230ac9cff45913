"""Training losses: weighted cross-entropy, plus the APP's mean squared error."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def weighted_cross_entropy(logits: Tensor, targets: Tensor, class_weights: Tensor) -> Tensor:
    """Return the class-weighted cross-entropy.

    Args:
        logits: ``(B, 2, H, W)``.
        targets: ``(B, H, W)`` int64 with values {0, 1}.
        class_weights: ``(2,)`` as ``(background, foreground)``.

    The mean is taken over pixels weighted by their class weight (PyTorch's
    ``reduction="mean"``), so scaling both weights by one factor leaves the
    loss unchanged; only their ratio matters.
    """
    return F.cross_entropy(logits, targets, weight=class_weights)


def app_mse(logits: Tensor, targets: Tensor, app: Callable[[Tensor], Tensor]) -> Tensor:
    """Return the APP loss: MSE between ``app(softmax(logits)[:, 1])`` and the float mask, both ``(B, H, W)``.

    Args:
        logits: ``(B, 2, H, W)`` from the segmentation network.
        targets: ``(B, H, W)`` int64 with values {0, 1}.
        app: The APP head, mapping foreground probabilities ``(B, H, W)`` to ``(B, H, W)``.

    The mean is over all ``B * H * W`` pixels. The gradient reaches both the
    APP and, through the softmax, the segmentation network.
    """
    probabilities = logits.float().softmax(dim=1)[:, 1]
    return F.mse_loss(app(probabilities), targets.float())
