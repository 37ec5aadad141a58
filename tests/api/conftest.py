"""API fixtures: a real app on a real database, keys made through the service, small factories."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from cli.main import main
from core.db import session_scope
from core.services.keys import create_key
from core.settings import get_settings

GOOD_ROWS = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
GOOD_JSONL = "".join(json.dumps(row) + "\n" for row in GOOD_ROWS).encode()


class Enqueued(list):
    """Records `enqueue(job_id, queue)` calls and, at call time, whether the job row was committed."""


@pytest.fixture
def enqueued() -> Enqueued:
    return Enqueued()


@pytest.fixture
def app(settings, enqueued):
    def enqueue(job_id: str, queue: str) -> None:
        from core.models import Job

        # A fresh session sees only committed rows: this proves "enqueue after commit".
        with application.state.sessionmaker() as fresh:
            enqueued.append((job_id, queue, fresh.get(Job, job_id) is not None))

    application = create_app(settings, enqueue=enqueue)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def db(app):
    with app.state.sessionmaker() as session:
        yield session


@pytest.fixture
def make_key(app):
    def make(name: str = "alice") -> dict[str, str]:
        with session_scope(app.state.engine) as session:
            _, secret = create_key(session, name)
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def alice(make_key) -> dict[str, str]:
    return make_key("alice")


@pytest.fixture
def bob(make_key) -> dict[str, str]:
    return make_key("bob")


@pytest.fixture
def upload(client):
    """`upload(headers, content=..., filename=..., content_type=..., name=...)` -> response."""

    def post(headers, content: bytes = GOOD_JSONL, *, filename: str = "train.jsonl",
             content_type: str = "application/jsonl", name: str | None = None):
        data = {"name": name} if name is not None else None
        return client.post("/v1/datasets", headers=headers, data=data,
                           files={"file": (filename, content, content_type)})

    return post


@pytest.fixture
def dataset(upload, alice) -> dict:
    response = upload(alice)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def create_job(client, model_dir):
    """`create_job(headers, dataset_id, **body)` -> response; model `tiny`, a small valid config."""

    def post(headers, dataset_id: str, **body):
        payload = {"dataset_id": dataset_id, "model": "tiny",
                   "config": {"estimator": "basis", "max_steps": 3, "batch_size": 2}, **body}
        return client.post("/v1/jobs", headers=headers, json=payload)

    return post


@pytest.fixture
def job(create_job, alice, dataset) -> dict:
    response = create_job(alice, dataset["id"])
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def basis(client, alice, monkeypatch, capsys):
    """`basis(*argv)` -> (exit status, stdout, stderr), authenticated as alice."""
    monkeypatch.setenv("BASIS_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    get_settings.cache_clear()

    def run(*argv: str):
        status = main(list(argv), http=client)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    yield run
    get_settings.cache_clear()
