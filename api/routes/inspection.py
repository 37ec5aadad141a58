"""What a job shows while it trains: rollout samples and the live log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import CurrentUser, SessionDep
from api.schemas import ErrorBody, LogLinePublic, LogLinesPublic, SamplePublic, SamplesPublic
from core.jobs.service import get_job, list_events
from core.services import inspection as service

router = APIRouter(prefix="/jobs/{job_id}", tags=["job outputs"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 422)}


@router.get("/samples", response_model=SamplesPublic, responses=ERRORS)
def list_samples(job_id: str, user: CurrentUser, session: SessionDep,
                 step: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="Only this step.")] = None,
                 after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> SamplesPublic:
    """Rollout samples (prompt, completion, reward, advantage) by step, oldest first."""
    rows, has_more = service.list_samples(session, get_job(session, user, job_id), step=step,
                                          after=after, limit=limit)
    return SamplesPublic(data=[SamplePublic.model_validate(r) for r in rows], has_more=has_more,
                         next_cursor=str(rows[-1].id) if has_more else None)


@router.get("/logs", response_model=LogLinesPublic, responses=ERRORS)
def read_logs(job_id: str, user: CurrentUser, session: SessionDep,
              after: Annotated[int | None, Query(ge=0, le=2**62, description="Last line id seen.")] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> LogLinesPublic:
    """The job's log: status changes, one progress line per step (reward, accuracy, ETA), warnings
    and errors, oldest first; poll with `after` = the last id to follow it."""
    events, has_more = list_events(session, get_job(session, user, job_id), after=after, limit=limit)
    data = [LogLinePublic(id=e.id, ts=e.ts, level=e.level, kind=e.kind, line=service.log_line(e))
            for e in events]
    return LogLinesPublic(data=data, has_more=has_more,
                          next_cursor=str(events[-1].id) if has_more else None)
