"""Fault 2: PostgreSQL goes away mid-job (a restart, a failover, a container update) and comes back.

The database is a throwaway cluster owned by this test (tests/reliability/conftest.py), stopped
with `pg_ctl -m fast` (every connection cut, open transactions rolled back) and kept down for a few
seconds, long enough for several retries. The worker's sink must block the trainer and retry with
backoff, then write every step: the job does not fail and no step is lost.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from core.models import Job
from tests.reliability.conftest import make_lab, running

pytestmark = [pytest.mark.slow, pytest.mark.redis]

STEPS = 40  # long enough that the outage always lands mid-job, even on a fast machine
DOWN_SECONDS = 4.0


def _current_step(lab, job_id) -> int:
    with lab.engine.connect() as conn:
        return conn.scalar(select(Job.current_step).where(Job.id == job_id)) or 0


def test_postgres_restart_mid_job_loses_no_step(tmp_path, tiny_model, owned_postgres, redis_url):
    database_url = owned_postgres.new_database()
    # A long stale limit: this test is about the sink riding out the outage, not a takeover.
    lab = make_lab(tmp_path, tiny_model, database_url, redis_url, worker_stale_after_seconds="60")
    with running(lab):
        worker = lab.start_worker()
        job_id = lab.submit(max_steps=STEPS, checkpoint_every=4)
        lab.wait(lambda: _current_step(lab, job_id) >= 2, timeout=240, what="step 2",
                 interval=0.05)
        step_at_stop = _current_step(lab, job_id)
        owned_postgres.stop()
        stopped_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        owned_postgres.start()
        downtime = time.monotonic() - stopped_at
        lab.engine.dispose()  # the test's own pooled connections died with the server

        lab.wait(lambda: lab.db_status(job_id) in {"succeeded", "failed", "cancelled"},
                 timeout=240, what="the job to finish after the restart")
        assert worker.poll() is None
        log = lab.log_of(worker).read_text(errors="replace")

    events = lab.events(job_id)
    assert lab.db_status(job_id) == "succeeded", [(e.kind, e.message) for e in events]
    assert lab.metric_steps(job_id) == list(range(1, STEPS + 1))
    retries = log.count("retrying in")
    assert step_at_stop < STEPS - 5, "the job was nearly done before the outage; raise STEPS"
    assert retries >= 2, "the outage should have been ridden out by retries:\n" + log[-3000:]
    assert not [e for e in events if e.level == "error"]
    print(f"\nFIGURES postgres: down {downtime:.1f}s after step {step_at_stop}, {retries} retried writes logged, "
          f"steps stored {STEPS}/{STEPS}, status succeeded")
