"""Dependencies as `Annotated` aliases that routes take as plain parameters.

`CurrentUser` is the only way a `/v1` route learns who is calling; a route that does not take it is
public, and tests/api/test_auth.py fails for any such route except health.

A sync route and its `yield` session run in the thread pool; the session takes a connection only
in the route's own thread, and its close needs no pool token (FastAPI runs a yield dependency's exit
without the limiter), so a request never holds a connection while it waits for a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from core.models import User
from core.services import keys
from core.services.errors import Forbidden, Unauthorized
from core.services.model_store import ModelPulls
from core.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key from `basis admin create-key`.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_current_user(request: Request,
                     credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> User:
    if credentials is None:
        raise Unauthorized("missing API key; send 'Authorization: Bearer <key>'")
    # Its own session, closed before this dependency returns: a connection held from here until
    # the route's session closes would wait for a free thread to run the route, while every
    # thread waits for a connection (the FastAPI/SQLAlchemy deadlock of fastapi#3205, issue 18).
    with request.app.state.sessionmaker() as session:
        user = keys.authenticate(session, credentials.credentials)
    if user is None:
        raise Unauthorized("invalid or revoked API key")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("this route is for administrators; `basis admin set-admin NAME` makes a "
                        "user one")
    return user


# Admin-only routes take this instead of CurrentUser: 401 without a valid key, 403 for a non-admin.
AdminUser = Annotated[User, Depends(get_admin_user)]


def get_enqueue(request: Request):
    """The function that sends a committed job to the workers: `enqueue(job_id, queue)`."""
    return request.app.state.enqueue


EnqueueDep = Annotated[Callable[[str, str], object], Depends(get_enqueue)]


def get_model_pulls(request: Request) -> ModelPulls:
    """The pulls running in this API process (core/services/model_store.py)."""
    return request.app.state.model_pulls


ModelPullsDep = Annotated[ModelPulls, Depends(get_model_pulls)]
