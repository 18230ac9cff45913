"""The APP head: layer sizes from the input width, output range, errors, and its documented contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcore import losses
from segcore.models import app as app_module
from segcore.models.app import APP_SETTINGS, AutoencoderPostProcessing, app_widths


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        (480, [480, 256, 128, 64, 32, 16]),
        (224, [224, 128, 64, 32, 16]),
        (64, [64, 32, 16]),
        (17, [17, 16]),
        (16, [16, 8]),
        (2, [2, 1]),
    ],
)
def test_app_widths(width, expected):
    assert app_widths(width) == expected


def linear_shapes(head: AutoencoderPostProcessing) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in head.layers if isinstance(layer, nn.Linear)]


def test_app_layers_mirror():
    head = AutoencoderPostProcessing(64, "relu")
    assert linear_shapes(head) == [(64, 32), (32, 16), (16, 32), (32, 64)]


@pytest.mark.parametrize(("activation", "kind"), [("relu", nn.ReLU), ("gelu", nn.GELU)])
def test_app_activation_between_layers(activation, kind):
    layers = list(AutoencoderPostProcessing(64, activation).layers)
    assert [type(layer) for layer in layers[1::2]] == [kind, kind, kind, nn.Sigmoid]


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_app_output_shape_and_range(activation):
    head = AutoencoderPostProcessing(70, activation)
    output = head(torch.rand(2, 60, 70))
    assert output.shape == (2, 60, 70)
    assert output.min().item() >= 0.0
    assert output.max().item() <= 1.0


def test_app_rejects_other_width():
    with pytest.raises(ValueError, match=r"built for width 64, got input of shape \(1, 64, 70\)"):
        AutoencoderPostProcessing(64)(torch.rand(1, 64, 70))


def test_app_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown APP activation 'tanh'; valid: relu, gelu"):
        AutoencoderPostProcessing(64, "tanh")


def test_app_settings():
    assert APP_SETTINGS == ("none", "relu", "gelu")


def test_app_docstrings_state_mse_operands():
    # The contract the training loss relies on: the head receives the softmax foreground
    # probability (B, H, W) and its output is compared with the float {0, 1} mask.
    for text in (app_module.__doc__, losses.app_mse.__doc__):
        assert "softmax" in text
        assert "(B, H, W)" in text
        assert "mask" in text
