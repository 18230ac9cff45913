"""Settings of the wrong type fail with the setting's name, not a traceback."""

from __future__ import annotations

import pytest

from segcore.config_types import matches
from segcore.data.errors import DataError
from segcore.training.config import ConfigError, TrainConfig


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"epochs": "abc"}, ConfigError, "epochs must be an integer, got 'abc'"),
        ({"epochs": True}, ConfigError, "epochs must be an integer, got True"),
        ({"epochs": 2.5}, ConfigError, "epochs must be an integer, got 2.5"),
        ({"lr": "fast"}, ConfigError, "lr must be a number, got 'fast'"),
        ({"class_weights": [1, "a"]}, ConfigError, "class_weights must be a string or a list of numbers"),
        ({"decoder_channels": "wide"}, ConfigError, "decoder_channels must be a list of integers"),
        ({"image_size": "64"}, DataError, "image_size must be an integer or null, got '64'"),
        ({"rnorm": "yes"}, DataError, "rnorm must be true or false, got 'yes'"),
        ({"layout_options": ["kind"]}, DataError, "layout_options must be a mapping"),
    ],
)
def test_wrong_type_names_setting(settings, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("(", r"\(")):
        TrainConfig.from_dict({"encoder_weights": None, **settings})


def test_json_lists_accepted_for_tuples():
    config = TrainConfig.from_dict(
        {"encoder_weights": None, "class_weights": [0.2, 0.8], "resize_steps": [480], "image_size": 224, "lr": 1}
    )
    assert config.class_weights == (0.2, 0.8)
    assert config.data.resize_steps == (480,)
    assert config.lr == 1


def test_matches_fixed_length_tuple():
    assert matches((0.2, 0.8), tuple[float, float])
    assert not matches((0.2,), tuple[float, float])
    assert not matches("ab", tuple[float, float])
