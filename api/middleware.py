"""Request body limits enforced while the body streams in, before any parsing.

A declared `Content-Length` over the limit is refused at once; a body without one (chunked) is
counted as it arrives and cut off at the limit. Uploads to `POST /v1/datasets` and
`/v1/datasets/import` get the upload limit plus room for the multipart envelope; every other
request gets `max_request_bytes`.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings

MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_PATHS = frozenset({"/v1/datasets", "/v1/datasets/import"})  # carry a dataset file


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings):
        self.app = app
        self.settings = settings  # read per request, so the limits follow the settings object

    def _limit(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS:
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD
        return self.settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        message = f"the request body is larger than the limit of {limit} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _send_413(send, message)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    raise HTTPException(413, message)  # re-raised by FastAPI's body parsing
            return event

        await self.app(scope, limited_receive, send)


async def _send_413(send: Send, message: str) -> None:
    await _send_error(send, 413, "too_large", message, "file", [(b"connection", b"close")])


async def _send_error(send: Send, status: int, code: str, message: str, param: str | None,
                      headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "param": param}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class LoadShedMiddleware:
    """Answer 503 with Retry-After at once when the API is full, instead of queueing requests
    until every client times out (issue 18). Health checks are never shed.

    Full = `api_max_inflight`, or the database pool's capacity if smaller. That bound is what
    prevents the FastAPI/SQLAlchemy deadlock (fastapi#3205, #12066): a sync route's response is
    validated in the thread pool while its `yield` session still holds a connection, so when more
    requests run than there are connections, threads block waiting for connections that are
    only returned after a thread frees up. A request holds at most one connection at a time
    (authentication closes its own session first, api/deps.py), so with no more requests in flight
    than connections no thread ever waits for one, and every thread makes progress."""

    def __init__(self, app: ASGIApp, *, settings: Settings):
        self.app = app
        self.settings = settings
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/v1/health"):
            await self.app(scope, receive, send)
            return
        s = self.settings
        if self.inflight >= min(s.api_max_inflight, s.db_pool_size + s.db_max_overflow):
            await _send_error(send, 503, "overloaded",
                              f"the server is busy ({self.inflight} requests in flight); retry shortly",
                              None, [(b"retry-after", b"1")])
            return
        self.inflight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
