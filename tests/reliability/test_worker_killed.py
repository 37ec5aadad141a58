"""Fault 1: a worker is SIGKILLed in the middle of a job (OOM killer, power cut, `kill -9`).

Two real workers consume the same Redis queue, as on a lab with several GPU machines. The one
running the job is killed between two checkpoints; nobody restarts anything. The survivor must
notice (the job's heartbeat goes stale: its orphan sweep, or Redis redelivering the unacknowledged
message) and resume the job from its newest checkpoint. Steps done after that checkpoint are
replayed and must overwrite, not duplicate, what the dead worker wrote.
"""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import func, select

from core.models import AdvantageHistogram, Checkpoint, Job, Metric
from tests.reliability.conftest import make_lab, running

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# Many short windows between checkpoints, so the kill lands in one even on a fast machine.
STEPS, EVERY = 24, 5
LONG = 40  # long enough that a SIGTERM lands before the job ends on its own


def _progress(lab, job_id):
    """(current_step, newest checkpoint step) from the database."""
    with lab.engine.connect() as conn:
        step = conn.scalar(select(Job.current_step).where(Job.id == job_id)) or 0
        ckpt = conn.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.job_id == job_id))
    return step, ckpt


def _values(lab, job_id, name="reward/mean") -> dict[int, float]:
    with lab.engine.connect() as conn:
        rows = conn.execute(select(Metric.step, Metric.value).where(
            Metric.job_id == job_id, Metric.name == name))
        return {row.step: row.value for row in rows}


def test_sigkilled_worker_job_resumes_from_checkpoint_on_the_survivor(
        tmp_path, tiny_model, postgres_schema_url, redis_url):
    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, redis_url)
    with running(lab):
        first, second = lab.start_worker("worker-a"), lab.start_worker("worker-b")
        job_id = lab.submit(max_steps=STEPS, checkpoint_every=EVERY)

        # Kill between checkpoints, so at least one step after the newest checkpoint is lost
        # with the process and has to be replayed.
        lab.wait(lambda: (lambda s, c: c is not None and s > c)(*_progress(lab, job_id)),
                 timeout=240, what="a step past the first checkpoint", interval=0.05)
        victim = next(p for p in (first, second)
                      if f"job {job_id} claimed" in lab.log_of(p).read_text(errors="replace"))
        survivor = second if victim is first else first
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        step_at_kill, ckpt_at_kill = _progress(lab, job_id)
        before = _values(lab, job_id)
        assert lab.db_status(job_id) == "running"

        lab.wait(lambda: lab.db_status(job_id) in {"succeeded", "failed", "cancelled"},
                 timeout=240, what="the survivor to finish the job")
        assert survivor.poll() is None, "the surviving worker must still be up"

    assert lab.db_status(job_id) == "succeeded", [(e.kind, e.message) for e in lab.events(job_id)]
    # Every step exactly once: contiguous, no gap, no duplicate, for metrics and histograms.
    assert lab.metric_steps(job_id) == list(range(1, STEPS + 1))
    with lab.engine.connect() as conn:
        hist_steps = list(conn.scalars(select(AdvantageHistogram.step).where(
            AdvantageHistogram.job_id == job_id).order_by(AdvantageHistogram.step)))
    assert hist_steps == list(range(1, STEPS + 1))
    # Resumed from the newest checkpoint; the replayed steps reproduce what the dead worker had
    # written (the checkpoint carries RNG, data cursor and optimizer state).
    after = _values(lab, job_id)
    replayed = [s for s in range(ckpt_at_kill + 1, step_at_kill + 1)]
    assert replayed, (step_at_kill, ckpt_at_kill)
    assert {s: after[s] for s in before} == before

    events = lab.events(job_id)
    kinds = [e.kind for e in events]
    resumed = [e for e in events if e.kind == "resumed"]
    assert len(resumed) == 1, kinds  # one takeover; duplicate deliveries lost the lease race
    assert resumed[0].data["checkpoint_step"] == ckpt_at_kill, [(e.kind, e.message, e.data) for e in events]
    trainer_resume = [e for e in events if e.kind == "resume"]
    assert [e.data["step"] for e in trainer_resume] == [ckpt_at_kill]
    statuses = [e.data["status"] for e in events if e.kind == "status"]
    assert statuses == ["queued", "starting", "estimating_priors", "running", "succeeded"], statuses
    survivor_log = lab.log_of(survivor).read_text(errors="replace")
    assert f"job {job_id} claimed (resume)" in survivor_log
    print(f"\nFIGURES sigkill: killed at step {step_at_kill}, checkpoint {ckpt_at_kill}, "
          f"replayed {len(replayed)} step(s), steps stored {STEPS}/{STEPS}, duplicates 0, "
          f"events {kinds}")


def test_sigterm_gives_the_job_back_and_the_next_worker_resumes_at_once(
        tmp_path, tiny_model, postgres_schema_url, redis_url):
    """A clean stop (`docker compose stop`, a node drain): the job stops at a step boundary, gives
    its lease back and is requeued. The stale limit is 60 s here, so only the release (not a
    heartbeat timing out) lets the next worker resume within the test's wait."""
    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, redis_url,
                   worker_stale_after_seconds="60")
    with running(lab):
        first = lab.start_worker("worker-a")
        job_id = lab.submit(max_steps=LONG, checkpoint_every=EVERY)
        lab.wait(lambda: (lambda s, c: c is not None and s > c)(*_progress(lab, job_id)),
                 timeout=240, what="a step past the first checkpoint", interval=0.05)
        os.killpg(first.pid, signal.SIGTERM)
        assert first.wait(timeout=60) == 0, "warm shutdown should exit cleanly"
        step_at_stop, ckpt_at_stop = _progress(lab, job_id)
        assert lab.db_status(job_id) == "running"

        lab.start_worker("worker-b")
        lab.wait(lambda: lab.db_status(job_id) in {"succeeded", "failed", "cancelled"},
                 timeout=45, what="the next worker to resume the released job")

    events = lab.events(job_id)
    assert lab.db_status(job_id) == "succeeded", [(e.kind, e.message) for e in events]
    assert lab.metric_steps(job_id) == list(range(1, LONG + 1))
    kinds = [e.kind for e in events]
    assert kinds.count("interrupted") == 1 and kinds.count("resumed") == 1, kinds
    resumed = next(e for e in events if e.kind == "resumed")
    assert resumed.data["checkpoint_step"] == ckpt_at_stop
    print(f"\nFIGURES sigterm: stopped after step {step_at_stop}, checkpoint {ckpt_at_stop}, "
          f"resumed by the next worker, steps stored {LONG}/{LONG}")
