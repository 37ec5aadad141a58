"""Job events: the one way anything (the API's job service, the worker's lifecycle and sink) writes
a `job_events` row.

Choices:
- `record_event` takes a `Connection` or a `Session` (both execute a Core insert), so the service's
  ORM transactions and the worker's fenced Core transactions write the same row the same way; the
  caller's transaction decides when it commits.
- The level follows the kind (`error`/`failed` -> error, `warning` -> warning, else info) unless
  given, so the dashboard colours a row the same whoever wrote it.
- `data` goes through `json_safe`: NaN and infinities become null (Postgres JSONB and JSON clients
  refuse them), numpy/torch scalars their Python value, unknown objects their `str`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from core.models import JobEvent, utcnow

# Event kinds whose rows are shown as errors/warnings in the dashboard.
_LEVELS = {"error": "error", "failed": "error", "warning": "warning"}


def db_text(text: str) -> str:
    """`text` with NUL characters replaced by U+FFFD: Postgres text and JSONB refuse NUL, and a
    model's completion (or a user's prompt echoed in a warning) may hold one."""
    return text.replace("\x00", "\ufffd")


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats replaced by None, NUL characters by U+FFFD (`db_text`) and
    unknown objects by their `str`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return db_text(value)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, Mapping):
        return {db_text(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return json_safe(value.item())
    return db_text(str(value))


def record_event(conn: Connection | Session, job_id: str, kind: str, message: str,
                 data: Mapping[str, Any] | None = None, *, level: str | None = None) -> None:
    """Append one event row to `job_id` in the caller's transaction (not committed)."""
    conn.execute(insert(JobEvent).values(
        job_id=job_id, ts=utcnow(), kind=kind, level=level or _LEVELS.get(kind, "info"),
        message=db_text(message), data=json_safe(dict(data)) if data else None))
