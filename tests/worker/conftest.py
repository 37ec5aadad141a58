"""Worker fixtures: a migrated database (SQLite and PostgreSQL via `db_url`) and row factories."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, update

from core.db import make_engine, session_scope
from core.models import Dataset, Job, JobStatus, User, new_id
from trainer.sinks import Histogram as Hist  # noqa: F401 - re-exported for the tests
from worker.config import WorkerSettings


@pytest.fixture
def engine(settings) -> Engine:
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def worker_settings() -> WorkerSettings:
    # Short stale limit so takeover tests do not wait; retries bounded so a bug fails fast.
    return WorkerSettings(heartbeat_seconds=0.2, stale_after_seconds=2.0, sweep_seconds=1.0,
                          db_retry_seconds=20.0)


def tiny_model_dir(settings, name: str = "tiny"):
    """A directory the model catalogue lists (it only looks for config.json)."""
    path = settings.model_roots[0] / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture
def make_job(engine, settings):
    """Insert a user, a dataset file + row and a job; returns the job id."""

    def make(*, status: str = JobStatus.queued, config: dict | None = None,
             started: datetime | None = None, heartbeat: datetime | None = None,
             cancel_requested: bool = False, queue: str = "gpu") -> str:
        tiny_model_dir(settings)
        settings.datasets_dir.mkdir(parents=True, exist_ok=True)
        ds_id = new_id("ds")
        rel = f"datasets/{ds_id}.jsonl"
        (settings.storage_dir / rel).write_text(json.dumps({"prompt": "1+1=", "answer": "2"}) + "\n")
        with session_scope(engine) as session:
            user = User(name=new_id("u"))
            session.add(user)
            session.flush()
            session.add(Dataset(id=ds_id, owner_id=user.id, name="d", filename="d.jsonl", path=rel,
                                rows=1, bytes=10, sha256="0" * 64))
            job = Job(owner_id=user.id, dataset_id=ds_id, model="tiny", estimator="reinforce_pp",
                      config=config if config is not None else {"estimator": "reinforce_pp", "max_steps": 3},
                      status=status, queue=queue, cancel_requested=cancel_requested,
                      started_at=started)
            session.add(job)
            session.flush()
            job_id = job.id
        if heartbeat is not None:
            with engine.begin() as conn:
                conn.execute(update(Job).where(Job.id == job_id).values(updated_at=heartbeat))
        return job_id

    return make


LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
