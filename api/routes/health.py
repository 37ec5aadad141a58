"""Health: the only routes without authentication.

`GET /v1/health` is cheap and never waits on the request pool: an async route (no thread-pool
token), a database round trip on the app's separate health engine in at most two threads of its
own, bounded by HEALTH_TIMEOUT_S. So it answers within seconds under any load (issue 18).

`GET /v1/health/ready` tells the truth about everything a job needs (core/services/health.py):
database read and write, broker, free disk, and every active job's heartbeat. 200 when all pass,
503 with the failing check otherwise. It names job ids and statuses, nothing else of a user's.
"""

from __future__ import annotations

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

import api
from api.schemas import Health, Readiness
from core.services.health import readiness

router = APIRouter(tags=["health"])
HEALTH_TIMEOUT_S = 3.0
_health_threads = anyio.CapacityLimiter(2)


def _ping(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def database_check(request: Request) -> str:
    """"ok", or "error: <why>" (never raises)."""
    try:
        with anyio.fail_after(HEALTH_TIMEOUT_S):
            await anyio.to_thread.run_sync(_ping, request.app.state.health_engine,
                                           limiter=_health_threads, abandon_on_cancel=True)
    except TimeoutError:
        return f"error: no answer within {HEALTH_TIMEOUT_S:.0f} s"
    except Exception as exc:  # any failure means "not healthy", never a 500
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request):
    """Liveness plus a database round trip; 503 when the database does not answer."""
    database = await database_check(request)
    if database != "ok":
        body = Health(status="degraded", database=database, version=api.__version__)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", database="ok", version=api.__version__)


@router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request):
    """Readiness: database read/write, broker, free disk, active jobs' heartbeats; 503 if any fails."""
    state = request.app.state
    try:
        with anyio.fail_after(3 * HEALTH_TIMEOUT_S):
            body = await anyio.to_thread.run_sync(readiness, state.health_engine, state.settings,
                                                  limiter=_health_threads, abandon_on_cancel=True)
    except TimeoutError:
        body = {"status": "degraded", "error": f"checks did not finish in {3 * HEALTH_TIMEOUT_S:.0f} s"}
    body["version"] = api.__version__
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
