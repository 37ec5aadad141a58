"""Status machine, leases and orphan detection on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.jobs import lifecycle
from core.models import Checkpoint, Job, JobEvent, JobStatus
from tests.worker.conftest import LONG_AGO


def _events(engine, job_id):
    with engine.connect() as conn:
        return conn.execute(select(JobEvent.kind, JobEvent.level, JobEvent.message, JobEvent.data)
                            .where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()


def _job_epoch(conn, job_id):
    return conn.scalar(select(Job.lease_epoch).where(Job.id == job_id))


def _job(engine, job_id):
    with Session(engine) as session:
        return session.get(Job, job_id)


def test_each_transition_writes_one_event(engine, make_job):
    job_id = make_job()
    for status in (JobStatus.estimating_priors, JobStatus.running, JobStatus.succeeded):
        with engine.begin() as conn:
            assert lifecycle.transition(conn, job_id, status) is not None
    events = _events(engine, job_id)
    assert [e.data["status"] for e in events] == ["estimating_priors", "running", "succeeded"]
    assert [e.data["from"] for e in events] == ["queued", "estimating_priors", "running"]
    job = _job(engine, job_id)
    assert job.status == "succeeded" and job.started_at and job.finished_at
    assert job.started_at <= job.finished_at


def test_disallowed_transitions_change_nothing(engine, make_job):
    job_id = make_job(status=JobStatus.running)
    with engine.begin() as conn:
        assert lifecycle.transition(conn, job_id, JobStatus.estimating_priors) is None  # after resume
        assert lifecycle.transition(conn, job_id, JobStatus.failed, error="boom") == "running"
        assert lifecycle.transition(conn, job_id, JobStatus.succeeded) is None  # terminal stays
    job = _job(engine, job_id)
    assert (job.status, job.error) == ("failed", "boom")
    events = _events(engine, job_id)
    assert len(events) == 1 and events[0].level == "error"


def test_non_basis_jobs_may_skip_estimating_priors(engine, make_job):
    job_id = make_job()
    with engine.begin() as conn:
        assert lifecycle.transition(conn, job_id, JobStatus.running) == "queued"


def test_claim_new_job_once(engine, make_job):
    job_id = make_job()
    with engine.begin() as conn:
        first = lifecycle.claim(conn, job_id, stale_after_seconds=60)
        second = lifecycle.claim(conn, job_id, stale_after_seconds=60)
    assert first is not None and not first.resumed
    assert second is None  # a duplicate delivery while the first worker is alive
    # The claim shows at once (issue 18): a claimed job is never `queued`, so a cancel asks the
    # worker to stop it instead of marking it cancelled while it still runs.
    assert _job(engine, job_id).status == "starting"
    assert [e.data["status"] for e in _events(engine, job_id)] == ["starting"]


def test_stale_job_is_taken_over_as_resume(engine, make_job):
    job_id = make_job(status=JobStatus.running, started=LONG_AGO, heartbeat=LONG_AGO)
    with engine.begin() as conn:
        claim = lifecycle.claim(conn, job_id, stale_after_seconds=60)
    assert claim is not None and claim.resumed and claim.status == "running"
    assert _job(engine, job_id).updated_at > datetime(2025, 1, 1, tzinfo=UTC)


def test_released_job_is_claimable_at_once(engine, make_job):
    job_id = make_job(status=JobStatus.running, started=LONG_AGO)
    with engine.begin() as conn:
        assert lifecycle.claim(conn, job_id, stale_after_seconds=3600) is None
        lifecycle.release(conn, job_id, 0)
        assert lifecycle.claim(conn, job_id, stale_after_seconds=3600) is not None


def test_each_claim_takes_the_next_lease_epoch(engine, make_job):
    job_id = make_job()
    with engine.begin() as conn:
        first = lifecycle.claim(conn, job_id, stale_after_seconds=60)
        assert lifecycle.claim(conn, job_id, stale_after_seconds=60) is None  # a lost race ...
        assert _job_epoch(conn, job_id) == 1  # ... leaves the epoch alone
        lifecycle.release(conn, job_id, first.epoch)
        second = lifecycle.claim(conn, job_id, stale_after_seconds=60)
        assert _job_epoch(conn, job_id) == 2
    assert (first.epoch, second.epoch) == (1, 2)


def test_terminal_jobs_are_never_claimed(engine, make_job):
    job_id = make_job(status=JobStatus.succeeded, started=LONG_AGO, heartbeat=LONG_AGO)
    with engine.begin() as conn:
        assert lifecycle.claim(conn, job_id, stale_after_seconds=1) is None


def test_orphaned_jobs(engine, make_job):
    waiting = make_job()
    stale = make_job(status=JobStatus.running, started=LONG_AGO, heartbeat=LONG_AGO)
    make_job(status=JobStatus.running, started=LONG_AGO)  # live: fresh heartbeat
    make_job(status=JobStatus.succeeded, started=LONG_AGO, heartbeat=LONG_AGO)
    with engine.connect() as conn:
        everything = lifecycle.orphaned_jobs(conn, stale_after_seconds=60, include_queued=True)
        only_stale = lifecycle.orphaned_jobs(conn, stale_after_seconds=60, include_queued=False)
    assert sorted(j for j, _ in everything) == sorted([waiting, stale])
    assert [j for j, _ in only_stale] == [stale]


def test_record_checkpoint_is_idempotent(engine, make_job, settings):
    job_id = make_job(status=JobStatus.running)
    ckpt = settings.job_run_dir(job_id) / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"x" * 100)
    for _ in range(2):
        with engine.begin() as conn:
            lifecycle.record_checkpoint(conn, job_id, 2, ckpt, settings.storage_dir)
    with engine.connect() as conn:
        assert lifecycle.latest_checkpoint_step(conn, job_id) == 2
    with Session(engine) as session:
        rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.step, row.bytes, row.path) == (2, 100, f"jobs/{job_id}/checkpoints/step-000002")


def test_cancel_stops_a_queued_job_at_once_and_flags_a_started_one(engine, make_job):
    queued, running = make_job(), make_job(status=JobStatus.running, started=LONG_AGO)
    with engine.begin() as conn:
        assert lifecycle.cancel(conn, queued) is True
        assert lifecycle.cancel(conn, running) is False
        heartbeat = conn.scalar(select(Job.updated_at).where(Job.id == running))
    assert (_job(engine, queued).status, _job(engine, queued).cancel_requested) == ("cancelled", True)
    job = _job(engine, running)
    assert (job.status, job.cancel_requested, job.updated_at) == ("running", True, heartbeat)
    assert [e.kind for e in _events(engine, running)] == ["cancel_requested"]
    assert [e.data for e in _events(engine, queued)] == [{"status": "cancelled"}]


def test_retry_requeues_only_a_failed_or_cancelled_job_and_fences_the_old_worker(engine, make_job):
    failed, running = make_job(status=JobStatus.failed, started=LONG_AGO), make_job(status=JobStatus.running)
    with engine.begin() as conn:
        before = _job_epoch(conn, failed)
        assert lifecycle.retry(conn, running) is None
        assert lifecycle.retry(conn, failed) == "failed"
        assert lifecycle.retry(conn, failed) is None  # queued now: a second retry changes nothing
        assert _job_epoch(conn, failed) == before + 1
    job = _job(engine, failed)
    assert (job.status, job.updated_at, job.started_at) == ("queued", lifecycle.RELEASED_AT, LONG_AGO)
    assert [e.data for e in _events(engine, failed)] == [{"status": "queued", "from": "failed", "retry": True}]
    assert _events(engine, running) == []
    with engine.begin() as conn:  # the next delivery claims it at once, as a resume
        claim = lifecycle.claim(conn, failed, stale_after_seconds=3600)
    assert claim is not None and claim.resumed and claim.epoch == before + 2
