"""Security fixtures: the real app on a real database (SQLite and PostgreSQL through `settings`),
two users with keys, and a `World` where each user owns one of everything a route can name.

Everything is made through the services and the API except what only a worker writes (metrics,
histograms, checkpoint rows and directories), which is inserted as the worker would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from core.db import session_scope
from core.jobs.evals import create_eval
from core.models import (
    AdvantageHistogram,
    Checkpoint,
    Metric,
    ModelRecord,
    RolloutSample,
    User,
    new_id,
)
from core.services.keys import create_key

PUBLIC = {("GET", "/v1/health"), ("GET", "/v1/health/ready")}
# Routes for administrators only (api.deps.AdminUser): a user's valid key gets 403 (test_admin.py).
# They act on shared things (hub pulls), so they are not part of the per-owner isolation check.
ADMIN_ONLY = {("POST", "/v1/models"), ("GET", "/v1/model-pulls"), ("GET", "/v1/model-pulls/{pull_id}")}
GOOD_JSONL = "".join(json.dumps({"prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                     for i in range(4)).encode()


def private_jsonl(owner: str) -> bytes:
    """A dataset whose every row carries `secret-of-<owner>`, to spot it in anyone's response."""
    return "".join(json.dumps({"prompt": f"secret-of-{owner}: {i} + {i}?", "answer": str(2 * i)})
                   + "\n" for i in range(4)).encode()
JOB_CONFIG = {"estimator": "basis", "max_steps": 3, "batch_size": 2}


def v1_operations(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, path template) of every /v1 operation in the OpenAPI schema."""
    return sorted((method.upper(), path) for path, ops in app.openapi()["paths"].items()
                  for method in ops if path.startswith("/v1"))


def path_params(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


@dataclass
class Owner:
    """One user: key headers and the ids of everything they own."""

    name: str
    secret: str
    ids: dict[str, str] = field(default_factory=dict)  # path parameter name -> id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@dataclass
class World:
    app: FastAPI
    client: TestClient
    enqueued: list[str]
    alice: Owner
    bob: Owner

    def fill(self, path: str, ids: dict[str, str]) -> str:
        missing = [p for p in path_params(path) if p not in ids]
        assert not missing, (f"{path}: no fixture resource for path parameter(s) {missing}; "
                             "add one to tests/security/conftest.py so the new route is covered")
        return re.sub(r"{(\w+)}", lambda m: ids[m.group(1)], path)


@pytest.fixture
def app(settings, model_dir) -> Iterator[FastAPI]:
    enqueued: list[str] = []
    application = create_app(settings, enqueue=lambda job_id, queue: enqueued.append(job_id))
    application.state.enqueued = enqueued
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _owner_with_everything(app: FastAPI, client: TestClient, settings, name: str) -> Owner:
    with session_scope(app.state.engine) as session:
        key, secret = create_key(session, name)
        user_id = key.user_id
    owner = Owner(name, secret)
    upload = client.post("/v1/datasets", headers=owner.headers,
                         files={"file": (f"{name}.jsonl", private_jsonl(name), "application/jsonl")})
    assert upload.status_code == 201, upload.text
    job = client.post("/v1/jobs", headers=owner.headers, json={
        "dataset_id": upload.json()["id"], "model": "tiny", "config": JOB_CONFIG})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    ckpt_dir = settings.job_run_dir(job_id) / "checkpoints" / "step-000001"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "weights.bin").write_bytes(f"secret-of-{name}".encode() * 10)
    checkpoint_id = new_id("ckpt")
    with session_scope(app.state.engine) as session:
        session.add(Metric(job_id=job_id, name="reward/mean", step=1, value=0.5))
        session.add(AdvantageHistogram(job_id=job_id, step=1, edges=[-1.0, 1.0], counts=[2]))
        session.add(Checkpoint(id=checkpoint_id, job_id=job_id, step=1,
                               path=str(ckpt_dir.relative_to(settings.storage_dir)), bytes=100))
        # An evaluation, made through the service (not enqueued: the tests count enqueued jobs),
        # with what its worker would have written.
        evaluation = create_eval(session, settings, session.get(User, user_id), model="tiny",
                                 dataset_id=upload.json()["id"], options={"reward": "exact"})
        session.add(Metric(job_id=evaluation.id, name="eval/rows", step=1, value=1.0))
        session.add(RolloutSample(job_id=evaluation.id, step=1, index=0, prompt_id="p",
                                  prompt=f"secret-of-{name}", completion=f"secret-of-{name}",
                                  answer="2", reward=1.0, advantage=0.0, baseline=None,
                                  finish_reason="stop"))
        eval_id = evaluation.id
    # An exported model of theirs (what POST .../export writes): `{name}` routes, and the listing.
    model_name = f"ft/secret-of-{name}-model"
    model_dir = settings.model_roots[0] / model_name
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text('{"model_type": "qwen2"}')
    with session_scope(app.state.engine) as session:
        session.add(ModelRecord(name=model_name, owner_id=user_id, source="export",
                                source_ref=f"{job_id}/{checkpoint_id}", format="full",
                                path=model_name, bytes=24, base_model="tiny", job_id=job_id))
    owner.ids = {"dataset_id": upload.json()["id"], "job_id": job_id, "checkpoint_id": checkpoint_id,
                 "name": model_name, "eval_id": eval_id,
                 "pull_id": new_id("pull")}  # pulls are the admins', never an owner's: any id
    return owner


@pytest.fixture
def world(app, client, settings) -> World:
    alice = _owner_with_everything(app, client, settings, "alice")
    bob = _owner_with_everything(app, client, settings, "bob")
    return World(app, client, app.state.enqueued, alice, bob)


def request_for(method: str, path: str, owner_ids: dict[str, str]) -> dict[str, Any]:
    """A well-formed request for an operation (a JSON body for POST /v1/jobs, a file for uploads),
    so a response is about who asks, never about a malformed request."""
    if (method, path) == ("POST", "/v1/jobs"):
        return {"json": {"dataset_id": owner_ids["dataset_id"], "model": "tiny", "config": JOB_CONFIG}}
    if (method, path) == ("POST", "/v1/evals"):
        return {"json": {"model": "tiny", "dataset_id": owner_ids["dataset_id"], "reward": "exact"}}
    if (method, path) == ("POST", "/v1/datasets"):
        return {"files": {"file": ("x.jsonl", GOOD_JSONL, "application/jsonl")}}
    if (method, path) == ("POST", "/v1/models"):
        return {"json": {"repo_id": "org/tiny"}}
    if (method, path) == ("POST", "/v1/datasets/import"):
        return {"files": {"file": ("x.jsonl", GOOD_JSONL, "application/octet-stream")},
                "data": {"prompt_field": "prompt", "answer_field": "answer"}}
    return {}
