"""Health: the only route without authentication."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

import api
from api.deps import SessionDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(session: SessionDep):
    """Liveness plus a database round trip; 503 when the database does not answer."""
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy", never a 500
        body = Health(status="degraded", database=f"error: {type(exc).__name__}", version=api.__version__)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", database="ok", version=api.__version__)
