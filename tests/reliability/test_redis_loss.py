"""Fault 3: the broker loses its queue (Redis FLUSHALL, or a crash of a Redis without persistence)
while jobs wait in it. The database is the source of truth: reconciling re-enqueues every job whose
row says `queued`, so nothing a user submitted is silently dropped.

Both tests run against a redis-server owned by the test (a flush of the shared one would eat other
runs' messages).
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import make_lab, running
from worker.reconcile import reconcile


def _queued_job_ids(redis_server, queue: str) -> list[str]:
    """Job ids of the `run_job` messages waiting in `queue` (kombu keeps them as a Redis list)."""
    ids = []
    for raw in redis_server.client().lrange(queue, 0, -1):
        headers = json.loads(raw)["headers"]
        assert headers["task"] == "basis.run_job"
        ids.extend(json.loads(headers["argsrepr"].replace("'", '"')))
    return sorted(ids)


@pytest.mark.postgres
def test_reconcile_refills_a_flushed_queue_from_the_database(tmp_path, tiny_model, owned_redis,
                                                             postgres_schema_url):
    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, owned_redis.url)
    queue = lab.settings.worker_queue
    with running(lab):
        dataset = lab.upload()
        jobs = sorted(lab.submit(dataset_id=dataset) for _ in range(3))
        assert _queued_job_ids(owned_redis, queue) == jobs

        owned_redis.client().flushall()
        assert _queued_job_ids(owned_redis, queue) == []

        sent = reconcile(settings=lab.settings, engine=lab.engine)
        assert sorted(sent) == jobs
        assert _queued_job_ids(owned_redis, queue) == jobs
        # A job that is no longer queued (cancelled while the broker was away) is not sent again.
        assert lab.client.post(f"/v1/jobs/{jobs[0]}/cancel", headers=lab.headers).status_code == 200
        owned_redis.restart()
        assert sorted(reconcile(settings=lab.settings, engine=lab.engine)) == jobs[1:]


@pytest.mark.slow
@pytest.mark.postgres
def test_jobs_queued_before_a_flush_and_a_restart_all_finish(tmp_path, tiny_model, owned_redis,
                                                             postgres_schema_url):
    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, owned_redis.url)
    queue = lab.settings.worker_queue
    with running(lab):
        dataset = lab.upload()
        flushed = [lab.submit(dataset_id=dataset, max_steps=2) for _ in range(2)]
        owned_redis.client().flushall()
        lost_in_restart = lab.submit(dataset_id=dataset, max_steps=2)
        owned_redis.restart()  # SIGKILL and a fresh, empty server on the same port
        assert _queued_job_ids(owned_redis, queue) == []

        worker = lab.start_worker()  # its startup reconcile is the only thing that can find them
        jobs = [*flushed, lost_in_restart]
        lab.wait(lambda: all(lab.db_status(j) in {"succeeded", "failed", "cancelled"} for j in jobs),
                 timeout=300, what="every job queued before the broker lost them")
        assert worker.poll() is None
    statuses = {j: lab.db_status(j) for j in jobs}
    assert set(statuses.values()) == {"succeeded"}, statuses
    for job_id in jobs:
        assert lab.metric_steps(job_id) == [1, 2]
    print(f"\nFIGURES redis: {len(jobs)} queued jobs lost by the broker (2 flush, 1 restart), "
          f"{len(jobs)} finished after the worker's startup reconcile")
