"""A fresh database built by the migrations, for tests (tests/conftest.py) and benchmarks alike.

PostgreSQL: a new schema in the given database, reached through `search_path` in the URL, so many
runs share one server without seeing each other's rows; dropped on exit. SQLite: a new file in a
temporary directory.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.db import dispose_engines, migrate


@contextmanager
def fresh_postgres_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """A URL whose connections see only a fresh, migrated schema of `url`'s database."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    fresh = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        fresh_url = fresh.render_as_string(hide_password=False)
        migrate(fresh_url)
        yield fresh_url
    finally:
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def fresh_database(url: str, prefix: str = "bench") -> Iterator[str]:
    """A fresh migrated database of `url`'s kind: a schema (PostgreSQL) or a temporary file (SQLite)."""
    if make_url(url).get_backend_name() != "sqlite":
        with fresh_postgres_schema(url, prefix) as fresh:
            yield fresh
        return
    with tempfile.TemporaryDirectory(prefix=f"basis-{prefix}-") as tmp:
        fresh = f"sqlite:///{tmp}/{prefix}.sqlite"
        migrate(fresh)
        try:
            yield fresh
        finally:
            dispose_engines()
