"""Jobs: create, list, get, cancel, retry, delete, events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.deps import CurrentUser, EnqueueDep, SessionDep, SettingsDep
from api.schemas import ErrorBody, EventPublic, EventsPublic, JobCreate, JobPublic, JobsPublic
from core.jobs import service
from core.jobs.events import record_event
from core.models import Job
from core.services.inspection import PROGRESS
from core.status import JobStatus

log = logging.getLogger("api")
router = APIRouter(prefix="/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 422)}


def to_public(session: Session, jobs: list[Job]) -> list[JobPublic]:
    latest = service.latest_metrics(session, [job.id for job in jobs])
    return [JobPublic.model_validate(job).model_copy(update={"latest_metrics": latest[job.id]})
            for job in jobs]


@router.post("", response_model=JobPublic, status_code=201, responses=ERRORS)
def create_job(body: JobCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep,
               enqueue: EnqueueDep) -> JobPublic:
    """Create a training job; it is queued once its row is committed."""
    job = service.create_job(session, settings, user, dataset_id=body.dataset_id, model=body.model,
                             config=body.config, queue=body.queue)
    send(session, enqueue, job)
    return to_public(session, [job])[0]


def send(session: Session, enqueue: Callable[[str, str], object], job: Job) -> None:
    """Enqueue a committed queued job; a failure is an event, not an error."""
    try:
        enqueue(job.id, job.queue)
    except Exception as exc:  # the row is the source of truth; queued jobs are re-enqueued at startup
        log.warning("enqueue of %s failed: %s", job.id, exc)
        record_event(session, job.id, "enqueue_failed", f"Could not reach the queue: {exc}",
                     level="warning")
        session.commit()


@router.get("", response_model=JobsPublic, responses=ERRORS)
def list_jobs(user: CurrentUser, session: SessionDep,
              status: Annotated[JobStatus | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              after: Annotated[str | None, Query(max_length=64)] = None) -> JobsPublic:
    """Your jobs, newest first, optionally filtered by status."""
    page = service.list_jobs(session, user, status=status, after=after, limit=limit)
    return JobsPublic(data=to_public(session, page.data), has_more=page.has_more,
                      next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS)
def get_job(job_id: str, user: CurrentUser, session: SessionDep) -> JobPublic:
    """One job, with its latest metrics."""
    return to_public(session, [service.get_job(session, user, job_id)])[0]


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=ERRORS)
def cancel_job(job_id: str, user: CurrentUser, session: SessionDep) -> JobPublic:
    """Cancel a job: at once if queued, at the next step if running."""
    return to_public(session, [service.cancel_job(session, user, job_id)])[0]


@router.post("/{job_id}/retry", response_model=JobPublic, responses=ERRORS)
def retry_job(job_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep,
              enqueue: EnqueueDep, start_over: bool = False) -> JobPublic:
    """Re-queue a failed or cancelled job; the worker resumes it from its newest checkpoint (409 if
    its files are gone), or from step 0 with `start_over=true` (earlier metrics cleared)."""
    job = service.retry_job(session, user, job_id, settings=settings, start_over=start_over)
    send(session, enqueue, job)
    return to_public(session, [job])[0]


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=ERRORS)
def delete_job(job_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete a finished job with its events, metrics, checkpoints and run dir (409 while active)."""
    service.delete_job(session, settings, user, job_id)
    return Response(status_code=204)


@router.get("/{job_id}/events", response_model=EventsPublic, responses=ERRORS)
def list_events(job_id: str, user: CurrentUser, session: SessionDep,
                after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> EventsPublic:
    """Events of a job, oldest first, after event id `after` (step progress lines are in /logs)."""
    job = service.get_job(session, user, job_id)
    events, has_more = service.list_events(session, job, after=after, limit=limit,
                                           exclude_kinds=(PROGRESS,))
    data = [EventPublic(id=e.id, job_id=e.job_id, created_at=e.ts, ts=e.ts, kind=e.kind,
                        level=e.level, message=e.message, data=e.data) for e in events]
    return EventsPublic(data=data, has_more=has_more,
                        next_cursor=str(events[-1].id) if has_more else None)
