"""A job of 2 processes run by the worker under torchrun (worker/distributed.py, worker/rank.py),
with hand-written ranks (tests/worker/fake_rank.py): rank 0 alone writes, a failed or killed rank
fails the job with its error, a warm shutdown and a cancel reach the ranks.

On SQLite only: each test starts torchrun and two Python processes (~30 s on a loaded CI core),
and what differs from a one-process job is the process layout, not the SQL (the sink, the lease
and its fencing run on both databases in test_sink.py and test_fencing.py)."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.db import dispose_engines
from core.models import Job, JobEvent, JobStatus, Metric
from worker import distributed
from worker.tasks import JobInterrupted, execute_job

pytestmark = pytest.mark.distributed


@pytest.fixture
def db_url(tmp_path, _sqlite_template):
    path = tmp_path / "basis.sqlite"
    shutil.copyfile(_sqlite_template, path)
    yield f"sqlite:///{path}"
    dispose_engines()

CONFIG = {"estimator": "reinforce_pp", "n0": 0, "max_steps": 3, "batch_size": 2, "eval_every": 0,
          "reward": "exact", "num_processes": 2}


@pytest.fixture
def run(engine, settings, worker_settings, make_job, monkeypatch):
    """`run(stop=None, **env)` -> (job id, status or the exception raised): one 2-process job."""
    monkeypatch.setattr(distributed, "RANK_MODULE", "tests.worker.fake_rank")
    monkeypatch.setattr(distributed, "POLL_SECONDS", 0.1)

    def go(*, stop: threading.Event | None = None, during=None, **env: str):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        job_id = make_job(config=CONFIG)
        if during is not None:
            threading.Thread(target=during, args=(job_id,), daemon=True).start()
        try:
            return job_id, execute_job(job_id, engine=engine, settings=settings,
                                       worker_settings=worker_settings, stop=stop or threading.Event())
        except JobInterrupted as exc:
            return job_id, exc

    return go


def _job(engine, job_id: str) -> Job:
    with Session(engine) as session:
        return session.get(Job, job_id)


def _events(engine, job_id: str) -> list[JobEvent]:
    with Session(engine) as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def _when_a_step_is_logged(engine, act):
    def watch(job_id: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Session(engine) as session:
                if session.scalar(select(func.count()).select_from(Metric).where(Metric.job_id == job_id)):
                    act(job_id)
                    return
            time.sleep(0.05)

    return watch


def test_rank_zero_alone_writes_and_the_job_succeeds(run, engine):
    job_id, status = run()
    assert status == JobStatus.succeeded
    with Session(engine) as session:
        ranks = session.scalars(select(Metric.value).where(Metric.job_id == job_id, Metric.name == "rank")).all()
        steps = session.scalars(select(Metric.step).where(Metric.job_id == job_id,
                                                          Metric.name == "reward/mean")).all()
    assert ranks == [0.0, 0.0, 0.0] and sorted(steps) == [1, 2, 3]
    hello = [e for e in _events(engine, job_id) if e.kind == "rank"]
    assert [(e.message, e.data) for e in hello] == [("hello from rank 0", {"world": 2})]
    assert _job(engine, job_id).current_step == 3


def test_a_failed_rank_fails_the_job_with_its_error(run, engine):
    job_id, status = run(FAKE_FAIL_RANK="1")
    assert status == JobStatus.failed
    job = _job(engine, job_id)
    assert job.error == "RankFailed: rank 1: RuntimeError: rank 1 broke at step 2", job.error
    failed = _events(engine, job_id)[-1]
    assert failed.data["status"] == "failed" and "fake_rank.py" in failed.data["traceback"]


def test_a_rank_killed_without_a_word_fails_the_job(run, engine):
    job_id, status = run(FAKE_KILL_RANK="1", FAKE_STEP_SECONDS="0.5")
    assert status == JobStatus.failed
    assert "without reporting an error" in _job(engine, job_id).error


def test_cancel_reaches_the_ranks(run, engine):
    def cancel(job_id: str) -> None:
        with engine.begin() as conn:
            conn.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))

    job_id, status = run(FAKE_STEPS="200", FAKE_STEP_SECONDS="0.05",
                         during=_when_a_step_is_logged(engine, cancel))
    assert status == JobStatus.cancelled
    assert 1 <= _job(engine, job_id).current_step < 200


def test_a_warm_shutdown_stops_the_ranks_and_leaves_the_job_resumable(run, engine):
    stop = threading.Event()
    job_id, outcome = run(stop=stop, FAKE_STEPS="200", FAKE_STEP_SECONDS="0.05",
                          during=_when_a_step_is_logged(engine, lambda _job_id: stop.set()))
    assert isinstance(outcome, JobInterrupted)
    job = _job(engine, job_id)
    assert job.status == JobStatus.running and 1 <= job.current_step < 200
    assert _events(engine, job_id)[-1].kind == "interrupted"
