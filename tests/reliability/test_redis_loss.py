"""Fault 3: the broker loses its queue (Redis FLUSHALL, or a crash of a Redis without persistence)
while jobs wait in it. The database is the source of truth: reconciling re-enqueues every job whose
row says `queued`, so nothing a user submitted is silently dropped.

Both tests run against a redis-server owned by the test (a flush of the shared one would eat other
runs' messages).
"""

from __future__ import annotations

import json
import time

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


REQUEUE_AFTER = 3.0  # BASIS_WORKER_REQUEUE_QUEUED_AFTER_SECONDS for the live test (default 600)


def _log_lines(path, needle: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if needle in line]


@pytest.mark.slow
@pytest.mark.postgres
def test_a_running_worker_refills_the_queue_after_a_flush_and_a_restart(tmp_path, tiny_model,
                                                                        owned_redis,
                                                                        postgres_schema_url):
    """The broker loses queued jobs while a worker keeps running (busy with a job, so it holds
    nothing else): nobody restarts the worker, and the jobs still run.

    A flush drops no connection: the periodic sweep re-sends a job `queued` for
    `requeue_queued_after_seconds`. A restart (empty) drops the connection: the worker's consumer
    reconnects when its job ends, and the reconnect hook re-sends every queued job."""
    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, owned_redis.url,
                   worker_requeue_queued_after_seconds=str(REQUEUE_AFTER))
    queue = lab.settings.worker_queue
    with running(lab):
        dataset = lab.upload()
        worker = lab.start_worker()
        log = lab.log_of(worker)
        # Long enough to outlast both faults (about 0.1 s a step here); cancelled once they are done.
        busy = lab.submit(dataset_id=dataset, max_steps=3000, checkpoint_every=500)
        lab.wait(lambda: lab.db_status(busy) == "running", timeout=120, what="the busy job to run")

        flushed = lab.submit(dataset_id=dataset, max_steps=2)
        queued_at = time.monotonic()
        # (The busy job may be there too: a copy the sweep sent while the worker was starting.)
        assert flushed in _queued_job_ids(owned_redis, queue)
        owned_redis.client().flushall()
        assert _queued_job_ids(owned_redis, queue) == []
        lab.wait(lambda: flushed in _queued_job_ids(owned_redis, queue), timeout=30,
                 what="the sweep to re-send the flushed job", interval=0.05)
        resent_after = time.monotonic() - queued_at
        assert lab.db_status(busy) == "running", "the busy job ended: the test proves nothing"

        restarted = lab.submit(dataset_id=dataset, max_steps=2)
        owned_redis.restart()  # SIGKILL and a fresh, empty server on the same port
        assert _queued_job_ids(owned_redis, queue) == []
        assert lab.db_status(busy) == "running", "the busy job ended: the test proves nothing"
        # Only now may the worker's consumer see the lost connection (it does when its job ends).
        response = lab.client.post(f"/v1/jobs/{busy}/cancel", headers=lab.headers)
        assert response.status_code == 200, response.text

        jobs = [busy, flushed, restarted]
        lab.wait(lambda: all(lab.db_status(j) in {"succeeded", "failed", "cancelled"} for j in jobs),
                 timeout=300, what="every job the broker lost")
        assert worker.poll() is None
    statuses = {j: lab.db_status(j) for j in jobs}
    assert statuses == {busy: "cancelled", flushed: "succeeded", restarted: "succeeded"}, statuses
    busy_steps = lab.metric_steps(busy)
    assert busy_steps == list(range(1, len(busy_steps) + 1))
    assert lab.metric_steps(flushed) == [1, 2] and lab.metric_steps(restarted) == [1, 2]
    # Re-sent by the sweep once the job had waited REQUEUE_AFTER, not before (sweep every 1 s).
    assert REQUEUE_AFTER <= resent_after <= REQUEUE_AFTER + 3, resent_after
    # After the restart the consumer reconnected and its hook re-sent both lost jobs (the start-up
    # pass found nothing queued, so it logged nothing).
    assert _log_lines(log, "reconnected to the broker")
    full = _log_lines(log, "sweep (full): re-sent")
    assert full and flushed in full[-1] and restarted in full[-1], full
    print(f"\nFIGURES redis live: flushed job re-sent by the sweep {resent_after:.1f} s after it "
          f"was queued (requeue after {REQUEUE_AFTER:g} s); after the restart both lost jobs "
          f"re-sent on reconnect; 2/2 lost jobs succeeded (steps 1..2 each), "
          f"the busy job cancelled after {len(busy_steps)} contiguous steps, worker never restarted")
