"""Jobs: create (validated TrainConfig), list, get, cancel, events, latest metrics.

Choices:
- The API validates the full `TrainConfig` the worker will run, with the server-side fields
  (`model`, `dataset`, `output_dir`) filled in, so a bad field fails at POST time with its name.
  The stored `config` is the validated config with defaults, minus those three fields; the worker
  rebuilds the full config with `train_config_for` on its own machine's paths.
- Fields that are server paths (`eval_dataset`, `priors_cache_dir`) are refused unless null: a user
  must not make the worker read or write an arbitrary file. NaN/Infinity are refused too.
- The job row and its first event are committed before the caller enqueues (enqueue after commit).
- Cancel is one conditional UPDATE: a queued job becomes cancelled at once; if the worker won the race
  and the job already started, `cancel_requested` is set and the worker stops it at the next step.
- Status transitions after creation belong to the worker (worker/lifecycle.py), except cancelling
  a job no worker has taken yet and retrying a failed or cancelled one.
- Retry is one conditional UPDATE back to `queued` (see `retry_job`): it bumps the lease epoch, so
  any late write of the worker that last held the job is refused, and backdates the heartbeat as a
  clean shutdown does, so the first delivery claims it at once and the worker resumes from the
  newest checkpoint in the run dir (the path the SIGKILL and SIGTERM recoveries take).
- Delete removes the rows in one transaction, then the run dir (see `delete_job`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from core import workers
from core.models import (
    TERMINAL_STATUSES,
    Dataset,
    Job,
    JobEvent,
    JobStatus,
    Metric,
    User,
    new_id,
    utcnow,
)
from core.services.catalog import resolve_model
from core.services.datasets import dataset_path, get_dataset
from core.services.errors import Conflict, Invalid, NotFound
from core.services.pagination import Page, paginate
from core.services.storage import remove_tree
from core.settings import Settings

log = logging.getLogger(__name__)

SERVER_FIELDS = ("model", "dataset", "output_dir")
# Paths on the server a user must not choose: reading or writing arbitrary files (issue 8).
SERVER_PATH_FIELDS = ("eval_dataset", "priors_cache_dir")
QUEUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RETRYABLE_STATUSES = (JobStatus.failed.value, JobStatus.cancelled.value)
# The heartbeat of a retried job: long past, so the next delivery may claim it at once, as after a
# clean shutdown (worker/lifecycle.py RELEASED_AT; core never imports worker).
RELEASED_AT = datetime(1970, 1, 1, tzinfo=UTC)


def _param_of(error: dict[str, Any]) -> str:
    """`config.<field path>` for one pydantic error; cross-field errors name their field first."""
    loc = ".".join(map(str, error["loc"]))
    if not loc:
        match = re.match(r"(?:Value error, )?([a-z_][a-z0-9_.]*): ", error.get("msg", ""))
        loc = match.group(1) if match else ""
    return f"config.{loc}" if loc else "config"


def _non_finite(value: Any, path: str) -> str | None:
    """Path of the first NaN/Infinity in a JSON value (Python's json accepts them; JSON does not).

    Iterative: the body's nesting is bounded only by the request size."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((child, f"{where}.{key}") for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in reversed(list(enumerate(item))))
    return None


def validate_train_config(config: dict[str, Any], *, model_path: str, dataset_file: str,
                          output_dir: str) -> Any:
    """The validated `TrainConfig` for `config` plus the server-side fields; Invalid names the field."""
    from trainer.config import TrainConfig, format_validation_error

    # A null path field is allowed: it is what GET /v1/jobs/{id} returns, so configs round-trip.
    for key in (*SERVER_FIELDS, *SERVER_PATH_FIELDS):
        if key in config and (key in SERVER_FIELDS or config[key] is not None):
            raise Invalid(f"config.{key} is chosen by the server; leave it out", f"config.{key}")
    if bad := _non_finite(config, "config"):
        raise Invalid(f"{bad} must be a finite number (NaN and Infinity are not JSON)", bad)
    try:
        train_config = TrainConfig.model_validate(
            {**config, "model": model_path, "dataset": dataset_file, "output_dir": output_dir})
        train_config.check_paths()
    except ValidationError as exc:
        message = format_validation_error(exc, "config").replace("\n", "; ")
        raise Invalid(message, _param_of(exc.errors()[0])) from None
    except (ValueError, TypeError) as exc:  # ConfigError from check_paths, or a stray validator
        raise Invalid(f"invalid config: {exc}", "config") from None
    return train_config


def _estimator_name(train_config: Any) -> str:
    estimator = getattr(train_config, "estimator", "unknown")
    return str(getattr(estimator, "name", estimator))[:64]


def create_job(session: Session, settings: Settings, owner: User, *, dataset_id: str, model: str,
               config: dict[str, Any], queue: str | None = None) -> Job:
    """Validate and insert a queued job with its first event; commits. The caller then enqueues it."""
    dataset = get_dataset(session, owner, dataset_id)
    model_path = resolve_model(settings, model)
    queue = queue or settings.worker_queue
    if not QUEUE_RE.fullmatch(queue):
        raise Invalid("queue must be 1-64 letters, digits, '.', '_' or '-'", "queue")
    job = Job(id=new_id("job"), owner_id=owner.id, dataset_id=dataset.id, model=model, queue=queue, config={},
              estimator="", status=JobStatus.queued)
    train_config = validate_train_config(
        config, model_path=str(model_path), dataset_file=str(dataset_path(settings, dataset)),
        output_dir=str(settings.job_run_dir(job.id)))
    waiting = workers.check_capacity(session, settings, workers.Requirement.of(train_config, queue))
    job.config = train_config.model_dump(mode="json", exclude=set(SERVER_FIELDS))
    job.estimator = _estimator_name(train_config)
    max_steps = getattr(train_config, "max_steps", None)
    job.max_steps = max_steps if isinstance(max_steps, int) else None
    session.add(job)
    session.flush()
    add_event(session, job.id, "status", "Job created; waiting for a worker"
              + (f" ({waiting})" if waiting else ""), data={"status": JobStatus.queued.value})
    session.commit()
    return job


def train_config_for(session: Session, settings: Settings, job: Job) -> dict[str, Any]:
    """The TrainConfig dict the worker runs for `job`, with this machine's model/dataset/run paths."""
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    if dataset is None:
        raise NotFound(f"the dataset of job {job.id} was deleted", "dataset_id")
    model_path = resolve_model(settings, job.model)
    return {**job.config, "model": str(model_path), "dataset": str(dataset_path(settings, dataset)),
            "output_dir": str(settings.job_run_dir(job.id))}


def get_job(session: Session, owner: User, job_id: str) -> Job:
    """The owner's job `job_id`; 404 if missing or someone else's."""
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner.id:
        raise NotFound(f"no job {job_id!r}", "job_id")
    return job


def list_jobs(session: Session, owner: User, *, status: str | None, after: str | None,
              limit: int) -> Page[Job]:
    """The owner's jobs, newest first, optionally only those in `status`."""
    stmt = select(Job).where(Job.owner_id == owner.id)
    if status:
        if status not in JobStatus.__members__:
            raise Invalid(f"status must be one of {', '.join(JobStatus)}", "status")
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job.id, after=after, limit=limit)


def add_event(session: Session, job_id: str, kind: str, message: str, *, level: str = "info",
              data: dict[str, Any] | None = None) -> JobEvent:
    """Append an event to a job (not committed)."""
    event = JobEvent(job_id=job_id, kind=kind, message=message, level=level, data=data, ts=utcnow())
    session.add(event)
    session.flush()
    return event


def cancel_job(session: Session, owner: User, job_id: str) -> Job:
    """Cancel a queued job now, or ask the worker to stop a running one; commits."""
    job = get_job(session, owner, job_id)
    if job.status == JobStatus.cancelled:
        return job
    if job.status in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} already {job.status}; nothing to cancel", "job_id")
    queued = session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
                             .values(status=JobStatus.cancelled.value, cancel_requested=True,
                                     finished_at=utcnow(), updated_at=utcnow()))
    if queued.rowcount:
        add_event(session, job_id, "status", "Job cancelled before it started",
                  data={"status": JobStatus.cancelled.value})
    else:
        # Keep updated_at: the worker uses it as its lease heartbeat.
        session.execute(update(Job).where(Job.id == job_id)
                        .values(cancel_requested=True, updated_at=Job.updated_at))
        add_event(session, job_id, "cancel_requested", "Cancel requested; the worker stops at the next step")
    session.commit()
    session.refresh(job)
    return job


def retry_job(session: Session, owner: User, job_id: str) -> Job:
    """Put a failed or cancelled job back in the queue; commits. The caller then enqueues it.

    409 for any other status, and for a job whose dataset was deleted (it could not start).
    `error`, `finished_at` and `cancel_requested` are cleared; `started_at`, the metrics and the
    checkpoints are kept: the worker's claim sees a job that started before and resumes it from
    its newest checkpoint (or from the start if it has none), rewriting replayed steps in place.
    The lease epoch goes up by one, so a worker still winding down the old run (one that claimed
    the job just before a cancel-while-queued) is fenced off, and the heartbeat is backdated so
    the claim need not wait for the stale limit.
    """
    job = get_job(session, owner, job_id)
    if job.status not in RETRYABLE_STATUSES:
        hint = "wait for it to finish or cancel it" if job.status != JobStatus.succeeded else "create a new job"
        raise Conflict(f"job {job_id!r} is {job.status}; only failed or cancelled jobs can be retried "
                       f"({hint})", "job_id")
    if job.dataset_id is None:
        raise Conflict(f"the dataset of job {job_id!r} was deleted, so it cannot run again; upload the "
                       "data and create a new job", "dataset_id")
    previous = job.status
    changed = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(RETRYABLE_STATUSES))
        .values(status=JobStatus.queued.value, error=None, finished_at=None, cancel_requested=False,
                lease_epoch=Job.lease_epoch + 1, updated_at=RELEASED_AT)).rowcount
    if changed != 1:  # retried or deleted by a concurrent request
        session.rollback()
        raise Conflict(f"job {job_id!r} changed while being retried; read it again", "job_id")
    add_event(session, job_id, "status", f"status {previous} -> queued: retry requested; waiting for "
              "a worker", data={"status": JobStatus.queued.value, "from": previous, "retry": True})
    session.commit()
    session.refresh(job)
    return job


def delete_job(session: Session, settings: Settings, owner: User, job_id: str) -> None:
    """Delete a finished job: its row and everything it owns, then its run dir; commits.

    409 for a queued or running job (cancel it first). The rows go in one transaction: one
    conditional DELETE of the job (still finished, so it cannot race a retry), whose ON DELETE
    CASCADE takes its events, metrics, histograms and checkpoint rows (migration 0001). Then the run
    dir (`Settings.job_run_dir`: checkpoints, logs) is removed.

    Rows first, files second, because only the rows are visible: once they are committed the job is
    gone from every API read, and a run dir that outlives them (a removal that failed, logged with
    its path, or a crash in between) is an orphan nothing points to, harmless and removable by hand.
    The reverse order could leave, on a failed commit, a job whose checkpoints list archives that no
    longer exist. So a failed removal is logged and the delete still succeeds: the job is gone.
    """
    job = get_job(session, owner, job_id)
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id!r} is {job.status}; cancel it first (POST /v1/jobs/{job_id}/cancel), "
                       "then delete it once it has stopped", "job_id")
    deleted = session.execute(
        delete(Job).where(Job.id == job_id, Job.status.in_([str(s) for s in TERMINAL_STATUSES]))
        .execution_options(synchronize_session=False)).rowcount
    if deleted != 1:  # retried or deleted by a concurrent request
        session.rollback()
        raise Conflict(f"job {job_id!r} changed while being deleted; read it again", "job_id")
    session.commit()
    run_dir = settings.job_run_dir(job_id)
    if run_dir.parent.resolve() == settings.jobs_dir.resolve() and (problem := remove_tree(run_dir)):
        log.warning("job %s deleted but its run dir was not removed: %s", job_id, problem)


def list_events(session: Session, job: Job, *, after: int | None, limit: int) -> tuple[list[JobEvent], bool]:
    """Events of `job` with id > `after`, oldest first, and whether more follow."""
    stmt = select(JobEvent).where(JobEvent.job_id == job.id)
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
