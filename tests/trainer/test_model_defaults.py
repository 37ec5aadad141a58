"""A model's recommended training defaults (trainer/model_defaults.py) and the demo model's."""

from __future__ import annotations

import json

import pytest

from trainer.model_defaults import (
    DEFAULTS_FILE,
    ModelDefaultsError,
    apply_model_defaults,
    read_model_defaults,
    write_model_defaults,
)


def test_read_write_round_trip_and_missing_file(tmp_path):
    assert read_model_defaults(tmp_path) == {}
    write_model_defaults(tmp_path, {"optimizer": {"lr": 5e-4}, "max_steps": 200}, "why")
    assert read_model_defaults(tmp_path) == {"optimizer": {"lr": 5e-4}, "max_steps": 200}
    assert json.loads((tmp_path / DEFAULTS_FILE).read_text())["description"] == "why"
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULTS_FILE]  # no temporary file left


@pytest.mark.parametrize("text, words", [
    ("not json", "not readable JSON"),
    ("[1, 2]", '"config" object'),
    ('{"config": 3}', '"config" object'),
    ('{"config": {"run_dir": "/etc"}}', "run_dir"),
    ('{"config": {"model": "x", "dataset": "y"}}', "dataset, model"),
])
def test_an_unusable_file_says_what_is_wrong(tmp_path, text, words):
    (tmp_path / DEFAULTS_FILE).write_text(text)
    with pytest.raises(ModelDefaultsError, match=words):
        read_model_defaults(tmp_path)


def test_a_huge_file_is_refused_unread(tmp_path):
    (tmp_path / DEFAULTS_FILE).write_text('{"config": {}, "pad": "' + "x" * 70_000 + '"}')
    with pytest.raises(ModelDefaultsError, match="larger than"):
        read_model_defaults(tmp_path)


def test_the_users_fields_win_and_nested_blocks_merge():
    defaults = {"optimizer": {"lr": 5e-4, "warmup_steps": 5}, "max_steps": 200, "lora": {"r": 8}}
    user = {"optimizer": {"warmup_steps": 0}, "lora": None, "seed": 3}
    assert apply_model_defaults(defaults, user) == {
        "optimizer": {"lr": 5e-4, "warmup_steps": 0},  # lr filled, the user's warmup kept
        "max_steps": 200,
        "lora": None,  # an explicit null is a choice
        "seed": 3,
    }
    assert user == {"optimizer": {"warmup_steps": 0}, "lora": None, "seed": 3}  # not mutated


def test_the_demo_models_defaults_are_the_demo_configs_learning_settings():
    """The dashboard's "New job with defaults" on the demo model trains like `python -m trainer
    demo`, only shorter: every learning setting equals DEMO_CONFIG's."""
    from trainer.cli import DEMO_CONFIG
    from trainer.config import TrainConfig
    from trainer.demo_model import TRAINING_DEFAULTS

    short_run = {"max_steps", "eval_every", "checkpoint_every"}
    for key, value in TRAINING_DEFAULTS.items():
        if key in short_run:
            continue
        expected = DEMO_CONFIG[key]
        if isinstance(value, dict):
            expected = {k: expected[k] for k in value}
        assert value == expected, key
    assert TRAINING_DEFAULTS["max_steps"] <= 300
    TrainConfig.model_validate({**TRAINING_DEFAULTS, "model": "m", "dataset": "d"})
