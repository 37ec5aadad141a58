"""Lease fencing on real SQLite and PostgreSQL: a worker whose job was claimed by another worker
while it was silent (epoch N, the job now at N+1) can write nothing more for it.

The takeover is made the way it happens for real: the first worker's heartbeat goes stale (it is
backdated, as if the process had been paused) and a second `claim()` succeeds.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from core.jobs import lifecycle
from core.jobs.lifecycle import LeaseLost
from core.models import AdvantageHistogram, Checkpoint, Job, JobEvent, JobStatus, Metric
from tests.worker.conftest import LONG_AGO, Hist
from worker import tasks
from worker.sink import DatabaseSink
from worker.tasks import JobRunner, execute_job

GOOD_CONFIG = {"estimator": "reinforce_pp", "n0": 0, "max_steps": 3, "batch_size": 2,
               "eval_every": 0, "reward": "exact"}


def _go_silent(engine, job_id) -> None:
    """What a GC pause or a partition longer than the stale limit leaves in the row."""
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(updated_at=LONG_AGO))


def _claim(engine, job_id) -> lifecycle.Claim:
    with engine.begin() as conn:
        claim = lifecycle.claim(conn, job_id, stale_after_seconds=60)
    assert claim is not None
    return claim


def _taken_over(engine, make_job):
    """(job id, stale owner's epoch, new owner's epoch), the stale owner having written step 1."""
    job_id = make_job(status=JobStatus.running, config=GOOD_CONFIG, started=LONG_AGO,
                      heartbeat=LONG_AGO)
    old = _claim(engine, job_id)
    DatabaseSink(engine, job_id, epoch=old.epoch).log_step(1, {"reward/mean": -1.0}, {})
    _go_silent(engine, job_id)
    new = _claim(engine, job_id)
    assert (old.epoch, new.epoch) == (1, 2)
    return job_id, old.epoch, new.epoch


def _rows(engine, job_id):
    with engine.connect() as conn:
        return {
            "metrics": conn.execute(select(Metric.name, Metric.step, Metric.value)
                                    .where(Metric.job_id == job_id).order_by(Metric.step)).all(),
            "histograms": conn.execute(select(AdvantageHistogram.step, AdvantageHistogram.counts)
                                       .where(AdvantageHistogram.job_id == job_id)).all(),
            "events": conn.execute(select(JobEvent.kind, JobEvent.message)
                                   .where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all(),
            "job": conn.execute(select(Job.status, Job.error, Job.current_step, Job.updated_at,
                                       Job.lease_epoch).where(Job.id == job_id)).one(),
        }


def test_stale_owner_cannot_write_a_step_or_an_event(engine, make_job):
    job_id, old, new = _taken_over(engine, make_job)
    owner = DatabaseSink(engine, job_id, epoch=new)
    owner.log_step(1, {"reward/mean": 0.25}, {"advantage": Hist([-1.0, 1.0], [4])})
    owner.log_step(2, {"reward/mean": 0.5}, {"advantage": Hist([-1.0, 1.0], [5])})
    owner.log_event("resume", "the new owner's event")
    expected = _rows(engine, job_id)

    stale = DatabaseSink(engine, job_id, epoch=old)
    with pytest.raises(LeaseLost, match=r"held epoch 1, the job is at epoch 2") as lost:
        stale.log_step(2, {"reward/mean": 99.0}, {"advantage": Hist([-1.0, 1.0], [99])})
    assert (lost.value.job_id, lost.value.epoch, lost.value.current) == (job_id, 1, 2)
    with pytest.raises(LeaseLost):
        stale.log_step(3, {"reward/mean": 99.0}, {})  # a step the new owner has not reached
    with pytest.raises(LeaseLost):
        stale.log_event("checkpoint", "the stale owner's event")

    after = _rows(engine, job_id)
    assert after == expected  # heartbeat included: the rejected writes rolled back whole
    assert after["metrics"] == [("reward/mean", 1, 0.25), ("reward/mean", 2, 0.5)]
    assert after["histograms"] == [(1, [4]), (2, [5])]
    assert after["job"].current_step == 2


def test_stale_owner_cannot_change_status_checkpoint_or_lease(engine, make_job, settings,
                                                             worker_settings):
    job_id, old, new = _taken_over(engine, make_job)
    stale = JobRunner(job_id, old, engine, settings, worker_settings, threading.Event())
    owner = JobRunner(job_id, new, engine, settings, worker_settings, threading.Event())
    owner.on_status(JobStatus.running)
    before = _rows(engine, job_id)

    ckpt = settings.job_run_dir(job_id) / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    for write in (lambda: stale.finish(JobStatus.failed, "stale", error="stale owner"),
                  lambda: stale.finish(JobStatus.succeeded, "stale"),
                  lambda: stale.finish(JobStatus.cancelled, "stale"),
                  lambda: stale.on_checkpoint(2, ckpt),
                  stale.should_stop):
        with pytest.raises(LeaseLost):
            write()
    with engine.begin() as conn, pytest.raises(LeaseLost):
        lifecycle.heartbeat(conn, job_id, old)
    with engine.begin() as conn, pytest.raises(LeaseLost):
        lifecycle.release(conn, job_id, old)

    assert _rows(engine, job_id) == before
    assert before["job"].status == "running" and before["job"].error is None
    with engine.connect() as conn:
        assert conn.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job_id)) is None
    # The owner's own writes still go through.
    assert owner.finish(JobStatus.succeeded, "done") == "succeeded"
    assert _rows(engine, job_id)["job"].status == "succeeded"


def test_a_paused_worker_stops_without_writing_when_it_wakes(engine, make_job, settings,
                                                            worker_settings):
    """End to end through `execute_job`: worker A pauses after step 1 past the stale limit, worker
    B claims the job, resumes it and finishes it; A wakes up, gets `LeaseLost` before its next
    step, and the job's rows are B's: B's values, B's status, no `failed`, nothing from A after
    the takeover. (The fake trainer writes no checkpoint, so there is no final model to export.)"""
    job_id = make_job(config={**GOOD_CONFIG, "export_model": False})
    # A's heartbeat thread is paused with it; a long period keeps it from beating in the test.
    paused = worker_settings.model_copy(update={"heartbeat_seconds": 3600.0})
    a_steps: list[int] = []

    def pause_and_lose_the_job(step: int) -> None:
        if step == 1:
            _go_silent(engine, job_id)
            assert execute_job(job_id, engine=engine, settings=settings,
                               worker_settings=worker_settings, stop=threading.Event(),
                               train_fn=Trainer(value=100.0)) == "succeeded"

    with pytest.raises(LeaseLost):
        execute_job(job_id, engine=engine, settings=settings, worker_settings=paused,
                    stop=threading.Event(),
                    train_fn=Trainer(value=0.0, after_step=pause_and_lose_the_job, seen=a_steps))
    assert a_steps == [1]  # A never trained step 2

    rows = _rows(engine, job_id)
    assert (rows["job"].status, rows["job"].error, rows["job"].current_step,
            rows["job"].lease_epoch) == ("succeeded", None, 3, 2)
    assert rows["metrics"] == [("reward/mean", s, 100.0 + s) for s in (1, 2, 3)]
    kinds = [kind for kind, _ in rows["events"]]
    takeover = kinds.index("resumed")
    # B's resume, B's progress line for each step it ran (1-3; A's line for step 2 died with its
    # fenced step transaction), then B's `succeeded`.
    assert kinds[takeover:] == ["resumed", "progress", "progress", "progress", "status"]
    assert rows["events"][-1].message.startswith("status running -> succeeded")
    assert "failed" not in " ".join(message for _, message in rows["events"])


def test_the_task_ends_quietly_on_a_lost_lease(monkeypatch):
    def lost(job_id):
        raise LeaseLost(job_id, 1, 2)

    monkeypatch.setattr(tasks, "execute_job", lost)
    assert tasks.run_job("job_x") == "lease_lost"


class Trainer:
    """`trainer.loop.train`'s contract: `should_stop` before each step, a step, a checkpoint."""

    def __init__(self, value: float, after_step=None, seen: list[int] | None = None):
        self.value, self.after_step, self.seen = value, after_step, seen if seen is not None else []

    def __call__(self, config, sink, *, run_dir, should_stop, on_status, on_checkpoint, resume,
                 before_checkpoint=None):
        on_status("running")
        for step in range(1, config.max_steps + 1):
            if should_stop():
                return SimpleNamespace(steps=step - 1, stopped=True, initial_eval_accuracy=None,
                                       final_eval_accuracy=None, seconds=0.0)
            sink.log_step(step, {"reward/mean": self.value + step}, {})
            self.seen.append(step)
            ckpt = run_dir / "checkpoints" / f"step-{step:06d}"
            ckpt.mkdir(parents=True, exist_ok=True)
            on_checkpoint(step, ckpt)
            if self.after_step:
                self.after_step(step)
        return SimpleNamespace(steps=config.max_steps, stopped=False, initial_eval_accuracy=None,
                               final_eval_accuracy=None, seconds=0.0)
