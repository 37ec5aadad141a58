"""Evaluations: create, list, get, cancel, retry, delete, samples, events (the job lifecycle,
`kind` "eval")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.deps import CurrentUser, EnqueueDep, SessionDep, SettingsDep
from api.routes.jobs import send
from api.schemas import (
    ErrorBody,
    EvalCreate,
    EvalPublic,
    EvalResults,
    EvalSamplePublic,
    EvalSamplesPublic,
    EvalsPublic,
    EventPublic,
    EventsPublic,
)
from core.jobs import evals as service
from core.jobs.service import cancel_job, delete_job, latest_metrics, list_events, retry_job
from core.models import Job
from core.services.inspection import PROGRESS
from core.status import JobKind, JobStatus
from trainer.config import MAX_EVAL_ROWS

router = APIRouter(prefix="/evals", tags=["evals"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 422)}


def to_public(session: Session, evals: list[Job]) -> list[EvalPublic]:
    latest = latest_metrics(session, [e.id for e in evals])
    out = []
    for job in evals:
        found = service.results(latest[job.id])
        results = EvalResults.model_validate(found) if found is not None else None
        out.append(EvalPublic.model_validate(job).model_copy(update={"results": results}))
    return out


@router.post("", response_model=EvalPublic, status_code=201, responses=ERRORS)
def create_eval(body: EvalCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                enqueue: EnqueueDep) -> EvalPublic:
    """Evaluate a model on a dataset; queued for the workers like a training job."""
    options = body.model_dump(exclude={"model", "dataset_id", "queue"}, exclude_unset=True)
    job = service.create_eval(session, settings, user, model=body.model, dataset_id=body.dataset_id,
                              options=options, queue=body.queue)
    send(session, enqueue, job)
    return to_public(session, [job])[0]


@router.get("", response_model=EvalsPublic, responses=ERRORS)
def list_evals(user: CurrentUser, session: SessionDep,
               status: Annotated[JobStatus | None, Query()] = None,
               limit: Annotated[int, Query(ge=1, le=100)] = 20,
               after: Annotated[str | None, Query(max_length=64)] = None) -> EvalsPublic:
    """Your evaluations, newest first, optionally filtered by status."""
    page = service.list_evals(session, user, status=status, after=after, limit=limit)
    return EvalsPublic(data=to_public(session, page.data), has_more=page.has_more,
                       next_cursor=page.next_cursor)


@router.get("/{eval_id}", response_model=EvalPublic, responses=ERRORS)
def get_eval(eval_id: str, user: CurrentUser, session: SessionDep) -> EvalPublic:
    """One evaluation, with its results so far."""
    return to_public(session, [service.get_eval(session, user, eval_id)])[0]


@router.post("/{eval_id}/cancel", response_model=EvalPublic, responses=ERRORS)
def cancel_eval(eval_id: str, user: CurrentUser, session: SessionDep) -> EvalPublic:
    """Cancel an evaluation: at once if queued, after the current batch if running."""
    return to_public(session, [cancel_job(session, user, eval_id, JobKind.eval)])[0]


@router.post("/{eval_id}/retry", response_model=EvalPublic, responses=ERRORS)
def retry_eval(eval_id: str, user: CurrentUser, session: SessionDep,
               enqueue: EnqueueDep) -> EvalPublic:
    """Re-queue a failed or cancelled evaluation; it runs again from its first row (its results
    and samples so far are cleared)."""
    job = retry_job(session, user, eval_id, kind=JobKind.eval)
    send(session, enqueue, job)
    return to_public(session, [job])[0]


@router.delete("/{eval_id}", status_code=204, response_class=Response, responses=ERRORS)
def delete_eval(eval_id: str, user: CurrentUser, session: SessionDep,
                settings: SettingsDep) -> Response:
    """Delete a finished evaluation with its results, samples and events (409 while active)."""
    delete_job(session, settings, user, eval_id, JobKind.eval)
    return Response(status_code=204)


@router.get("/{eval_id}/samples", response_model=EvalSamplesPublic, responses=ERRORS)
def list_samples(eval_id: str, user: CurrentUser, session: SessionDep,
                 row: Annotated[int | None, Query(ge=0, lt=MAX_EVAL_ROWS, description="Only this row.")] = None,
                 after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> EvalSamplesPublic:
    """Per-row completions and their rewards, in row order."""
    job = service.get_eval(session, user, eval_id)
    k = max(1, int(job.config.get("samples_per_prompt", 1)))
    rows, has_more = service.list_samples(session, job, row=row, after=after, limit=limit)
    data = [EvalSamplePublic(id=r.id, eval_id=job.id, row=r.index // k, sample=r.index % k,
                             prompt_id=r.prompt_id, prompt=r.prompt, completion=r.completion,
                             answer=r.answer, reward=r.reward, finish_reason=r.finish_reason)
            for r in rows]
    return EvalSamplesPublic(data=data, has_more=has_more,
                             next_cursor=str(rows[-1].id) if has_more else None)


@router.get("/{eval_id}/events", response_model=EventsPublic, responses=ERRORS)
def list_eval_events(eval_id: str, user: CurrentUser, session: SessionDep,
                     after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> EventsPublic:
    """Lifecycle events of an evaluation (status changes, warnings, errors), oldest first."""
    job = service.get_eval(session, user, eval_id)
    events, has_more = list_events(session, job, after=after, limit=limit, exclude_kinds=(PROGRESS,))
    data = [EventPublic(id=e.id, job_id=e.job_id, created_at=e.ts, ts=e.ts, kind=e.kind,
                        level=e.level, message=e.message, data=e.data) for e in events]
    return EventsPublic(data=data, has_more=has_more,
                        next_cursor=str(events[-1].id) if has_more else None)
