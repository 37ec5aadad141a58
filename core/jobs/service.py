"""Jobs as the API sees them: create, list, get, cancel, retry, delete, events, latest metrics.

Choices:
- A job's config is validated when it is created, as the `TrainConfig` the worker will run (server
  fields filled by `core.jobs.config.resolve_train_config`, the resolution the worker uses too), so
  a bad field fails at POST time with its name. The row stores it with defaults, minus the server
  fields.
- A job no live worker can run (engine, queue, process count) is refused at creation, after its
  config is valid (`core.workers.check_capacity`; the no-live-worker policy is argued there).
- The job row and its first event are committed before the caller enqueues (enqueue after commit).
- Status changes after creation are `core.jobs.lifecycle`'s, the user's included: this module checks
  ownership and the status a request may act on, names the conflict, and calls `lifecycle.cancel`
  or `lifecycle.retry` in its transaction.
- Delete removes the rows in one transaction, then the run dir (see `delete_job`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from core import workers
from core.jobs import lifecycle
from core.jobs.config import (
    blame_model_defaults,
    check_user_config,
    filled_by_model,
    model_defaults,
    resolve_train_config,
    stored_config,
)
from core.jobs.events import record_event
from core.jobs.limits import check_job_limits, check_queue
from core.models import (
    AdvantageHistogram,
    Checkpoint,
    Job,
    JobEvent,
    Metric,
    RolloutSample,
    User,
    new_id,
)
from core.services.datasets import get_dataset
from core.services.errors import Conflict, Invalid, NotFound, QuotaExceeded
from core.services.pagination import Page, paginate
from core.services.storage import remove_tree, require_free_space
from core.settings import Settings
from core.status import ACTIVE, RETRYABLE, TERMINAL, JobKind, JobStatus

log = logging.getLogger(__name__)

QUEUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def create_job(session: Session, settings: Settings, owner: User, *, dataset_id: str, model: str,
               config: dict[str, Any], queue: str | None = None) -> Job:
    """Validate and insert a queued job with its first event; commits. The caller then enqueues it."""
    dataset = get_dataset(session, owner, dataset_id)
    queue = admit(session, settings, owner, queue, "job creation")
    check_user_config(config)
    job_id = new_id("job")
    train_config = resolve_train_config(session, settings, job_id, model, dataset, config)
    filled = filled_by_model(model_defaults(Path(train_config.model), model), config)
    try:
        check_job_limits(train_config, settings, model_path=Path(train_config.model),
                         dataset_rows=dataset.rows)
    except Invalid as exc:
        raise blame_model_defaults(exc, model, filled) from None
    waiting = workers.check_capacity(session, settings, workers.Requirement.of(train_config, queue))
    job = Job(id=job_id, owner_id=owner.id, dataset_id=dataset.id, model=model, queue=queue,
              config=stored_config(train_config), estimator=train_config.estimator[:64],
              max_steps=train_config.max_steps, status=JobStatus.queued)
    session.add(job)
    session.flush()
    record_event(session, job.id, "status", "Job created; waiting for a worker"
                 + (f" ({waiting})" if waiting else "")
                 + (f"; model {model}'s defaults set {', '.join(filled)}" if filled else ""),
                 {"status": JobStatus.queued.value, **({"model_defaults": filled} if filled else {})})
    session.commit()
    return job


def admit(session: Session, settings: Settings, owner: User, queue: str | None, what: str) -> str:
    """The queue new work of `owner` goes to, once the queue is valid, the disk has room and the
    owner is within the active-jobs quota (training jobs and evaluations alike)."""
    queue = queue or settings.worker_queue
    if not QUEUE_RE.fullmatch(queue):
        raise Invalid("queue must be 1-64 letters, digits, '.', '_' or '-'", "queue")
    check_queue(settings, queue)
    require_free_space(settings, what)
    if settings.quota_active_jobs:
        active = session.execute(select(func.count()).select_from(Job)
                                 .where(Job.owner_id == owner.id, Job.status.in_(ACTIVE))).scalar_one()
        if active >= settings.quota_active_jobs:
            raise QuotaExceeded(f"you have {active} jobs queued or running; your quota is "
                                f"{settings.quota_active_jobs} (wait for one to finish or cancel one)")
    return queue


def get_job(session: Session, owner: User, job_id: str, kind: JobKind = JobKind.train) -> Job:
    """The owner's job `job_id` of `kind`; 404 if missing, someone else's or of another kind (an
    evaluation is not a job at /v1/jobs, nor a job an evaluation at /v1/evals)."""
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner.id or job.kind != kind:
        name, param = _noun(kind)
        raise NotFound(f"no {name} {job_id!r}", param)
    return job


def _noun(kind: JobKind) -> tuple[str, str]:
    """What a user calls a row of `kind`, and its id's parameter name."""
    return ("evaluation", "eval_id") if kind == JobKind.eval else ("job", "job_id")


def list_jobs(session: Session, owner: User, *, status: str | None, after: str | None,
              limit: int, kind: JobKind = JobKind.train) -> Page[Job]:
    """The owner's jobs of `kind`, newest first, optionally only those in `status`."""
    stmt = select(Job).where(Job.owner_id == owner.id, Job.kind == kind.value)
    if status:
        if status not in JobStatus.__members__:
            raise Invalid(f"status must be one of {', '.join(JobStatus)}", "status")
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job.id, after=after, limit=limit)


def cancel_job(session: Session, owner: User, job_id: str, kind: JobKind = JobKind.train) -> Job:
    """Cancel a queued job now, or ask the worker to stop a running one; commits."""
    job = get_job(session, owner, job_id, kind)
    if job.status == JobStatus.cancelled:
        return job
    if job.status in TERMINAL:
        name, param = _noun(kind)
        raise Conflict(f"{name} {job_id!r} already {job.status}; nothing to cancel", param)
    lifecycle.cancel(session.connection(), job_id)
    session.commit()
    session.refresh(job)
    return job


def _missing_checkpoint(session: Session, settings: Settings, job_id: str) -> str | None:
    """The newest recorded checkpoint of `job_id` as `checkpoints/step-N` when its files are gone
    (deleted, a lost volume), else None. Named relative to the run dir: no server path leaks."""
    newest = session.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id)
                            .order_by(Checkpoint.step.desc()).limit(1))
    if newest is None:
        return None
    path = Path(newest.path)
    path = path if path.is_absolute() else Path(settings.storage_dir) / path
    if (path / "state.json").is_file():
        return None
    return f"checkpoints/{path.name}/state.json (step {newest.step})"


def _clear_progress(session: Session, settings: Settings, job_id: str) -> None:
    """Forget a job's training so far (metrics, histograms, checkpoints), for an explicit start
    over: a retry must never overwrite old metrics silently (issue 18)."""
    for model in (Metric, AdvantageHistogram, Checkpoint):
        session.execute(delete(model).where(model.job_id == job_id))
    session.execute(update(Job).where(Job.id == job_id).values(current_step=0))
    remove_tree(settings.job_run_dir(job_id) / "checkpoints")


def retry_job(session: Session, owner: User, job_id: str, *, settings: Settings | None = None,
              start_over: bool = False, kind: JobKind = JobKind.train) -> Job:
    """Put a failed or cancelled job back in the queue (`lifecycle.retry`); commits. The caller then
    enqueues it; the worker resumes it from its newest checkpoint.

    409 for any other status, for a job whose dataset was deleted (it could not start), and for a
    job whose newest recorded checkpoint's files are gone, naming them: resuming would restart from
    an older point and overwrite its metrics. `start_over` clears the job's metrics, histograms and
    checkpoints first and trains from step 0 (an event says so). An evaluation always starts over
    (it has no checkpoints): its results and samples so far are cleared.
    """
    job = get_job(session, owner, job_id, kind)
    name, param = _noun(kind)
    if job.status not in RETRYABLE:
        hint = "wait for it to finish or cancel it" if job.status != JobStatus.succeeded \
            else f"create a new {name}"
        raise Conflict(f"{name} {job_id!r} is {job.status}; only failed or cancelled {name}s can be "
                       f"retried ({hint})", param)
    if job.dataset_id is None:
        raise Conflict(f"the dataset of {name} {job_id!r} was deleted, so it cannot run again; upload "
                       f"the data and create a new {name}", "dataset_id")
    if kind == JobKind.eval:
        for model in (Metric, RolloutSample):
            session.execute(delete(model).where(model.job_id == job_id))
        session.execute(update(Job).where(Job.id == job_id).values(current_step=0))
        record_event(session, job_id, "start_over", "retry requested: results and samples cleared; "
                     "evaluating again from the first row")
    elif settings is not None:
        if start_over:
            _clear_progress(session, settings, job_id)
            record_event(session, job_id, "start_over",
                         "retry requested from step 0: earlier metrics and checkpoints cleared")
        elif missing := _missing_checkpoint(session, settings, job_id):
            raise Conflict(f"job {job_id!r} cannot resume: its checkpoint {missing} is missing; "
                           "retry with start_over=true to clear its metrics and train from step 0",
                           "job_id")
    if lifecycle.retry(session.connection(), job_id) is None:  # retried or deleted concurrently
        session.rollback()
        raise Conflict(f"{name} {job_id!r} changed while being retried; read it again", param)
    session.commit()
    session.refresh(job)
    return job


def delete_job(session: Session, settings: Settings, owner: User, job_id: str,
               kind: JobKind = JobKind.train) -> None:
    """Delete a finished job: its row and everything it owns, then its run dir; commits.

    409 for a queued or running job (cancel it first). The rows go in one transaction: one
    conditional DELETE of the job (still finished, so it cannot race a retry), whose ON DELETE
    CASCADE takes its events, metrics, histograms, samples and checkpoint rows (migration 0001).
    Then the run dir (`Settings.job_run_dir`: checkpoints, logs) is removed (an evaluation has
    none).

    Rows first, files second, because only the rows are visible: once they are committed the job is
    gone from every API read, and a run dir that outlives them (a removal that failed, logged with
    its path, or a crash in between) is an orphan nothing points to, harmless and removable by hand.
    The reverse order could leave, on a failed commit, a job whose checkpoints list archives that no
    longer exist. So a failed removal is logged and the delete still succeeds: the job is gone.
    """
    job = get_job(session, owner, job_id, kind)
    name, param = _noun(kind)
    if job.status not in TERMINAL:
        route = "evals" if kind == JobKind.eval else "jobs"
        raise Conflict(f"{name} {job_id!r} is {job.status}; cancel it first (POST /v1/{route}/"
                       f"{job_id}/cancel), then delete it once it has stopped", param)
    # Session.execute is typed as returning Result; for a DELETE it is a CursorResult (rowcount).
    deleted = cast(CursorResult[Any], session.execute(
        delete(Job).where(Job.id == job_id, Job.status.in_([str(s) for s in TERMINAL]))
        .execution_options(synchronize_session=False))).rowcount
    if deleted != 1:  # retried or deleted by a concurrent request
        session.rollback()
        raise Conflict(f"{name} {job_id!r} changed while being deleted; read it again", param)
    session.commit()
    run_dir = settings.job_run_dir(job_id)
    if run_dir.parent.resolve() == settings.jobs_dir.resolve() and (problem := remove_tree(run_dir)):
        log.warning("job %s deleted but its run dir was not removed: %s", job_id, problem)


def list_events(session: Session, job: Job, *, after: int | None, limit: int,
                exclude_kinds: tuple[str, ...] = ()) -> tuple[list[JobEvent], bool]:
    """Events of `job` with id > `after`, oldest first, and whether more follow."""
    stmt = select(JobEvent).where(JobEvent.job_id == job.id)
    if exclude_kinds:
        stmt = stmt.where(JobEvent.kind.not_in(exclude_kinds))
    if after is not None:
        stmt = stmt.where(JobEvent.id > after)
    events = list(session.scalars(stmt.order_by(JobEvent.id).limit(limit + 1)))
    return events[:limit], len(events) > limit


def latest_metrics(session: Session, job_ids: Iterable[str]) -> dict[str, dict[str, float | None]]:
    """job id -> {name: value} at that job's last logged step.

    Two indexed queries, never a scan of a job's points: the last step of each job (a backward probe
    of the (job_id, step) index, correlated on the few job rows), then the rows at those steps."""
    job_ids = list(job_ids)
    result: dict[str, dict[str, float | None]] = {job_id: {} for job_id in job_ids}
    if not job_ids:
        return result
    last_step = select(func.max(Metric.step)).where(Metric.job_id == Job.id).scalar_subquery()
    last = [(job_id, step) for job_id, step in session.execute(
        select(Job.id, last_step).where(Job.id.in_(job_ids))) if step is not None]
    if not last:
        return result
    rows = session.execute(select(Metric.job_id, Metric.name, Metric.value).where(
        or_(*[and_(Metric.job_id == job_id, Metric.step == step) for job_id, step in last])))
    for job_id, name, value in rows:
        result[job_id][name] = value if value is None or math.isfinite(value) else None
    return result
