"""What a user reads about a running job: its rollout samples and its log.

Choices:
- Samples page by their row id, ascending (steps are written in order, so that is step order),
  optionally only one step; a step's rows are few (`samples_per_step`, at most 64).
- The log is the job's event rows, `progress` lines included (the worker's sink writes one per
  step), each rendered as one text line; the cursor is the event id, so `after=<last id>` polls
  for new lines (follow). `GET /events` leaves the progress rows out: it is the lifecycle record.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Job, JobEvent, RolloutSample

PROGRESS = "progress"


def list_samples(session: Session, job: Job, *, step: int | None, after: int | None,
                 limit: int) -> tuple[list[RolloutSample], bool]:
    """Samples of `job` (of one `step` if given) with id > `after`, oldest first, and whether more follow."""
    stmt = select(RolloutSample).where(RolloutSample.job_id == job.id)
    if step is not None:
        stmt = stmt.where(RolloutSample.step == step)
    if after is not None:
        stmt = stmt.where(RolloutSample.id > after)
    rows = list(session.scalars(stmt.order_by(RolloutSample.id).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def log_line(event: JobEvent) -> str:
    """`2026-11-30 13:01:02 INFO step 3/20 reward=0.41 ...`: one event as a log line."""
    when = event.ts.strftime("%Y-%m-%d %H:%M:%S")
    text = event.message if event.kind in (PROGRESS, "status") else f"[{event.kind}] {event.message}"
    return f"{when} {event.level.upper():<7} {text}"
