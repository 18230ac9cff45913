"""The model factory and SegmentationNetwork: real smp models, random initialisation, tiny inputs."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base.modules import SCSEModule
from torch import nn

from segcore.models import ARCHITECTURES, build_model

STUDY_ARCHITECTURES = ("unet", "unetplusplus")


def parameter_count(*modules: nn.Module) -> int:
    return sum(parameter.numel() for module in modules for parameter in module.parameters())


@pytest.mark.parametrize("arch", [*STUDY_ARCHITECTURES, "fpn"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_build_forward_shape(arch, in_channels):
    network = build_model(arch, "resnet18", in_channels=in_channels).eval()
    with torch.no_grad():
        logits = network(torch.randn(2, in_channels, 64, 64))
    assert logits.shape == (2, 2, 64, 64)


@pytest.mark.parametrize("arch", [*STUDY_ARCHITECTURES, "fpn"])
def test_build_odd_size_cropped_back(arch):
    network = build_model(arch, "resnet18", in_channels=3).eval()
    with torch.no_grad():
        logits = network(torch.randn(1, 3, 60, 70))
    assert logits.shape == (1, 2, 60, 70)


def test_network_pads_bottom_right():
    torch.manual_seed(0)
    network = build_model("unet", "resnet18", in_channels=1).eval()
    images = torch.randn(1, 1, 60, 70)
    with torch.no_grad():
        padded = network.model(F.pad(images, (0, 2, 0, 4)))
        cropped = network(images)
    assert network.divisor == 8
    assert torch.equal(cropped, padded[..., :60, :70])


def test_network_predict_classes():
    network = build_model("unet", "resnet18", in_channels=1).eval()
    prediction = network.predict(torch.randn(2, 1, 60, 70))
    assert prediction.shape == (2, 60, 70)
    assert prediction.dtype == torch.int64
    assert set(prediction.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("arch", STUDY_ARCHITECTURES)
def test_build_study_decoder(arch):
    network = build_model(arch, "resnet18", in_channels=3)
    assert any(isinstance(module, SCSEModule) for module in network.model.decoder.modules())
    assert network.model.segmentation_head[0].in_channels == 64
    assert network.model.segmentation_head[0].out_channels == 2


def test_build_without_attention():
    network = build_model("unet", "resnet18", in_channels=3, decoder_attention=None)
    assert not any(isinstance(module, SCSEModule) for module in network.modules())


def test_build_drops_unused_stages():
    network = build_model("unet", "resnet18", in_channels=3)
    encoder = network.model.encoder
    assert isinstance(encoder.layer3, nn.Identity)
    assert isinstance(encoder.layer4, nn.Identity)
    assert parameter_count(encoder) == parameter_count(encoder.conv1, encoder.bn1, encoder.layer1, encoder.layer2)


def test_build_dropped_stages_keep_output():
    torch.manual_seed(0)
    network = build_model("unet", "resnet18", in_channels=3).eval()
    torch.manual_seed(0)
    reference = smp.Unet(
        "resnet18",
        encoder_depth=3,
        encoder_weights=None,
        decoder_channels=(256, 128, 64),
        decoder_attention_type="scse",
        classes=2,
    ).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(network(images), reference(images))


def test_build_architecture_case_insensitive():
    assert isinstance(build_model("UnetPlusPlus", "resnet18").model, smp.UnetPlusPlus)


def test_build_unknown_architecture_lists_valid():
    with pytest.raises(ValueError, match="unknown architecture 'unet3'") as error:
        build_model("unet3", "resnet18")
    for name in ARCHITECTURES:
        assert name in str(error.value)


def test_build_unknown_encoder_lists_valid():
    with pytest.raises(ValueError, match="unknown encoder 'resnet-18'") as error:
        build_model("unet", "resnet-18")
    assert "did you mean resnet18" in str(error.value)
    for name in ("resnet34", "resnet101", "efficientnet-b0", "tu-<timm model>"):
        assert name in str(error.value)


def test_build_unknown_timm_encoder():
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        build_model("unet", "tu-no_such_net")


def test_build_decoder_depth_mismatch():
    with pytest.raises(ValueError, match=r"decoder_channels \(256, 128\) has 2 entries but encoder_depth is 3"):
        build_model("unet", "resnet18", decoder_channels=(256, 128))
