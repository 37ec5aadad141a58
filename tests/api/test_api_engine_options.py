"""`config.engine_options` is checked against the chosen engine at POST time: a bad option is a 422
naming `config.engine_options.<key>`, and no job is created or enqueued."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.models import Job

BAD = {
    "hf unknown key": ({"engine_options": {"max_batch_sise": 8}}, "max_batch_sise",
                       "it accepts: max_batch_size"),
    "hf bad type": ({"engine_options": {"max_batch_size": "lots"}}, "max_batch_size",
                    "valid integer"),
    "hf out of range": ({"engine_options": {"max_batch_size": 0}}, "max_batch_size",
                        "greater than or equal to 1"),
    "hf option under vllm": ({"engine": "vllm", "engine_options": {"max_batch_size": 8}},
                             "max_batch_size", "unknown option for engine 'vllm'"),
    "vllm bad choice": ({"engine": "vllm", "engine_options": {"lora_sync": "fused"}}, "lora_sync",
                        "'adapter' or 'merged'"),
    "vllm out of range": ({"engine": "vllm", "engine_options": {"gpu_memory_utilization": 1.5}},
                          "gpu_memory_utilization", "less than or equal to 1"),
}


def count_jobs(db) -> int:
    return db.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_engine_option_is_a_422_naming_it(create_job, alice, dataset, db, enqueued, case):
    config, key, needle = BAD[case]
    response = create_job(alice, dataset["id"], config={"batch_size": 2, **config})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == f"config.engine_options.{key}", error
    assert f"engine_options.{key}:" in error["message"] and needle in error["message"], error
    assert count_jobs(db) == 0 and enqueued == []


def test_good_engine_options_are_accepted_and_stored(create_job, alice, dataset, db, enqueued):
    for engine, options in (("hf", {"max_batch_size": 64}),
                            ("vllm", {"gpu_memory_utilization": 0.5, "lora_sync": "merged"})):
        response = create_job(alice, dataset["id"],
                              config={"batch_size": 2, "engine": engine, "engine_options": options})
        assert response.status_code == 201, response.text
        assert response.json()["config"]["engine_options"] == options
    assert count_jobs(db) == 2 and len(enqueued) == 2
