"""train_and_evaluate on real nuclei images at 64 px: training, resume, determinism, NaN detection, APP isolation."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from segcore import metrics as keys
from segcore.data.class_weights import compute_class_weights
from segcore.data.dataset import build_datasets, build_loader
from segcore.data.prepare import prepare_dataset
from segcore.models import AutoencoderPostProcessing, build_model
from segcore.training import ConfigError, NonFiniteLossError, TrainConfig, train_and_evaluate
from segcore.training.checkpoint import CHECKPOINT_FILE
from segcore.training.loop import (
    BEST_MODEL_FILE,
    TrainResult,
    evaluate,
    resolve_acceleration,
    resolve_device,
    train_one_epoch,
)
from tests.conftest import tiny_run_settings

CPU = torch.device("cpu")


class StopAfterReport(Exception):
    """Raised by a report callback to interrupt a run, as a killed worker would."""


@dataclass
class Run:
    """A finished or interrupted run: the reports it made and the checkpoints they carried."""

    reports: list[dict[str, float]] = field(default_factory=list)
    checkpoints: dict[int, Path] = field(default_factory=dict)
    result: TrainResult | None = None

    def recorder(self, folder: Path, stop_after: int | None = None):
        """Return a report callback that keeps each epoch's checkpoint under ``folder``."""

        def report(metrics: dict[str, float], checkpoint: Path | None) -> None:
            self.reports.append(metrics)
            if checkpoint is not None:
                destination = folder / f"epoch-{int(metrics[keys.EPOCH])}"
                shutil.copytree(checkpoint, destination)
                self.checkpoints[int(metrics[keys.EPOCH])] = destination
            if stop_after is not None and metrics[keys.EPOCH] == stop_after:
                raise StopAfterReport(f"stopped after epoch {stop_after}")

        return report


@pytest.fixture(scope="module")
def settings(shared_data, session_cache) -> dict:
    """The tiny run settings of conftest, at module scope so runs can be shared."""
    return tiny_run_settings(shared_data, session_cache)


@pytest.fixture(scope="module")
def app_config(settings) -> TrainConfig:
    """U-Net with the ReLU APP for 3 epochs, so that a resume after epoch 1 covers both optimisers and a
    scheduler step that depends on the restored scheduler state."""
    return TrainConfig.from_dict({**settings, "app": "relu", "epochs": 3})


@pytest.fixture(scope="module")
def baseline(app_config, tmp_path_factory) -> Run:
    folder = tmp_path_factory.mktemp("baseline")
    run = Run()
    run.result = train_and_evaluate(app_config, run.recorder(folder), output_dir=folder / "out")
    return run


@pytest.fixture(scope="module")
def interrupted(app_config, tmp_path_factory) -> Run:
    run = Run()
    with pytest.raises(StopAfterReport):
        train_and_evaluate(app_config, run.recorder(tmp_path_factory.mktemp("interrupted"), stop_after=1))
    return run


@pytest.fixture(scope="module")
def resumed(app_config, interrupted, tmp_path_factory) -> Run:
    run = Run()
    report = run.recorder(tmp_path_factory.mktemp("resumed"))
    run.result = train_and_evaluate(app_config, report, resume_from=interrupted.checkpoints[1])
    return run


@pytest.fixture(scope="module")
def other_seed(settings, tmp_path_factory) -> Run:
    config = TrainConfig.from_dict({**settings, "app": "relu", "seed": 1, "epochs": 1})
    run = Run()
    run.result = train_and_evaluate(config, run.recorder(tmp_path_factory.mktemp("seed1")))
    return run


@pytest.fixture(scope="module")
def prepared(app_config):
    return prepare_dataset(app_config.data)


@pytest.fixture(scope="module")
def batch(prepared) -> dict[str, torch.Tensor]:
    """One augmented training batch of 2 real images, ``image`` (2, 1, 64, 64) and ``mask`` (2, 64, 64)."""
    return next(iter(build_loader(build_datasets(prepared, seed=0)["train"], 2, False, 0, 0)))


def network_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / CHECKPOINT_FILE, weights_only=False)["modules"]["network"]


def assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert different == []


# Every architecture and APP setting takes a training step.


@pytest.mark.parametrize("app", ["none", "relu", "gelu"])
@pytest.mark.parametrize("arch", ["unet", "unetplusplus"])
def test_step_every_architecture_and_app(arch, app, batch):
    torch.manual_seed(0)
    network = build_model(arch, "resnet18", in_channels=1)
    head = AutoencoderPostProcessing(64, app) if app != "none" else None
    modules = [network] + ([head] if head is not None else [])
    optimizers = [torch.optim.Adam(module.parameters(), lr=1e-3) for module in modules]
    before = [[parameter.detach().clone() for parameter in module.parameters()] for module in modules]
    losses = train_one_epoch(network, head, [batch], optimizers, torch.tensor([0.2, 0.8]), CPU, 1, False, False, False)
    assert math.isfinite(losses["loss"])
    assert losses["loss"] == pytest.approx(losses["ce"] + losses["app_mse"])
    assert (losses["app_mse"] > 0) == (head is not None)
    for module, old in zip(modules, before, strict=True):
        changed = any(not torch.equal(new, previous) for new, previous in zip(module.parameters(), old, strict=True))
        assert changed, f"{type(module).__name__} was not updated"


def test_step_app_gradient_reaches_network(batch):
    states = []
    for app in ("none", "relu"):
        torch.manual_seed(0)
        network = build_model("unet", "resnet18", in_channels=1)
        head = AutoencoderPostProcessing(64, app) if app != "none" else None
        optimizers = [torch.optim.Adam(network.parameters(), lr=1e-3)]
        train_one_epoch(network, head, [batch], optimizers, torch.tensor([0.2, 0.8]), CPU, 1, False, False, False)
        states.append(network.state_dict())
    name = "model.decoder.blocks.0.conv1.0.weight"
    assert not torch.equal(states[0][name], states[1][name])


# Every weight scheme and architecture trains and tests end to end (one epoch each).


@pytest.mark.parametrize(
    ("arch", "app", "class_weights", "weight_ratio"),
    [
        ("unetplusplus", "gelu", "median_frequency", None),
        ("unet", "gelu", "dedl", None),
        ("unetplusplus", "none", [0.3, 0.7], None),
        ("unet", "none", "ratio", 3.0),
        ("fpn", "none", "uniform", None),
    ],
)
def test_train_configuration(settings, prepared, arch, app, class_weights, weight_ratio):
    values = {**settings, "arch": arch, "app": app, "class_weights": class_weights, "weight_ratio": weight_ratio}
    result = train_and_evaluate(TrainConfig.from_dict({**values, "epochs": 1}))
    expected_weights = compute_class_weights(class_weights, prepared.pixel_stats("train"), weight_ratio)
    assert result.class_weights == pytest.approx(expected_weights)
    assert math.isfinite(result.metrics[keys.TRAIN_LOSS])
    assert 0.0 <= result.metrics[keys.TEST_IOU] <= 1.0
    assert (keys.TRAIN_MSE in result.metrics) == (app != "none")


def test_train_class_weights_cdw(baseline, prepared):
    fraction = prepared.pixel_stats("train").foreground_fraction
    assert baseline.result.class_weights == pytest.approx((fraction, 1 - fraction))


# Reports, best weights, schedule.


def test_report_every_epoch(baseline):
    assert [report[keys.EPOCH] for report in baseline.reports] == [1, 2, 3]
    assert sorted(baseline.checkpoints) == [1, 2, 3]


def test_report_test_metrics_last_only(baseline):
    assert keys.TEST_IOU not in baseline.reports[0]
    assert baseline.reports[-1] == baseline.result.metrics
    for name in keys.SPLIT_METRICS:
        assert keys.metric_key("test", name) in baseline.result.metrics


def test_best_epoch_has_best_val_iou(baseline):
    values = [report[keys.VAL_IOU] for report in baseline.reports]
    assert baseline.result.best_epoch == values.index(max(values)) + 1
    assert baseline.result.metrics[keys.BEST_VAL_IOU] == max(values)


def test_loss_is_ce_plus_app_mse(baseline):
    metrics = baseline.result.metrics
    assert metrics[keys.TRAIN_LOSS] == pytest.approx(metrics[keys.TRAIN_CE] + metrics[keys.TRAIN_MSE])


def test_cosine_learning_rate(baseline, app_config):
    assert baseline.reports[0][keys.LEARNING_RATE] == pytest.approx(3.6e-4)
    # CosineAnnealingLR after t steps: eta_min + (lr - eta_min) (1 + cos(pi t / T_max)) / 2.
    for step in (1, 2):
        expected = 3.4e-4 + (3.6e-4 - 3.4e-4) * (1 + math.cos(math.pi * step / 50)) / 2
        assert baseline.reports[step][keys.LEARNING_RATE] == pytest.approx(expected, rel=1e-9)
    assert app_config.cosine_t_max == 50


def test_checkpoint_contents(baseline):
    payload = torch.load(baseline.checkpoints[1] / CHECKPOINT_FILE, weights_only=False)
    assert set(payload["modules"]) == {"network", "app", "optimizer", "app_optimizer", "scheduler"}
    assert set(payload["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert payload["state"]["epoch"] == 1
    assert payload["state"]["best_weights"] is not None
    assert (baseline.checkpoints[1] / "config.json").is_file()


# Resume and determinism (exact on the CPU).


def test_resume_equals_uninterrupted(baseline, resumed):
    assert resumed.result.metrics == baseline.result.metrics


def test_resume_trains_remaining_epochs(resumed):
    assert [report[keys.EPOCH] for report in resumed.reports] == [2, 3]


def test_resume_same_network(baseline, resumed):
    assert_same_tensors(resumed.result.network.state_dict(), baseline.result.network.state_dict())


def test_resume_from_last_epoch(baseline, app_config):
    reports = []
    result = train_and_evaluate(
        app_config, lambda metrics, folder: reports.append(metrics), resume_from=baseline.checkpoints[3]
    )
    assert result.metrics == baseline.result.metrics
    assert reports == []
    assert_same_tensors(result.network.state_dict(), baseline.result.network.state_dict())


def test_checkpoint_last_epoch_keeps_trained_weights(baseline):
    # The test loads the best weights, but the last checkpoint must hold the weights that
    # its optimiser state belongs to: they equal the best ones only when the last epoch is best.
    payload = torch.load(baseline.checkpoints[3] / CHECKPOINT_FILE, weights_only=False)
    name = "model.encoder.conv1.weight"
    same = torch.equal(payload["modules"]["network"][name], payload["state"]["best_weights"][name])
    assert same == (baseline.result.best_epoch == 3)


def test_resume_missing_checkpoint(app_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train_and_evaluate(app_config, resume_from=tmp_path)


def test_seed_repeat_identical(baseline, interrupted):
    assert interrupted.reports[0] == baseline.reports[0]
    assert_same_tensors(network_state(interrupted.checkpoints[1]), network_state(baseline.checkpoints[1]))


def test_seed_other_differs(baseline, other_seed):
    assert other_seed.reports[0][keys.TRAIN_LOSS] != baseline.reports[0][keys.TRAIN_LOSS]
    first = network_state(other_seed.checkpoints[1])
    second = network_state(baseline.checkpoints[1])
    assert not torch.equal(first["model.encoder.conv1.weight"], second["model.encoder.conv1.weight"])


# The APP is training only.


def test_app_not_in_result_network(baseline):
    network = baseline.result.network
    assert not any(isinstance(module, AutoencoderPostProcessing) for module in network.modules())
    assert network.state_dict().keys() == build_model("unet", "resnet18", in_channels=1).state_dict().keys()


def test_app_not_in_best_model_file(baseline):
    saved = torch.load(baseline.result.files["model"], weights_only=False)
    assert baseline.result.files["model"].name == BEST_MODEL_FILE
    assert saved["state_dict"].keys() == build_model("unet", "resnet18", in_channels=1).state_dict().keys()
    assert saved["config"]["app"] == "relu"


def test_app_test_metrics_from_network_alone(baseline, prepared, app_config):
    loader = build_loader(build_datasets(prepared, app_config.seed)["test"], app_config.batch_size, False, 0, 0)
    weights = torch.tensor(baseline.result.class_weights, dtype=torch.float32)
    values = evaluate(baseline.result.network, loader, weights, CPU, False, False)
    for name, value in values.items():
        assert baseline.result.metrics[keys.metric_key("test", name)] == value


# Non-finite losses stop the run.


def test_nan_after_absurd_learning_rate(settings):
    config = TrainConfig.from_dict({**settings, "lr": 1e30})
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 1, step 2"):
        train_and_evaluate(config)


def test_nan_from_overflowing_weights(settings):
    # Each weight is finite, but their sum over 4 x 64 x 64 pixels overflows float32.
    config = TrainConfig.from_dict({**settings, "class_weights": [3e38, 3e38]})
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step 1 \(CE nan"):
        train_and_evaluate(config)


# Device flags and config checks.


@pytest.mark.parametrize(
    ("device", "amp", "channels_last", "expected"),
    [
        ("cpu", None, None, (False, False)),
        ("cuda", None, None, (True, True)),
        ("cuda", False, None, (False, True)),
        ("cuda", None, False, (True, False)),
        ("cpu", True, True, (True, True)),
    ],
)
def test_acceleration_defaults(device, amp, channels_last, expected):
    config = TrainConfig(amp=amp, channels_last=channels_last)
    assert resolve_acceleration(config, torch.device(device)) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_cuda_unavailable():
    with pytest.raises(ConfigError, match="device 'cuda' requested but CUDA is not available"):
        resolve_device("cuda")


def test_device_auto_without_cuda():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_config_unknown_key():
    with pytest.raises(ConfigError, match="unknown setting.* learning_rate; valid settings: .*lr"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_config_unknown_architecture():
    with pytest.raises(ConfigError, match="unknown architecture 'unet3'; valid architectures: unet, unetplusplus"):
        TrainConfig(arch="unet3")


def test_config_unknown_encoder():
    with pytest.raises(ConfigError, match="unknown encoder 'resnet-34'; did you mean resnet34"):
        TrainConfig(encoder="resnet-34")


def test_config_decoder_depth_mismatch():
    with pytest.raises(ConfigError, match=r"decoder_channels \(256, 128, 64\) has 3 entries but encoder_depth is 4"):
        TrainConfig(encoder_depth=4)


def test_config_invalid_device():
    with pytest.raises(ConfigError, match="invalid device 'gpu'"):
        TrainConfig(device="gpu")


def test_config_round_trip(app_config, tmp_path):
    app_config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == app_config
