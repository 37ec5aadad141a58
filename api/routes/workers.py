"""Workers: the registry of live workers and what they can run (core/workers.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.schemas import ErrorBody, WorkerPublic, WorkersPublic
from core import workers as service

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkersPublic, responses={401: {"model": ErrorBody}})
def list_workers(user: CurrentUser, session: SessionDep, settings: SettingsDep,
                 include_dead: Annotated[bool, Query()] = False,
                 limit: Annotated[int, Query(ge=1, le=100)] = 100,
                 after: Annotated[str | None, Query(max_length=255)] = None) -> WorkersPublic:
    """Workers by id with their queues, engines, GPUs and process slots; live ones unless
    `include_dead`. Any user may read it: it is what their jobs can ask for."""
    page = service.list_workers(session, settings, include_dead=include_dead, after=after, limit=limit)
    data = [WorkerPublic.model_validate(w).model_copy(update={"alive": service.is_alive(w, settings)})
            for w in page.data]
    return WorkersPublic(data=data, has_more=page.has_more, next_cursor=page.next_cursor)
