"""Multi-process jobs: config rules here; the 2-rank runs are marked `distributed`."""

import pytest

from trainer.config import ConfigError, TrainConfig

BASE = {"model": "m", "dataset": "d.jsonl"}


def make(**kw):
    return TrainConfig.from_dict({**BASE, **kw})


def test_num_processes_defaults_to_one_and_accepts_an_even_split():
    assert make().num_processes == 1
    assert make(num_processes=4, batch_size=16).num_processes == 4


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"num_processes": 3, "batch_size": 16}, "num_processes: batch_size 16 does not split"),
        ({"num_processes": 2, "engine": "vllm"}, "num_processes: engine 'vllm'"),
        ({"num_processes": 0}, "num_processes"),
        ({"num_processes": 65}, "num_processes"),
    ],
)
def test_bad_num_processes_is_named(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        make(**fields)
