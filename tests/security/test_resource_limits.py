"""Issue 18 items 7 and 9: every hostile number gets a 4xx naming the field, never a 500, and
resource fields are capped by the deployment's limits at creation. A refused job leaves no row.

Runs on SQLite and PostgreSQL (the `settings` fixture), where an integer past int32/int64 used to
overflow a column.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from core.models import Job
from tests.security.conftest import JOB_CONFIG

HUGE = {  # config patch -> the param the 4xx must name
    "max_steps=2**63": ({"max_steps": 2**63}, "config.max_steps"),
    "max_steps=10**30": ({"max_steps": 10**30}, "config.max_steps"),
    "max_steps=1e12": ({"max_steps": 10**12}, "config.max_steps"),
    "server cap on steps": ({"max_steps": 200_000}, "config.max_steps"),
    "max_new_tokens vs positions": ({"sampling": {"max_new_tokens": 600}}, "config.sampling.max_new_tokens"),
    "n0 1024": ({"n0": 1024}, "config.n0"),
    "micro_batch 1e9": ({"optimizer": {"micro_batch_size": 10**9}}, "config.optimizer.micro_batch_size"),
    "top_k 1e18": ({"sampling": {"top_k": 10**18}}, "config.sampling.top_k"),
    "eval_size 1e18": ({"eval_size": 10**18}, "config.eval_size"),
    "reward_timeout 1e300": ({"reward_timeout": 1e300}, "config.reward_timeout"),
    "lora r 1e9": ({"lora": {"r": 10**9}}, "config.lora.r"),
    "reward_workers vs cores": ({"reward_workers": 64}, "config.reward_workers"),
    "cpu_threads vs cores": ({"cpu_threads": 256}, "config.cpu_threads"),
    "batch above rows": ({"batch_size": 5}, "config.batch_size"),
    "seed 2**64": ({"seed": 2**64}, "config.seed"),
    "device cuda on cpu workers": ({"device": "cuda"}, "config.device"),
    "temperature 1e-300": ({"sampling": {"temperature": 1e-300}}, "config.sampling.temperature"),
    "betas 1e308": ({"optimizer": {"betas": [1e308, 0.9]}}, "config.optimizer.betas.0"),
    "nested big int": ({"estimator_options": {"x": 10**40}}, "config.estimator_options.x"),
    "regex nested 50,000 deep": ({"reward": "regex", "reward_options": {
        "pattern": "(" * 50_000 + "a" + ")" * 50_000}}, "config.reward_options"),
    "catastrophic regex": ({"reward": "regex", "reward_workers": 0, "reward_options": {
        "pattern": r"(.|.)*\Z\A", "dotall": True}}, "config.reward_options"),
}


def _jobs(world) -> int:
    with world.app.state.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(Job))


@pytest.fixture
def positions(model_dir):
    """The fixture model states 512 positions, like the issue's tiny model."""
    (model_dir / "config.json").write_text('{"model_type": "qwen2", "max_position_embeddings": 512}')


def test_hostile_numbers_get_a_4xx_naming_the_field(world, positions):
    before = _jobs(world)
    wrong = {}
    for case, (patch, param) in HUGE.items():  # one world for all: each case changes nothing
        response = world.client.post("/v1/jobs", headers=world.alice.headers, json={
            "dataset_id": world.alice.ids["dataset_id"], "model": "tiny",
            "config": {**JOB_CONFIG, **patch}})
        error = response.json().get("error") or {}
        if response.status_code != 422 or error.get("param") != param:
            wrong[case] = (response.status_code, error.get("param"), response.text[:200])
    assert not wrong, wrong
    assert _jobs(world) == before and not world.enqueued[2:]


def test_queue_names_are_the_administrators(world):
    response = world.client.post("/v1/jobs", headers=world.alice.headers, json={
        "dataset_id": world.alice.ids["dataset_id"], "model": "tiny", "config": JOB_CONFIG,
        "queue": "someone-elses-gpus"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "queue"


def test_a_5000_digit_integer_in_a_request_body_is_a_4xx(world):
    dataset = world.alice.ids["dataset_id"]
    body = f'{{"dataset_id": "{dataset}", "model": "tiny", "config": {{"max_steps": {"9" * 5000}}}}}'
    response = world.client.post("/v1/jobs", headers={**world.alice.headers,
                                                      "Content-Type": "application/json"},
                                 content=body)
    assert 400 <= response.status_code < 500, response.text[:300]


@pytest.mark.parametrize("line,needle", [
    ('{"prompt": "a", "answer": "1", "n": %s}' % ("9" * 5000), "5000 digits"),
    ('{"prompt": "\\ud800", "answer": "1"}', "lone surrogate"),
    ('{"prompt": "ok", "answer": "\\udfff"}', "lone surrogate"),
])
def test_datasets_with_big_integers_or_lone_surrogates_are_refused_naming_the_line(world, line,
                                                                                    needle):
    good = json.dumps({"prompt": "1+1", "answer": "2"})
    body = f"{good}\n{good.replace('1+1', '2+2')}\n{line}\n".encode()
    response = world.client.post("/v1/datasets", headers=world.alice.headers,
                                 files={"file": ("bad.jsonl", body, "application/jsonl")})
    assert response.status_code == 422, response.text[:300]
    message = response.json()["error"]["message"]
    assert "line 3" in message and needle in message, message
