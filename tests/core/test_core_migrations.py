"""Migrations are the schema: head matches the models, and down/up round-trips, on both backends."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from core.db import alembic_config, migrate
from core.models import Base, utcnow


def test_head_matches_the_models(db_url):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_and_upgrade_round_trip(db_url):
    command.downgrade(alembic_config(db_url), "base")
    engine = create_engine(db_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(db_url)
    assert "metrics" in inspect(engine).get_table_names()
    engine.dispose()


def test_lease_epoch_down_and_up_keeps_every_job_and_its_children(db_url):
    """0002 <-> 0001 on a database with data: the column goes and comes back (0 for existing jobs)
    and no job, event or metric is lost. (SQLite's batch copy-and-move of `jobs` would delete the
    children through ON DELETE CASCADE when it drops the old table.)"""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, created_at) VALUES ('user_1', 'u', :t)"),
                     {"t": utcnow()})
        conn.execute(text(
            "INSERT INTO jobs (id, owner_id, model, estimator, config, status, cancel_requested, "
            "current_step, lease_epoch, queue, created_at, updated_at) VALUES ('job_1', 'user_1', "
            "'tiny', 'basis', '{}', 'running', false, 1, 7, 'gpu', :t, :t)"), {"t": utcnow()})
        conn.execute(text("INSERT INTO job_events (job_id, ts, kind, level, message) "
                          "VALUES ('job_1', :t, 'status', 'info', 'm')"), {"t": utcnow()})
        conn.execute(text("INSERT INTO metrics (job_id, name, step, value) "
                          "VALUES ('job_1', 'reward/mean', 1, 0.5)"))

    def counts() -> tuple[int, int, int]:
        with engine.connect() as conn:
            return tuple(conn.scalar(text(f"SELECT count(*) FROM {table}"))
                         for table in ("jobs", "job_events", "metrics"))

    command.downgrade(alembic_config(db_url), "0001")
    assert "lease_epoch" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert counts() == (1, 1, 1)
    migrate(db_url)
    assert counts() == (1, 1, 1)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT lease_epoch FROM jobs WHERE id = 'job_1'")) == 0
    engine.dispose()


def test_worker_registry_down_and_up(db_url):
    """0004 <-> 0003: the workers table goes and comes back; the jobs are untouched."""
    engine = create_engine(db_url)
    command.downgrade(alembic_config(db_url), "0003")
    assert "workers" not in inspect(engine).get_table_names()
    assert "jobs" in inspect(engine).get_table_names()
    migrate(db_url)
    assert {c["name"] for c in inspect(engine).get_columns("workers")} >= {
        "id", "queues", "engines", "gpus", "max_processes", "heartbeat_at", "stopped_at"}
    engine.dispose()


def test_model_records_and_job_kind_down_and_up_keep_every_job(db_url):
    """0005 <-> 0004 on a database with a job: model_records and the two jobs columns go and come
    back in place (existing jobs read as kind "train"), and no job or event is lost."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, created_at) VALUES ('user_1', 'u', :t)"),
                     {"t": utcnow()})
        conn.execute(text(
            "INSERT INTO jobs (id, owner_id, model, estimator, config, status, cancel_requested, "
            "current_step, lease_epoch, queue, created_at, updated_at) VALUES ('job_1', 'user_1', "
            "'tiny', 'basis', '{}', 'running', false, 1, 7, 'gpu', :t, :t)"), {"t": utcnow()})
        conn.execute(text("INSERT INTO job_events (job_id, ts, kind, level, message) "
                          "VALUES ('job_1', :t, 'status', 'info', 'm')"), {"t": utcnow()})
    command.downgrade(alembic_config(db_url), "0004")
    assert "model_records" not in inspect(engine).get_table_names()
    assert "kind" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    migrate(db_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT kind FROM jobs WHERE id = 'job_1'")) == "train"
        assert conn.scalar(text("SELECT count(*) FROM job_events")) == 1
    assert "model_records" in inspect(engine).get_table_names()
    engine.dispose()
