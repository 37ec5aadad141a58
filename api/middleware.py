"""Request body limits enforced while the body streams in, before any parsing.

A declared `Content-Length` over the limit is refused at once; a body without one (chunked) is
counted as it arrives and cut off at the limit. Uploads to `POST /v1/datasets` get the upload limit
plus room for the multipart envelope; every other request gets `max_request_bytes`.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings

MULTIPART_OVERHEAD = 64 * 1024


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings):
        self.app = app
        self.settings = settings  # read per request, so the limits follow the settings object

    def _limit(self, scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/datasets":
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
    body = json.dumps({"error": {"code": "too_large", "message": message, "param": "file"}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
