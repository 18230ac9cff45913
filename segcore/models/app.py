"""Autoencoder post-processing (APP): a training-only head on the network's output.

The APP is a stack of fully connected layers applied along the last (width)
axis of the foreground probability map. The encoder narrows the width to a
small code and a mirror decoder widens it back; ReLU or GELU sits between
layers and a sigmoid at the end keeps the output in [0, 1].

What the MSE compares: ``APP(p)`` against the ground truth, where ``p`` is the
softmax foreground probability of the segmentation network, shape
``(B, H, W)``, and the ground truth is the mask as float {0, 1}, shape
``(B, H, W)``. The gradient of the MSE reaches the segmentation network through
``p``, so the APP shapes the network's training. The APP has its own optimiser,
and inference uses the segmentation network alone.
"""

from __future__ import annotations

from torch import Tensor, nn

# Widths of the narrowing layers; those not smaller than the input width are skipped.
CODE_WIDTHS = (256, 128, 64, 32, 16)
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
APP_SETTINGS = ("none", *ACTIVATIONS)


def app_widths(width: int) -> list[int]:
    """Return the layer widths of the encoder half, from the input width to the code."""
    narrower = [w for w in CODE_WIDTHS if w < width]
    return [width, *narrower] if narrower else [width, max(1, width // 2)]


class AutoencoderPostProcessing(nn.Module):
    """Width-wise fully connected autoencoder: ``(B, H, W)`` in [0, 1] -> ``(B, H, W)`` in [0, 1].

    Args:
        width: Input width ``W``; the layers are sized from it.
        activation: ``relu`` or ``gelu``.
    """

    def __init__(self, width: int, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown APP activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        widths = app_widths(width)
        path = widths + widths[-2::-1]
        layers: list[nn.Module] = []
        for index, (inputs, outputs) in enumerate(zip(path[:-1], path[1:], strict=True)):
            layers.append(nn.Linear(inputs, outputs))
            layers.append(ACTIVATIONS[activation]() if index < len(path) - 2 else nn.Sigmoid())
        self.layers = nn.Sequential(*layers)
        self.width = width

    def forward(self, probabilities: Tensor) -> Tensor:
        if probabilities.shape[-1] != self.width:
            raise ValueError(f"APP was built for width {self.width}, got input of shape {tuple(probabilities.shape)}")
        return self.layers(probabilities)
