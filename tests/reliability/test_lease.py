"""A claimed job must look alive from the moment it is claimed, or a second worker runs it too.

Found by test_worker_killed.py: with two workers, the one that claimed a job spent longer than
`stale_after_seconds` importing the trainer before its heartbeat started, the other worker's orphan
sweep took the job over as "resumed", and both ran it into the same run directory. The slow start
is reproduced here by a slow `build_train_config` (the step that imports torch).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from core.jobs import lifecycle
from core.models import Job, JobStatus
from tests.worker.conftest import engine, make_job, worker_settings  # noqa: F401 - fixtures
from worker import tasks
from worker.tasks import execute_job


def _started(db, job_id) -> bool:
    with db.connect() as conn:
        return conn.scalar(select(Job.started_at).where(Job.id == job_id)) is not None


def test_no_takeover_while_a_claimed_job_is_still_starting(engine, settings, make_job,  # noqa: F811
                                                           worker_settings, monkeypatch):  # noqa: F811
    job_id = make_job()
    slow_start = worker_settings.stale_after_seconds * 1.5
    real_build = tasks.build_train_config

    def slow_build(*args, **kwargs):
        time.sleep(slow_start)  # torch import on a loaded machine
        return real_build(*args, **kwargs)

    monkeypatch.setattr(tasks, "build_train_config", slow_build)
    stolen: list[object] = []

    def rival() -> None:  # another worker's deliveries while the first is still starting
        while not _started(engine, job_id):
            time.sleep(0.02)
        deadline = time.monotonic() + slow_start
        while time.monotonic() < deadline:
            with engine.begin() as conn:
                claim = lifecycle.claim(conn, job_id,
                                        stale_after_seconds=worker_settings.stale_after_seconds)
            if claim is not None:
                stolen.append(claim)
                return
            time.sleep(0.1)

    def trainer(config, sink, *, run_dir, should_stop, on_status, on_checkpoint, resume,
                before_checkpoint=None):
        on_status("running")
        sink.log_step(1, {"reward/mean": 0.5}, {})
        from types import SimpleNamespace

        return SimpleNamespace(steps=1, stopped=False, initial_eval_accuracy=None,
                               final_eval_accuracy=None, seconds=0.0)

    thread = threading.Thread(target=rival)
    thread.start()
    status = execute_job(job_id, engine=engine, settings=settings, worker_settings=worker_settings,
                         stop=threading.Event(), train_fn=trainer)
    thread.join()
    assert status == JobStatus.succeeded
    assert stolen == [], "a second worker took over a job whose worker was alive and starting"
