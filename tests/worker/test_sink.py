"""The database sink on real SQLite and PostgreSQL: one transaction per step, idempotent, retried."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import DataError, OperationalError

from core.db import run_in_transaction
from core.models import AdvantageHistogram, Job, JobEvent, Metric
from tests.worker.conftest import Hist
from worker.sink import DatabaseSink


def _metrics(engine, job_id):
    with engine.connect() as conn:
        rows = conn.execute(select(Metric.name, Metric.step, Metric.value)
                            .where(Metric.job_id == job_id).order_by(Metric.step, Metric.name))
        return [tuple(r) for r in rows]


def test_log_step_writes_metrics_histograms_and_current_step(engine, make_job):
    job_id = make_job()
    sink = DatabaseSink(engine, job_id)
    sink.log_step(1, {"reward/mean": 0.5, "loss/policy": float("nan")},
                  {"advantage": Hist(edges=[-1.0, 0.0, 1.0], counts=[3, 5])})
    assert _metrics(engine, job_id) == [("loss/policy", 1, None), ("reward/mean", 1, 0.5)]
    with engine.connect() as conn:
        hist = conn.execute(select(AdvantageHistogram).where(AdvantageHistogram.job_id == job_id)).one()
        assert (hist.step, hist.name, hist.edges, hist.counts) == (1, "advantage", [-1.0, 0.0, 1.0], [3, 5])
        assert conn.scalar(select(Job.current_step).where(Job.id == job_id)) == 1


def test_same_step_twice_keeps_one_row_with_latest_value(engine, make_job):
    job_id = make_job()
    sink = DatabaseSink(engine, job_id)
    for value in (0.1, 0.9):
        sink.log_step(3, {"reward/mean": value}, {"advantage": Hist([-1.0, 1.0], [int(value * 10)])})
    assert _metrics(engine, job_id) == [("reward/mean", 3, 0.9)]
    with engine.connect() as conn:
        counts = conn.scalars(select(AdvantageHistogram.counts)
                              .where(AdvantageHistogram.job_id == job_id)).all()
    assert counts == [[9]]


def test_one_transaction_per_step(engine, make_job):
    job_id = make_job()
    sink = DatabaseSink(engine, job_id)
    commits = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    metrics = {f"m/{i}": float(i) for i in range(200)}
    for step in range(5):
        sink.log_step(step, metrics, {"advantage": Hist([-1.0, 1.0], [1])})
    assert len(commits) == 5
    assert len(_metrics(engine, job_id)) == 1000


@pytest.mark.postgres
def test_failed_step_writes_nothing(postgres_schema_url, tmp_path):
    """Atomicity: a histogram the database refuses (name too long) rolls the metrics back too."""
    engine = create_engine(postgres_schema_url)
    try:
        job_id = _insert_bare_job(engine)
        sink = DatabaseSink(engine, job_id)
        with pytest.raises(DataError):
            sink.log_step(1, {"reward/mean": 1.0}, {"x" * 500: Hist([-1.0, 1.0], [1])})
        assert _metrics(engine, job_id) == []
        with engine.connect() as conn:
            assert conn.scalar(select(Job.current_step).where(Job.id == job_id)) == 0
    finally:
        engine.dispose()


def _insert_bare_job(engine) -> str:
    from core.db import session_scope
    from core.models import User

    with session_scope(engine) as session:
        user = User(name="u")
        session.add(user)
        session.flush()
        job = Job(owner_id=user.id, model="tiny", estimator="basis", config={}, queue="gpu")
        session.add(job)
        session.flush()
        return job.id


def test_log_event_levels_and_json_safety(engine, make_job):
    job_id = make_job()
    sink = DatabaseSink(engine, job_id)
    sink.log_event("error", "reward crashed", {"x": math.inf, "n": 3})
    sink.log_event("eval", "eval accuracy 0.5")
    with engine.connect() as conn:
        rows = conn.execute(select(JobEvent.kind, JobEvent.level, JobEvent.data)
                            .where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()
    assert [tuple(r) for r in rows] == [("error", "error", {"x": None, "n": 3}), ("eval", "info", None)]


def test_retry_gives_up_on_non_transient_errors_at_once(engine):
    calls = []

    def work(conn):
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        run_in_transaction(engine, work, retry_seconds=30)
    assert len(calls) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_lock_is_retried_until_released(settings, make_job, engine, caplog):
    """A real 'database is locked': another connection holds the write lock for ~1 s."""
    job_id = make_job()
    impatient = create_engine(settings.database_url, connect_args={"timeout": 0.05})
    holder = engine.raw_connection()
    holder.execute("BEGIN IMMEDIATE")

    def release_later():
        time.sleep(1.0)
        holder.rollback()

    threading.Thread(target=release_later).start()
    sink = DatabaseSink(impatient, job_id, retry_seconds=30)
    with caplog.at_level(logging.WARNING, logger="core.db"):
        sink.log_step(1, {"reward/mean": 0.25}, {})
    holder.close()
    impatient.dispose()
    assert _metrics(engine, job_id) == [("reward/mean", 1, 0.25)]
    assert any("retrying" in r.message for r in caplog.records)


@pytest.mark.postgres
def test_postgres_connection_killed_mid_step_is_retried(postgres_schema_url, caplog):
    """The sink's server process is terminated while its step waits on a row lock (as in a
    database restart): the step is retried on a new connection and written exactly once."""
    engine = create_engine(postgres_schema_url, pool_pre_ping=True)
    admin = create_engine(postgres_schema_url, isolation_level="AUTOCOMMIT")
    try:
        job_id = _insert_bare_job(engine)
        sink = DatabaseSink(engine, job_id, retry_seconds=30)
        with engine.connect() as locker:
            lock = locker.begin()
            locker.execute(select(Job.id).where(Job.id == job_id).with_for_update())
            errors: list[BaseException] = []

            def write():
                try:
                    sink.log_step(7, {"reward/mean": 0.75}, {"advantage": Hist([-1.0, 1.0], [2])})
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            caplog.set_level(logging.WARNING, logger="core.db")
            thread = threading.Thread(target=write)
            thread.start()
            with admin.connect() as watcher:
                pid = None
                for _ in range(100):
                    pid = watcher.scalar(text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' LIMIT 1"))
                    if pid:
                        break
                    time.sleep(0.05)
                assert pid, "the sink never blocked on the row lock"
                watcher.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            lock.rollback()
            thread.join(timeout=30)
        assert not errors, errors
        assert _metrics(engine, job_id) == [("reward/mean", 7, 0.75)]
        assert any("retrying" in r.message for r in caplog.records)
    finally:
        engine.dispose()
        admin.dispose()


def test_operational_error_is_transient():
    from core.db import is_transient

    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert not is_transient(ValueError("x"))


def test_nul_characters_in_samples_and_events_are_stored(engine, make_job):
    """A tiny model does generate NUL; Postgres text/JSONB refuse it, which used to fail the job."""
    from core.models import RolloutSample
    from trainer.sinks import Sample

    job_id = make_job()
    sink = DatabaseSink(engine, job_id)
    sample = Sample(index=0, prompt_id="p\x000", prompt="1+1=\x00", completion="2\x00\x00",
                    answer="2", reward=None, advantage=0.0, baseline=0.5, finish_reason="length")
    sink.log_step(1, {"reward/mean": 0.0}, {}, samples=[sample])
    sink.log_event("warning", "unscorable: '2\x00'", {"example": "2\x00", "k\x00": 1})
    with engine.connect() as conn:
        row = conn.execute(select(RolloutSample).where(RolloutSample.job_id == job_id)).one()
        event = conn.execute(select(JobEvent).where(JobEvent.job_id == job_id,
                                                    JobEvent.kind == "warning")).one()
    assert (row.prompt, row.completion, row.prompt_id) == ("1+1=\ufffd", "2\ufffd\ufffd", "p\ufffd0")
    assert event.message == "unscorable: '2\ufffd'"
    assert event.data == {"example": "2\ufffd", "k\ufffd": 1}
