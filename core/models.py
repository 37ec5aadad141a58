"""SQLAlchemy 2 models: the whole schema of the platform (created only by Alembic migrations).

Choices:
- Ids are strings with a type prefix (`user_`, `key_`, `ds_`, `job_`, `ckpt_`) followed by a
  millisecond timestamp and random bits in hex, so sorting by id is sorting by creation time and
  cursor pagination is a plain `id < :after`. Events and histograms are append-only per job and use
  integer ids, which double as the `?after=` cursor.
- API keys are stored as the SHA-256 of a 256-bit random secret (a slow KDF buys nothing for a
  random secret) plus a short display prefix; revocation sets `revoked_at`, nothing is deleted.
- `metrics` has primary key (job_id, name, step): the worker's sink can write a step twice (retry,
  redelivery) and get the same rows (upsert), and a (job_id, name, step) range read is an index
  range scan. A second index (job_id, step) serves "latest step of a job" and all-names range reads.
- Children of a job cascade on delete; a dataset deleted after its jobs finished leaves
  `jobs.dataset_id` NULL rather than deleting history.
- Timestamps are timezone-aware UTC everywhere; SQLite drops the zone, `UTCDateTime` puts it back.
- JSON columns turn NaN/Infinity into null on write: a worker logging a NaN in an event must not
  fail its step's transaction on PostgreSQL, nor make a later read unserialisable.
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.status import JobStatus

# Named constraints: Alembic batch mode on SQLite needs names to alter tables later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AutoBigInt = BigInteger().with_variant(Integer(), "sqlite")


def finite_json(value: Any) -> Any:
    """`value` with every NaN/Infinity replaced by None (JSON, and PostgreSQL's JSONB, have neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(child) for child in value]
    return value


class JSONType(TypeDecorator):
    """JSON (JSONB on PostgreSQL) that stores NaN/Infinity as null instead of failing the write."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return finite_json(value)


class UTCDateTime(TypeDecorator):
    """A timezone-aware datetime column that always reads back as UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use core.models.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """`<prefix>_<12 hex ms timestamp><12 hex random>`: unique and sortable by creation time."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("user"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Admins pull and delete shared models (migration 0005); `basis admin create-key --admin`.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_owner_id_id", "owner_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ds"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))  # relative to Settings.storage_dir
    rows: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_owner_id_id", "owner_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    model: Mapped[str] = mapped_column(String(512))  # the name from GET /v1/models, not a path
    estimator: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)  # TrainConfig minus the server fields (core/jobs/config.py)
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.queued, index=True)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    # Fencing token of the worker lease: +1 on every claim; a worker's writes require its value.
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    queue: Mapped[str] = mapped_column(String(64))
    # "train" or "eval": an evaluation runs on the same lifecycle as a training job (migration 0005).
    kind: Mapped[str] = mapped_column(String(16), default="train", server_default="train", index=True)
    # Name of the model exported from the final checkpoint of a succeeded training job.
    fine_tuned_model: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))  # "status", "cancel_requested", "checkpoint", "log", ...
    level: Mapped[str] = mapped_column(String(16), default="info")  # info | warning | error
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_job_id_step", "job_id", "step"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float | None] = mapped_column(Double)  # NULL stands for NaN/inf (not JSON-safe)


class AdvantageHistogram(Base):
    __tablename__ = "advantage_histograms"
    __table_args__ = (UniqueConstraint("job_id", "step", "name"),)

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128), default="advantage")
    edges: Mapped[list[float]] = mapped_column(JSONType)  # (bins+1,)
    counts: Mapped[list[int]] = mapped_column(JSONType)  # (bins,)


class RolloutSample(Base):
    """A few rollouts of each step (trainer.sinks.Sample), for reading; upserted on (job, step, index)."""

    __tablename__ = "rollout_samples"
    __table_args__ = (UniqueConstraint("job_id", "step", "index"),)

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)  # position in the step's batch
    prompt_id: Mapped[str] = mapped_column(String(256))
    prompt: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Double)  # NULL = unscorable
    advantage: Mapped[float] = mapped_column(Double)
    baseline: Mapped[float | None] = mapped_column(Double)
    finish_reason: Mapped[str] = mapped_column(String(16))


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ckpt"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))  # absolute, or relative to Settings.storage_dir
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Worker(Base):
    """One running worker process and what it can run (core/workers.py): rewritten at its start
    and on every heartbeat; alive while `stopped_at` is NULL and `heartbeat_at` is recent."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # "<queue>-<pid>@<hostname>"
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSONType)
    engines: Mapped[list[str]] = mapped_column(JSONType)  # rollout engines importable there
    gpus: Mapped[int] = mapped_column(Integer)
    max_processes: Mapped[int] = mapped_column(Integer)  # the most ranks one job may use there
    current_job_id: Mapped[str | None] = mapped_column(String(40), default=None)  # no FK: jobs get deleted
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ModelRecord(Base):
    """A model the platform put into the models root: pulled from a hub (`source` "hub", shared when
    `owner_id` is NULL) or exported from a job's checkpoint (`source` "export", owned by the job's
    owner). Hand-copied directories are listed by the directory scan without a row."""

    __tablename__ = "model_records"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("model"))
    name: Mapped[str] = mapped_column(String(255), unique=True)  # the name jobs and evals use
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    source: Mapped[str] = mapped_column(String(16))  # "hub" | "export"
    source_ref: Mapped[str] = mapped_column(String(512))  # hub repo id, or "<job_id>/<checkpoint_id>"
    revision: Mapped[str | None] = mapped_column(String(64), default=None)  # pinned hub commit
    base_model: Mapped[str | None] = mapped_column(String(512), default=None)  # of an export/adapter
    format: Mapped[str] = mapped_column(String(16))  # "full" | "adapter"
    path: Mapped[str] = mapped_column(String(1024))  # relative to the first models root
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    architecture: Mapped[str | None] = mapped_column(String(128), default=None)
    parameter_count: Mapped[int | None] = mapped_column(BigInteger, default=None)
    chat_template: Mapped[bool] = mapped_column(Boolean, default=False)
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)  # no FK: jobs get deleted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
