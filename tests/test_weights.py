"""Encoder weights from local files and from an offline Hugging Face cache laid out as the Hub writes it."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import segmentation_models_pytorch as smp
import torch
import torchvision
from safetensors.torch import save_file

from segcore.models import EncoderWeightsError, build_model
from segcore.models import weights as weights_module
from segcore.models.factory import check_encoder_weights
from segcore.models.weights import FETCH_COMMAND, WEIGHTS_CACHE_VARIABLE, find_encoder_weights
from segcore.training import TrainConfig, train_and_evaluate


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 state dict with seeded random weights (fc included, as torchvision saves it)."""
    torch.manual_seed(123)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def offline(monkeypatch):
    """Make huggingface_hub refuse every network call, as HF_HUB_OFFLINE=1 does."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def hub_cache(folder, state: dict[str, torch.Tensor], encoder: str = "resnet18"):
    """Lay out ``folder`` as huggingface_hub's cache holding ``smp-hub/<encoder>.imagenet`` at smp's revision."""
    settings = smp.encoders.encoders[encoder]["pretrained_settings"]["imagenet"]
    repository = folder / f"models--{settings['repo_id'].replace('/', '--')}"
    snapshot = repository / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(settings["revision"])
    encoder_state = {name: tensor.contiguous() for name, tensor in state.items() if not name.startswith("fc.")}
    save_file(encoder_state, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text("{}")
    return snapshot / "model.safetensors"


def assert_encoder_holds(network, state: dict[str, torch.Tensor]) -> None:
    encoder = network.model.encoder
    assert torch.equal(encoder.conv1.weight, state["conv1.weight"])
    assert torch.equal(encoder.layer2[1].conv2.weight, state["layer2.1.conv2.weight"])
    assert torch.equal(encoder.bn1.running_mean, state["bn1.running_mean"])


def test_weights_pth_file(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    assert_encoder_holds(build_model("unet", "resnet18", in_channels=3, encoder_weights=str(path)), resnet18_state)


def test_weights_pth_wrapped_state_dict(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pt"
    torch.save({"state_dict": resnet18_state, "epoch": 90}, path)
    assert_encoder_holds(build_model("unet", "resnet18", in_channels=3, encoder_weights=str(path)), resnet18_state)


def test_weights_safetensors_file(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in resnet18_state.items()}, str(path))
    network = build_model("unetplusplus", "resnet18", in_channels=3, encoder_weights=str(path))
    assert_encoder_holds(network, resnet18_state)


def test_weights_one_channel_sums_rgb_filters(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    network = build_model("unet", "resnet18", in_channels=1, encoder_weights=str(path))
    expected = resnet18_state["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(network.model.encoder.conv1.weight, expected)
    assert network(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_weights_missing_file(tmp_path):
    with pytest.raises(EncoderWeightsError, match="encoder weights file .*missing.pth not found"):
        build_model("unet", "resnet18", encoder_weights=str(tmp_path / "missing.pth"))


def test_weights_unreadable_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(EncoderWeightsError, match="failed to read encoder weights file"):
        build_model("unet", "resnet18", encoder_weights=str(path))


def test_weights_file_not_state_dict(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(EncoderWeightsError, match="contains a Tensor, not a state dict"):
        build_model("unet", "resnet18", encoder_weights=str(path))


def test_weights_other_encoder_rejected(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    with pytest.raises(EncoderWeightsError, match="do not fit encoder resnet34"):
        build_model("unet", "resnet34", encoder_weights=str(path))


def test_weights_unknown_name(tmp_path):
    with pytest.raises(EncoderWeightsError, match="neither a weights name of resnet18 nor an existing file"):
        build_model("unet", "resnet18", encoder_weights="imagenet22k")


def test_weights_local_file_for_timm_encoder(tmp_path):
    with pytest.raises(EncoderWeightsError, match="not supported for timm encoder tu-resnet18"):
        build_model("unet", "tu-resnet18", encoder_weights=str(tmp_path / "weights.pth"))


def test_weights_imagenet_from_offline_cache(tmp_path, resnet18_state, offline):
    cached = hub_cache(tmp_path / "hub", resnet18_state)
    assert find_encoder_weights("resnet18", tmp_path / "hub") == cached
    network = build_model("unet", "resnet18", in_channels=3, encoder_weights="imagenet", weights_cache=tmp_path / "hub")
    assert_encoder_holds(network, resnet18_state)


def test_weights_cache_from_environment(tmp_path, resnet18_state, offline, monkeypatch):
    cached = hub_cache(tmp_path / "hub", resnet18_state)
    monkeypatch.setenv(WEIGHTS_CACHE_VARIABLE, str(tmp_path / "hub"))
    assert find_encoder_weights("resnet18") == cached


def test_weights_missing_cache_offline(tmp_path, offline):
    with pytest.raises(EncoderWeightsError) as error:
        build_model("unet", "resnet18", encoder_weights="imagenet", weights_cache=tmp_path / "empty")
    message = str(error.value)
    assert f"{FETCH_COMMAND} resnet18 --cache-dir DIR" in message
    assert str(tmp_path / "empty") in message
    assert WEIGHTS_CACHE_VARIABLE in message


def test_check_weights_filled_cache(tmp_path, resnet18_state, offline):
    hub_cache(tmp_path / "hub", resnet18_state)
    assert check_encoder_weights("resnet18", "imagenet", tmp_path / "hub") is None


def test_check_weights_empty_cache(tmp_path, offline):
    with pytest.raises(EncoderWeightsError, match=f"{FETCH_COMMAND} resnet34 --cache-dir DIR"):
        check_encoder_weights("resnet34", "imagenet", tmp_path / "empty")


def test_check_weights_missing_file(tmp_path):
    with pytest.raises(EncoderWeightsError, match="missing.safetensors not found"):
        check_encoder_weights("resnet18", str(tmp_path / "missing.safetensors"))


def test_check_weights_none():
    assert check_encoder_weights("resnet18", None) is None


def test_weights_missing_before_training(tiny_settings, tmp_path, offline):
    reports = []
    config = TrainConfig.from_dict({**tiny_settings, "encoder_weights": "imagenet", "weights_cache": str(tmp_path)})
    with pytest.raises(EncoderWeightsError, match="fetch resnet18"):
        train_and_evaluate(config, lambda metrics, folder: reports.append(metrics))
    assert reports == []


def test_fetch_command_uses_filled_cache(tmp_path, resnet18_state, offline, capsys):
    cached = hub_cache(tmp_path / "hub", resnet18_state)
    assert weights_module.main(["fetch", "resnet18", "--cache-dir", str(tmp_path / "hub")]) == 0
    assert f"resnet18: {cached}" in capsys.readouterr().out


def test_fetch_command_offline_error(tmp_path, offline, capsys):
    assert weights_module.main(["fetch", "resnet18", "--cache-dir", str(tmp_path / "empty")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: failed to download imagenet weights of resnet18 from smp-hub/resnet18.imagenet")


def test_fetch_command_unknown_encoder(tmp_path, capsys):
    assert weights_module.main(["fetch", "resnet-18", "--cache-dir", str(tmp_path)]) == 1
    assert "encoder 'resnet-18' has no weights listed" in capsys.readouterr().err
