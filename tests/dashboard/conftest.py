"""Dashboard fixtures: one real API (uvicorn, SQLite) seeded with a 2,000-step job, shared by the
dashboard tests (AppTest helpers live in dashboard_apptest.py: a conftest cannot be imported
reliably, several share the module name)."""

from __future__ import annotations

import os
from io import BytesIO

import pytest

from core.db import session_scope
from core.models import User
from core.services import datasets as dataset_service
from core.services.keys import create_key
from tests.dashboard.dashboard_apptest import STEPS
from tests.dashboard.dashboard_stack import ApiServer, Seeded, seeded_stack


class Stack:
    """The running API and what was seeded into it."""

    def __init__(self, url: str, seeded: Seeded, keys: dict[str, str], settings, app):
        self.url, self.seeded, self.keys, self.settings, self.app = url, seeded, keys, settings, app


@pytest.fixture(scope="session")
def stack(tmp_path_factory, _sqlite_template):
    settings, app, seeded = seeded_stack(tmp_path_factory.mktemp("dashboard"), steps=STEPS,
                                         template=_sqlite_template)
    keys = {"alice": seeded.key}
    with session_scope(app.state.engine) as session:
        _, keys["bob"] = create_key(session, "bob")  # a user with no jobs and no datasets
        carol, keys["carol"] = create_key(session, "carol")  # submits jobs from the New job page
        owner_id = carol.user_id
    with session_scope(app.state.engine) as session:
        dataset_service.create_dataset(
            session, settings, session.get(User, owner_id),
            source=BytesIO(b'{"prompt": "1+1?", "answer": "2"}\n' * 20), filename="small.jsonl",
            content_type="application/jsonl", name="small")
    with ApiServer(app) as server:
        yield Stack(server.url, seeded, keys, settings, app)
    app.state.engine.dispose()


@pytest.fixture(scope="session")
def running(stack):
    """A BASIS job of user "dave", 50 of 100 steps done and still running: (key, job id)."""
    from core.models import JobStatus
    from tests.dashboard.dashboard_stack import add_job

    with session_scope(stack.app.state.engine) as session:
        key, secret = create_key(session, "dave")
        owner_id = key.user_id
    job_id, _ = add_job(stack.app.state.engine, stack.settings, owner_id, stack.seeded.dataset_id,
                        stack.seeded.model, estimator="basis", steps=50, max_steps=100,
                        status=JobStatus.running, checkpoint=False)
    return secret, job_id


@pytest.fixture(autouse=True)
def _restore_api_url(monkeypatch):
    """`app_test` sets BASIS_API_URL (the dashboard's URL is the server's setting); undo it after
    each test so no other test inherits it."""
    monkeypatch.setenv("BASIS_API_URL", os.environ.get("BASIS_API_URL", ""))
    if not os.environ["BASIS_API_URL"]:
        monkeypatch.delenv("BASIS_API_URL")
