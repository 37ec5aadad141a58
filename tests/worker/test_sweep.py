"""The periodic sweep re-sends jobs left `queued` too long (a broker flushed or restarted empty under
running workers), once per interval per process; real databases, a recording stand-in broker and a
hand-moved clock (worker/reconcile.py)."""

from __future__ import annotations

from core.jobs.lifecycle import RELEASED_AT
from core.models import JobStatus
from tests.worker.conftest import LONG_AGO
from worker.config import WorkerSettings
from worker.reconcile import Sweeper

STALE, QUEUED = 60.0, 600.0


class Recorder(list):
    """A stand-in broker: records the job id of each `enqueue(job_id, queue)` call."""

    def __call__(self, job_id: str, queue: str) -> None:
        self.append(job_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sweeper(engine, settings, queued_after: float = QUEUED) -> tuple[Sweeper, Recorder, Clock]:
    sent, clock = Recorder(), Clock()
    ws = WorkerSettings(heartbeat_seconds=1, stale_after_seconds=STALE,
                        requeue_queued_after_seconds=queued_after)
    return Sweeper(ws, engine=engine, enqueue=sent, settings=settings, clock=clock), sent, clock


def test_a_job_queued_too_long_is_resent_once_per_interval(engine, settings, make_job):
    old = make_job(heartbeat=LONG_AGO, queue="a100")
    make_job()  # queued just now: the broker has its message, nothing to do
    make_job(status=JobStatus.cancelled, heartbeat=LONG_AGO)
    make_job(status=JobStatus.succeeded, started=LONG_AGO, heartbeat=LONG_AGO)
    make_job(started=LONG_AGO)  # claimed by a live worker that is still starting it (status queued)
    sweeper, sent, clock = _sweeper(engine, settings)

    assert sweeper.sweep() == [old]
    clock.now += STALE + 1  # past the stale interval, not the queued one
    assert sweeper.sweep() == []
    clock.now += QUEUED - STALE
    assert sweeper.sweep() == [old]  # one more message per interval while it stays queued
    assert sent == [old, old]


def test_a_retried_job_is_sent_once_then_held_like_any_queued_job(engine, settings, make_job):
    """Retry sets `updated_at` to 1970 and keeps `started_at`: the stale rule sends it at the next
    sweep (a duplicate of the API's message, dropped by the lease), but not again every stale
    interval."""
    retried = make_job(started=LONG_AGO, heartbeat=RELEASED_AT)
    sweeper, sent, clock = _sweeper(engine, settings)
    assert sweeper.sweep() == [retried]
    for _ in range(5):
        clock.now += STALE + 1
        sweeper.sweep()
    assert sent == [retried]
    clock.now += QUEUED
    assert sweeper.sweep() == [retried]


def test_a_stale_running_job_keeps_the_short_interval(engine, settings, make_job):
    orphan = make_job(status=JobStatus.running, started=LONG_AGO, heartbeat=LONG_AGO)
    sweeper, sent, clock = _sweeper(engine, settings)
    assert sweeper.sweep() == [orphan]
    assert sweeper.sweep() == []
    clock.now += STALE + 1
    assert sweeper.sweep() == [orphan]


def test_zero_turns_the_queued_rule_off(engine, settings, make_job):
    make_job(heartbeat=LONG_AGO)
    sweeper, sent, _ = _sweeper(engine, settings, queued_after=0)
    assert sweeper.sweep() == [] and sent == []


def test_a_reconnect_sends_every_queued_job_again_at_once(engine, settings, make_job):
    """Start-up sends every never-started queued job; after a reconnect (the broker may have lost
    everything) the same pass forgets what was sent before, and the periodic sweep after it does
    not repeat it."""
    old, fresh = make_job(heartbeat=LONG_AGO), make_job()
    sweeper, sent, clock = _sweeper(engine, settings)
    assert sweeper.sweep(include_queued=True) == sorted([old, fresh])
    assert sweeper.sweep() == []
    clock.now += 5
    assert sweeper.sweep(include_queued=True, forget=True) == sorted([old, fresh])
    clock.now += STALE + 1
    assert sweeper.sweep() == []
    assert sorted(sent) == sorted([old, fresh, old, fresh])
