"""The segmentation network: an smp model that accepts any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SegmentationNetwork(nn.Module):
    """Wrap an smp model: pad the input to a multiple of its output stride, crop the logits back.

    Input ``(B, C, H, W)``; output logits ``(B, classes, H, W)``. Padding is zero
    at the bottom and right, so metrics see exactly the input's pixels.
    """

    def __init__(self, model: nn.Module, divisor: int):
        super().__init__()
        self.model = model
        self.divisor = divisor

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        pad_height = -height % self.divisor
        pad_width = -width % self.divisor
        if pad_height or pad_width:
            images = F.pad(images, (0, pad_width, 0, pad_height))
        logits = self.model(images)
        return logits[..., :height, :width]

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Return the predicted class per pixel, ``(B, H, W)`` int64."""
        return self.forward(images).argmax(dim=1)
