"""Job status machine, leases and checkpoint rows: every change to a `jobs` row after its creation,
whether a worker makes it (claim, heartbeat, transition, release) or a user (cancel, retry).

Status: `queued -> starting -> estimating_priors -> running -> succeeded | failed | cancelled`
(estimators without priors skip `estimating_priors`; any active status may go to failed or
cancelled; the table is `core.status.TRANSITIONS`). The claim of a `queued` job moves it to
`starting` in the claim's own transaction, so a claimed job never shows `queued` (issue 18).
Each accepted transition writes its event row in the same transaction, so the events never
disagree with the status. A transition that is not allowed from
the current status (the trainer announcing `estimating_priors` again after a resume, a second
`succeeded`) is ignored, not an error: the worker must be safe to replay.

The user's two moves: `cancel` makes a queued job cancelled at once (one conditional UPDATE), or
sets `cancel_requested` on a started one, which its worker reads before each step. `retry` moves a
failed or cancelled job back to `queued`, bumping the lease epoch and backdating the heartbeat to
`RELEASED_AT` (as `release` does), so the next delivery claims it at once and resumes it.

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
a transaction that first checks `lease_epoch` still equals its value (`hold_lease`). A stale
owner's write fails with `LeaseLost`, rolls back, and the worker stops the job without writing
anything more: the rows are the new owner's alone. On PostgreSQL the fencing UPDATE also holds the
row lock until commit, so a claim cannot slip between the check and the writes after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from core.db import upsert
from core.jobs.events import record_event
from core.models import Checkpoint, Job, JobEvent, new_id, utcnow
from core.status import ACTIVE, RETRYABLE, TERMINAL, TRANSITIONS, JobStatus

# The heartbeat of a released or retried job: long past, so the next delivery may claim it at once.
RELEASED_AT = datetime(1970, 1, 1, tzinfo=UTC)


class LeaseLost(Exception):
    """Another worker claimed the job after this one (the job's `lease_epoch` moved past ours).

    Nothing of the transaction that found out was written. The job belongs to the new owner: this
    worker must stop running it and write nothing more for it, not even a `failed` status.
    """

    def __init__(self, job_id: str, epoch: int, current: int | None):
        self.job_id, self.epoch, self.current = job_id, epoch, current
        now = "the job is gone" if current is None else f"the job is at epoch {current}"
        super().__init__(f"job {job_id}: lease lost (this worker held epoch {epoch}, {now}); "
                         "another worker took it over, so this one stops without writing")


def lease_lost(conn: Connection, job_id: str, epoch: int) -> LeaseLost:
    """The `LeaseLost` to raise after a fenced UPDATE matched no row (reads the current epoch)."""
    return LeaseLost(job_id, epoch, conn.scalar(select(Job.lease_epoch).where(Job.id == job_id)))


def hold_lease(conn: Connection, job_id: str, epoch: int) -> None:
    """First statement of a fenced transaction: refresh the heartbeat if `epoch` is still the
    job's lease, else raise `LeaseLost` (which rolls the transaction back)."""
    changed = conn.execute(update(Job).where(Job.id == job_id, Job.lease_epoch == epoch)
                           .values(updated_at=utcnow())).rowcount
    if changed != 1:
        raise lease_lost(conn, job_id, epoch)


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
    if to not in TRANSITIONS.get(current, frozenset()):
        return None
    now = utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now,
                              "started_at": func.coalesce(Job.started_at, now)}
    if to in TERMINAL:
        values["finished_at"] = now
        values["error"] = error
    changed = conn.execute(
        update(Job).where(Job.id == job_id, Job.status == current).values(**values)
    ).rowcount
    if changed != 1:  # another writer moved it between our read and our update
        return None
    text = f"status {current} -> {to}" + (f": {message}" if message else "")
    level = "error" if to == JobStatus.failed else "info"
    record_event(conn, job_id, "status", text, {"status": to, "from": current, **(data or {})},
                 level=level)
    return current


def claim(conn: Connection, job_id: str, *, stale_after_seconds: float) -> Claim | None:
    """Take the lease on `job_id` if nobody live holds it (see module docstring); None otherwise."""
    row = conn.execute(
        select(Job.status, Job.started_at, Job.cancel_requested).where(Job.id == job_id)
    ).first()
    if row is None or row.status not in ACTIVE:
        return None
    now = utcnow()
    stale_before = _ago(stale_after_seconds, now)
    epoch = conn.scalar(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE),
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
        update(Job).where(Job.id == job_id, Job.lease_epoch == epoch, Job.status.in_(ACTIVE))
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


def release_all(conn: Connection) -> list[str]:
    """Release every started active job at once; returns their ids. Only for a supervisor that
    knows the worker holding them is dead and was the only one (`basis up` on the embedded broker):
    the next delivery then resumes them without waiting for their heartbeats to go stale."""
    ids = list(conn.scalars(select(Job.id).where(Job.status.in_(ACTIVE),
                                                 Job.started_at.is_not(None))))
    if ids:
        conn.execute(update(Job).where(Job.id.in_(ids)).values(updated_at=RELEASED_AT))
    return ids


def cancel(conn: Connection, job_id: str) -> bool:
    """The user's cancel: True when a queued job became `cancelled` at once; False when the job had
    left `queued`, so only `cancel_requested` is set and its worker stops it at the next step."""
    now = utcnow()
    cancelled = conn.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
                             .values(status=JobStatus.cancelled.value, cancel_requested=True,
                                     finished_at=now, updated_at=now)).rowcount
    if cancelled:
        record_event(conn, job_id, "status", "Job cancelled before it started",
                     {"status": JobStatus.cancelled.value})
        return True
    # Keep updated_at: the worker uses it as its lease heartbeat.
    conn.execute(update(Job).where(Job.id == job_id)
                 .values(cancel_requested=True, updated_at=Job.updated_at))
    record_event(conn, job_id, "cancel_requested", "Cancel requested; the worker stops at the next step")
    return False


def retry(conn: Connection, job_id: str) -> str | None:
    """The user's retry: move a failed or cancelled job back to `queued`; returns the status it
    left, or None when it is not (or no longer) retryable (nothing is written then).

    `error`, `finished_at` and `cancel_requested` are cleared; `started_at`, the metrics and the
    checkpoints are kept, so the claim that follows resumes the run. The lease epoch goes up by one,
    fencing off a worker still winding down the old run, and the heartbeat is set to `RELEASED_AT`
    so that claim need not wait for the stale limit."""
    current = conn.scalar(select(Job.status).where(Job.id == job_id))
    if current not in RETRYABLE:
        return None
    changed = conn.execute(
        update(Job).where(Job.id == job_id, Job.status == current)
        .values(status=JobStatus.queued.value, error=None, finished_at=None, cancel_requested=False,
                lease_epoch=Job.lease_epoch + 1, updated_at=RELEASED_AT)).rowcount
    if changed != 1:  # retried or deleted by a concurrent request
        return None
    record_event(conn, job_id, "status", f"status {current} -> queued: retry requested; waiting for "
                 "a worker", {"status": JobStatus.queued.value, "from": current, "retry": True})
    return current


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
        select(Job.id, Job.queue).where(Job.status.in_(ACTIVE), condition).order_by(Job.id)
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
