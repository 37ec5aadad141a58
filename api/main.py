"""The FastAPI application: `create_app()` for tests and embedding, `app` for uvicorn.

`create_app(settings=None, enqueue=None)`: settings default to the process-wide `Settings`;
`enqueue(job_id, queue)` defaults to `core.queue.enqueue_job` on the settings' broker, which sends
the task by name: the API never imports the worker. `app` is built on first access, so importing
this module touches neither the disk nor the database.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI

import api
from api import errors
from api.middleware import BodyLimitMiddleware, LoadShedMiddleware
from api.routes import (
    components,
    datasets,
    evals,
    health,
    inspection,
    jobs,
    model_pulls,
    models,
    outputs,
    workers,
)
from core.db import make_engine, session_factory
from core.queue import enqueue_job
from core.services.model_store import ModelPulls
from core.settings import Settings, get_settings

Enqueue = Callable[[str, str], object]


def create_app(settings: Settings | None = None, enqueue: Enqueue | None = None) -> FastAPI:
    """A configured application with every /v1 router and the error handlers."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # The pool sync routes run in (anyio's default limiter, 40 unless configured).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        await anyio.to_thread.run_sync(_app.state.model_pulls.clean)  # a killed pull's leftovers
        yield

    app = FastAPI(title="BASIS platform", version=api.__version__, lifespan=lifespan,
                  description="RLVR training jobs with BASIS advantage estimation. "
                              "Authenticate with `Authorization: Bearer <key>`.")
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow, pool_timeout=settings.db_pool_timeout)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = session_factory(engine)
    # Health checks get their own connection and threads: they answer while requests queue.
    app.state.health_engine = make_engine(settings.database_url, pool_size=1, max_overflow=1,
                                          pool_timeout=2.0)
    app.state.enqueue = enqueue or partial(enqueue_job, settings=settings)
    app.state.model_pulls = ModelPulls(settings, app.state.sessionmaker,
                                       max_active=settings.model_max_active_pulls)
    v1 = APIRouter(prefix="/v1")
    for module in (health, datasets, model_pulls, models, components, jobs, outputs, inspection,
                   evals, workers):
        v1.include_router(module.router)
    app.include_router(v1)
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(LoadShedMiddleware, settings=settings)  # outermost: sheds before parsing
    return app


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
