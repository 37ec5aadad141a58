"""TrainConfig: defaults, cross-field rules, and file loading errors that name the field."""

import json

import pytest

from trainer.config import ConfigError, TrainConfig

BASE = {"model": "m", "dataset": "d.jsonl"}


def make(**kw):
    return TrainConfig.from_dict({**BASE, **kw})


def test_defaults_are_valid():
    c = make()
    assert c.estimator == "basis" and c.rollouts_per_prompt == 1 and c.engine == "hf"
    assert c.sampling.temperature == 1.0 and c.loss_aggregation == "token_mean"


def test_every_field_has_a_description():
    from trainer.config import LoraConfig, LossConfig, OptimizerConfig, SamplingConfig

    for cls in (TrainConfig, SamplingConfig, LossConfig, OptimizerConfig, LoraConfig):
        missing = [n for n, f in cls.model_fields.items() if not f.description]
        assert not missing, f"{cls.__name__}: {missing}"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"estimator": "grpo"}, "rollouts_per_prompt: estimator 'grpo' needs >= 2"),
        ({"estimator": "nope"}, "estimator: unknown 'nope'"),
        ({"estimator_options": {"bogus": 1}}, "estimator_options"),
        ({"reward": "nope"}, "reward: unknown 'nope'"),
        ({"engine": "tgi"}, "engine: unknown 'tgi'"),
        ({"sampling": {"temperature": 0}}, "sampling.temperature"),
        ({"loss": {"kl_estimator": "k4"}}, "loss.kl_estimator"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"batch_szie": 4}, "batch_szie: unknown field"),
        ({"probe_every": 1, "probe_prompts": 99, "batch_size": 4}, "probe_prompts"),
        ({"eval_fraction": 0}, "eval_fraction"),
    ],
)
def test_bad_fields_are_named(fields, needle):
    with pytest.raises(ConfigError) as e:
        make(**fields)
    assert needle in str(e.value)


def test_group_estimator_accepted_with_k_rollouts():
    assert make(estimator="grpo", rollouts_per_prompt=8).rollouts_per_prompt == 8


def test_from_file_yaml_and_json(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: m\ndataset: d.jsonl\nbatch_size: 4\nsampling:\n  top_k: 5\n")
    assert TrainConfig.from_file(y).sampling.top_k == 5
    j = tmp_path / "c.json"
    j.write_text(json.dumps({**BASE, "seed": 3}))
    assert TrainConfig.from_file(j).seed == 3


def test_from_file_errors_name_file_and_field(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: m\ndataset: d.jsonl\noptimizer:\n  lr: lots\n")
    with pytest.raises(ConfigError, match=r"c.yaml: optimizer.lr"):
        TrainConfig.from_file(y)
    y.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid"):
        TrainConfig.from_file(y)
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    y.write_text("dataset: d.jsonl\n")
    with pytest.raises(ConfigError, match="model: Field required"):
        TrainConfig.from_file(y)


def test_check_paths(tmp_path):
    c = make(model=str(tmp_path), dataset=str(tmp_path / "d.jsonl"))
    with pytest.raises(ConfigError, match="model:"):
        c.check_paths()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="dataset:"):
        c.check_paths()
    (tmp_path / "d.jsonl").write_text("")
    c.check_paths()
