"""A worker paused past the stale limit (SIGSTOP: as a long GC pause, swapping or a network
partition look from outside) loses its job to another worker, and when it wakes up it must write
nothing more for it: the lease epoch fences every write (core/jobs/lifecycle.py).

Two real workers on one Redis queue. The one running the job is stopped between checkpoints; the
other takes the job over (stale heartbeat), resumes it and finishes it. Then the paused worker is
continued: it is mid-step with a live trainer, a heartbeat thread and a sink that all still think
they own the job. The job's rows must stay exactly as the new owner left them.
"""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import func, select

from core.models import AdvantageHistogram, Checkpoint, Job, JobEvent, Metric
from tests.reliability.conftest import make_lab, running

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

STEPS, EVERY = 24, 5


def _progress(lab, job_id):
    with lab.engine.connect() as conn:
        step = conn.scalar(select(Job.current_step).where(Job.id == job_id)) or 0
        ckpt = conn.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.job_id == job_id))
    return step, ckpt


def _snapshot(lab, job_id):
    """Every row the job owns, as plain tuples."""
    with lab.engine.connect() as conn:
        def rows(stmt):
            return [tuple(r) for r in conn.execute(stmt)]

        return {
            "job": rows(select(Job.status, Job.error, Job.current_step, Job.updated_at,
                               Job.finished_at, Job.lease_epoch).where(Job.id == job_id)),
            "metrics": rows(select(Metric.name, Metric.step, Metric.value)
                            .where(Metric.job_id == job_id).order_by(Metric.name, Metric.step)),
            "histograms": rows(select(AdvantageHistogram.step, AdvantageHistogram.counts)
                               .where(AdvantageHistogram.job_id == job_id)
                               .order_by(AdvantageHistogram.step)),
            "events": rows(select(JobEvent.id, JobEvent.kind, JobEvent.message)
                           .where(JobEvent.job_id == job_id).order_by(JobEvent.id)),
            "checkpoints": rows(select(Checkpoint.step, Checkpoint.path, Checkpoint.bytes)
                                .where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)),
        }


def test_a_paused_worker_writes_nothing_after_its_job_was_taken_over(
        tmp_path, tiny_model, postgres_schema_url, redis_url):
    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, redis_url)
    with running(lab):
        first, second = lab.start_worker("worker-a"), lab.start_worker("worker-b")
        job_id = lab.submit(max_steps=STEPS, checkpoint_every=EVERY)
        lab.wait(lambda: (lambda s, c: c is not None and s > c)(*_progress(lab, job_id)),
                 timeout=240, what="a step past the first checkpoint", interval=0.05)
        paused = next(p for p in (first, second)
                      if f"job {job_id} claimed" in lab.log_of(p).read_text(errors="replace"))
        owner = second if paused is first else first
        os.killpg(paused.pid, signal.SIGSTOP)
        try:
            step_at_pause, _ = _progress(lab, job_id)
            lab.wait(lambda: lab.db_status(job_id) in {"succeeded", "failed", "cancelled"},
                     timeout=240, what="the other worker to take the job over and finish it")
            left_by_owner = _snapshot(lab, job_id)
        finally:
            os.killpg(paused.pid, signal.SIGCONT)
        paused_log = lab.log_of(paused)
        lab.wait(lambda: "lease lost" in paused_log.read_text(errors="replace"), timeout=60,
                 what="the paused worker to learn it lost the lease")
        lab.wait(lambda: "'lease_lost'" in paused_log.read_text(errors="replace"), timeout=60,
                 what="the paused worker's task to end (it returns 'lease_lost')")
        assert paused.poll() is None and owner.poll() is None, "both workers must still be up"
        after = _snapshot(lab, job_id)

    assert after == left_by_owner, "the paused worker wrote after losing its lease"
    job = after["job"][0]
    assert (job[0], job[1], job[2], job[5]) == ("succeeded", None, STEPS, 2)
    assert lab.metric_steps(job_id) == list(range(1, STEPS + 1))
    kinds = [kind for _, kind, _ in after["events"]]
    assert kinds.count("resumed") == 1 and "failed" not in kinds, kinds
    statuses = [m for _, kind, m in after["events"] if kind == "status"]
    assert not any("failed" in m for m in statuses), statuses
    text = paused_log.read_text(errors="replace")
    assert "held epoch 1, the job is at epoch 2" in text, text[-3000:]
    print(f"\nFIGURES pause: paused at step {step_at_pause}, taken over and finished by the other "
          f"worker (epoch 2); after SIGCONT the paused worker logged the lost lease and wrote "
          f"0 rows; steps stored {STEPS}/{STEPS}, events {kinds}")
