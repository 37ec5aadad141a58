"""Reconcile and the orphan sweep (real databases), routing and Celery settings (real Redis)."""

from __future__ import annotations

import json
import uuid

import pytest

from core.models import JobStatus
from core.settings import Settings
from tests.worker.conftest import LONG_AGO
from worker.celery_app import celery_config
from worker.config import WorkerSettings
from worker.reconcile import Sweeper, reconcile


class Recorder(list):
    """A stand-in broker: records `enqueue(job_id, queue)` calls."""

    def __call__(self, job_id: str, queue: str) -> None:
        self.append((job_id, queue))


def test_reconcile_enqueues_queued_and_orphaned_jobs_on_their_queues(engine, settings, make_job):
    waiting = make_job(queue="a100")
    orphan = make_job(status=JobStatus.running, started=LONG_AGO, heartbeat=LONG_AGO)
    make_job(status=JobStatus.running, started=LONG_AGO)  # alive
    make_job(status=JobStatus.failed, started=LONG_AGO, heartbeat=LONG_AGO)
    sent = Recorder()
    ids = reconcile(engine=engine, enqueue=sent, settings=settings, stale_after_seconds=60)
    assert sorted(sent) == sorted([(waiting, "a100"), (orphan, "gpu")])
    assert sorted(ids) == sorted([waiting, orphan])


def test_reconcile_with_zero_staleness_takes_every_active_job(engine, settings, make_job):
    """`basis up` on the embedded broker: the only worker is not running yet."""
    alive = make_job(status=JobStatus.running, started=LONG_AGO)
    sent = Recorder()
    reconcile(engine=engine, enqueue=sent, settings=settings, stale_after_seconds=0)
    assert [job for job, _ in sent] == [alive]


def test_sweep_skips_queued_jobs_and_does_not_repeat_itself(engine, settings, make_job):
    make_job()
    orphan = make_job(status=JobStatus.running, started=LONG_AGO, heartbeat=LONG_AGO)
    sent = Recorder()
    sweeper = Sweeper(WorkerSettings(heartbeat_seconds=1, stale_after_seconds=60),
                      engine=engine, enqueue=sent, settings=settings)
    sweeper.sweep()
    sweeper.sweep()  # still stale (no worker took it yet): not sent twice within a stale interval
    assert sent == [(orphan, "gpu")]


def test_celery_settings_for_crash_safety():
    settings = Settings(broker_url="redis://127.0.0.1:6379/15", worker_queue="h100")
    config = celery_config(settings, WorkerSettings())
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_default_queue"] == "h100" and config["result_backend"] is None
    assert config["broker_transport_options"]["visibility_timeout"] == 12 * 3600
    embedded = celery_config(Settings(data_dir="/tmp/x"), WorkerSettings())
    assert embedded["broker_url"] == "sqla+sqlite:////tmp/x/broker.sqlite"
    assert not embedded["worker_enable_remote_control"]


@pytest.mark.redis
def test_enqueue_routes_to_the_jobs_queue_on_redis(redis_url):
    import redis

    from core.queue import enqueue_job

    queue = f"test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    try:
        enqueue_job("job_abc", queue, settings=Settings(broker_url=redis_url))
        assert client.llen(queue) == 1
        message = json.loads(client.lpop(queue))
        assert message["headers"]["task"] == "basis.run_job"
        assert "job_abc" in message["headers"]["argsrepr"]
    finally:
        client.delete(queue)
        client.close()
