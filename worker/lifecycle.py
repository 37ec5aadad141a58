"""Job status machine, leases and checkpoint rows: every change a worker makes to a `jobs` row.

Status: `queued -> starting -> estimating_priors -> running -> succeeded | failed | cancelled`
(estimators without priors skip `estimating_priors`; any active status may go to failed or
cancelled). The claim of a `queued` job moves it to `starting` in the claim's own transaction. Each
accepted transition writes its event row in the same transaction, so the events never disagree
with the status. A transition that is not allowed from the current status (the trainer announcing
`estimating_priors` again after a resume, a second `succeeded`) is ignored, not an error: the worker
must be safe to replay.

Leases: which worker runs a job is decided in the database, not the broker (see worker/config.py).
`claim()` is one conditional UPDATE, so of two deliveries of the same job exactly one wins:
- a job never started (`started_at` NULL) is claimable by the first delivery;
- a started, still-active job is claimable only when its heartbeat (`updated_at`) is older than
  the stale limit: its worker died (SIGKILL, OOM kill, power loss) and this delivery resumes it.
`release()` backdates the heartbeat so the next delivery may resume at once (a clean shutdown).

Fencing: a worker that is alive but silent past the stale limit (a long GC pause, SIGSTOP, a
network partition, a database outage) loses its job to another worker without knowing it. So every
claim increments `jobs.lease_epoch` in its UPDATE and hands the new value to its worker, and every
write that worker makes for the job (heartbeat, steps, events, checkpoints, status, release) runs in
a transaction that first checks `lease_epoch` still equals its value (`hold_lease`, worker/sink.py).
A stale owner's write fails with `LeaseLost`, rolls back, and the worker stops the job without
writing anything more: the rows are the new owner's alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from core.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Checkpoint,
    Job,
    JobEvent,
    JobStatus,
    new_id,
    utcnow,
)
from core.status import TRANSITIONS
from worker.sink import LeaseLost, event_row, upsert

ALLOWED = TRANSITIONS
RELEASED_AT = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claim:
    """What a worker learns when it takes a job: whether it is a resume, and whether to cancel."""

    job_id: str
    status: str
    resumed: bool  # the job had started before: a previous worker died or shut down mid-run
    cancel_requested: bool
    epoch: int  # the job's `lease_epoch` after this claim: the token every later write must show


def transition(conn: Connection, job_id: str, to: str, *, message: str = "",
               error: str | None = None, data: dict[str, Any] | None = None) -> str | None:
    """Move `job_id` to status `to` with an event row; returns the previous status, or None if the
    move is not allowed from where the job is (nothing is written then)."""
    current = conn.scalar(select(Job.status).where(Job.id == job_id))
    if current is None:
        raise LookupError(f"job {job_id} does not exist")
    if to not in ALLOWED.get(current, frozenset()):
        return None
    now = utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now,
                              "started_at": func.coalesce(Job.started_at, now)}
    if to in TERMINAL_STATUSES:
        values["finished_at"] = now
        values["error"] = error
    changed = conn.execute(
        update(Job).where(Job.id == job_id, Job.status == current).values(**values)
    ).rowcount
    if changed != 1:  # another writer moved it between our read and our update
        return None
    text = f"status {current} -> {to}" + (f": {message}" if message else "")
    level = "error" if to == JobStatus.failed else "info"
    conn.execute(JobEvent.__table__.insert(), event_row(
        job_id, "status", text, {"status": to, "from": current, **(data or {})}, level=level))
    return current


def record_event(conn: Connection, job_id: str, kind: str, message: str,
                 data: dict[str, Any] | None = None, level: str | None = None) -> None:
    """Append one event row."""
    conn.execute(JobEvent.__table__.insert(), event_row(job_id, kind, message, data, level))


def claim(conn: Connection, job_id: str, *, stale_after_seconds: float) -> Claim | None:
    """Take the lease on `job_id` if nobody live holds it (see module docstring); None otherwise."""
    row = conn.execute(
        select(Job.status, Job.started_at, Job.cancel_requested).where(Job.id == job_id)
    ).first()
    if row is None or row.status not in ACTIVE_STATUSES:
        return None
    now = utcnow()
    stale_before = _ago(stale_after_seconds, now)
    epoch = conn.scalar(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES),
               or_(Job.started_at.is_(None), Job.updated_at < stale_before))
        .values(updated_at=now, started_at=func.coalesce(Job.started_at, now),
                lease_epoch=Job.lease_epoch + 1)
        .returning(Job.lease_epoch)
    )
    if epoch is None:
        return None
    if row.status == JobStatus.queued:  # visible at once: a cancel now reaches the worker
        transition(conn, job_id, JobStatus.starting, message="claimed by a worker")
    return Claim(job_id, row.status, resumed=row.started_at is not None,
                 cancel_requested=bool(row.cancel_requested), epoch=epoch)


def _touch(conn: Connection, job_id: str, epoch: int, when: datetime) -> None:
    """Set the heartbeat of an active job to `when` if `epoch` still holds its lease; a job that
    has finished is left alone, a lease that moved on raises `LeaseLost`."""
    changed = conn.execute(
        update(Job).where(Job.id == job_id, Job.lease_epoch == epoch, Job.status.in_(ACTIVE_STATUSES))
        .values(updated_at=when)
    ).rowcount
    if changed != 1:
        current = conn.scalar(select(Job.lease_epoch).where(Job.id == job_id))
        if current != epoch:
            raise LeaseLost(job_id, epoch, current)


def heartbeat(conn: Connection, job_id: str, epoch: int) -> None:
    """Tell other workers this job's worker (lease `epoch`) is alive."""
    _touch(conn, job_id, epoch, utcnow())


def release(conn: Connection, job_id: str, epoch: int) -> None:
    """Give lease `epoch` up now (clean shutdown): the next delivery may resume without waiting."""
    _touch(conn, job_id, epoch, RELEASED_AT)


def cancel_requested(conn: Connection, job_id: str, epoch: int | None = None) -> bool:
    """The job's cancel flag (one primary-key lookup). With `epoch`, also checks the lease is still
    held and raises `LeaseLost` when it is not (a read: nothing is written either way)."""
    row = conn.execute(select(Job.cancel_requested, Job.lease_epoch).where(Job.id == job_id)).first()
    if epoch is not None and (row is None or row.lease_epoch != epoch):
        raise LeaseLost(job_id, epoch, row.lease_epoch if row is not None else None)
    return bool(row.cancel_requested) if row is not None else False


def _ago(seconds: float, now: datetime | None = None) -> datetime:
    """The moment `seconds` before `now` (default: the current time), for `updated_at` cut-offs."""
    return datetime.fromtimestamp((now or utcnow()).timestamp() - seconds, UTC)


def orphaned_jobs(conn: Connection, *, stale_after_seconds: float,
                  include_queued: bool) -> list[tuple[str, str]]:
    """(id, queue) of jobs that need a delivery: every never-started `queued` job (when
    `include_queued`) and every active job whose heartbeat is older than the stale limit."""
    stale_before = _ago(stale_after_seconds)
    stale = and_(Job.started_at.is_not(None), Job.updated_at < stale_before)
    waiting = and_(Job.status == JobStatus.queued, Job.started_at.is_(None))
    condition = or_(stale, waiting) if include_queued else stale
    rows = conn.execute(
        select(Job.id, Job.queue).where(Job.status.in_(ACTIVE_STATUSES), condition).order_by(Job.id)
    )
    return [(row.id, row.queue) for row in rows]


def queued_jobs(conn: Connection, *, untouched_for_seconds: float) -> list[tuple[str, str]]:
    """(id, queue) of `queued` jobs whose row has not changed for `untouched_for_seconds` (the
    broker may have lost their message; worker/reconcile.py)."""
    rows = conn.execute(select(Job.id, Job.queue).where(
        Job.status == JobStatus.queued, Job.updated_at < _ago(untouched_for_seconds)).order_by(Job.id))
    return [(row.id, row.queue) for row in rows]


def directory_bytes(path: Path) -> int:
    """Total size of the files under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def record_checkpoint(conn: Connection, job_id: str, step: int, path: Path,
                      storage_dir: Path) -> None:
    """Upsert the checkpoint row for (job, step). `path` is stored relative to `storage_dir` when
    inside it, so the storage volume can be mounted elsewhere. (The trainer logs the event.)"""
    path = Path(path).resolve()
    try:
        stored = str(path.relative_to(storage_dir.resolve()))
    except ValueError:
        stored = str(path)
    size = directory_bytes(path) if path.is_dir() else (path.stat().st_size if path.exists() else 0)
    conn.execute(
        upsert(conn.engine, Checkpoint, ["job_id", "step"], ["path", "bytes", "created_at"]),
        {"id": new_id("ckpt"), "job_id": job_id, "step": int(step), "path": stored, "bytes": size,
         "created_at": utcnow()},
    )


def retried(conn: Connection, job_id: str) -> bool:
    """Whether the job's newest status event is a retry request (POST /v1/jobs/{id}/retry): the
    claim that follows resumes a run a user asked to run again, not one whose worker stopped."""
    recent = conn.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id,
                                                      JobEvent.kind == "status")
                          .order_by(JobEvent.id.desc()).limit(2))
    # The claim's own `starting` event comes after the request it answers.
    data = next((d for d in recent if not (d and d.get("status") == JobStatus.starting)), None)
    return bool(data and data.get("retry"))


def latest_checkpoint_step(conn: Connection, job_id: str) -> int | None:
    """Step of the newest recorded checkpoint of `job_id`, if any."""
    return conn.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.job_id == job_id))
