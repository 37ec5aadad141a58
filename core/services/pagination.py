"""Cursor pagination over time-sortable string ids: newest first, cursor = last id returned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of a list: items plus the cursor to pass as `after` for the next page."""

    data: list[T]
    has_more: bool
    next_cursor: str | None


def paginate(session: Session, stmt: Select[Any], id_column: InstrumentedAttribute, *,
             after: str | None, limit: int) -> Page:
    """Run `stmt` newest-first from just below the cursor `after`, `limit` items at a time."""
    if after:
        stmt = stmt.where(id_column < after)
    rows = list(session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, has_more, str(getattr(rows[-1], id_column.key)) if has_more else None)
