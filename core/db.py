"""Engines and sessions for the API, the worker and the CLI.

Choices:
- One engine per database URL per process (`get_engine`), created lazily: Celery forks workers, and
  an engine must not cross a fork with open connections.
- SQLite gets WAL, a 30 s busy timeout and enforced foreign keys, because the embedded stack has an
  API process and a worker process writing to the same file.
- Postgres gets `pool_pre_ping` so a database restart (issue 8) costs a reconnect, not an error.
- `session_scope()` commits on success and rolls back on any exception, so nothing is half written.
- `migrate(url)` runs the Alembic migrations: the only way the schema is created.
- `run_in_transaction` retries connection-level failures (`OperationalError`, `InterfaceError`, an
  invalidated connection: a database restart, SQLite's "database is locked") with exponential
  backoff; anything else (a constraint violation, a bug) is raised at once: retrying would not
  change it. `upsert` is the dialect's `INSERT .. ON CONFLICT DO UPDATE` (Postgres and SQLite share
  the syntax), so a row written twice (a retry after a lost acknowledgement) leaves one row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_engines: dict[str, Engine] = {}
_lock = Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20,
                pool_timeout: float = 30.0) -> Engine:
    """A new engine for `url` with the per-backend settings described in the module docstring;
    the pool's size and checkout timeout come from the caller (the API sizes them from Settings)."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            pool = {}  # one shared in-memory connection: no queue pool to size
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: `Settings.database_url`)."""
    url = url or get_settings().database_url
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def dispose_engines() -> None:
    """Close every pooled connection (call after fork and at test teardown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    """A sessionmaker bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# A full disk is no outage that waiting fixes on its own: fail the job now, with the reason, rather
# than retry for `retry_seconds` (issue 18).
DISK_FULL = ("database or disk is full", "no space left on device", "disk full")


def is_transient(exc: BaseException) -> bool:
    """True for failures that a new connection a little later can fix (not a full disk)."""
    if any(marker in str(exc).lower() for marker in DISK_FULL):
        return False
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def run_in_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    retry_seconds: float = 900.0,
    what: str = "database write",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `work(conn)` in one transaction, retrying transient failures with exponential backoff.

    Backoff starts at 0.1 s, doubles up to 10 s, with +-25 % jitter so several workers coming back
    after a database restart do not reconnect in lockstep. Gives up (re-raises) after `retry_seconds`.
    """
    deadline = time.monotonic() + retry_seconds
    delay = 0.1
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.begin() as conn:
                return work(conn)
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, 10.0)


def upsert(engine: Engine, model: type, keys: list[str], values: list[str]):
    """`INSERT .. ON CONFLICT (keys) DO UPDATE SET values = excluded.values` for this dialect."""
    dialect = engine.dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(model)
    elif dialect == "sqlite":
        stmt = sqlite.insert(model)
    else:  # pragma: no cover - the platform supports these two (DESIGN.md section 5)
        raise ValueError(f"unsupported database dialect {dialect!r}; use postgresql or sqlite")
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={name: stmt.excluded[name] for name in values}
    )


def alembic_config(url: str | None = None):
    """An Alembic `Config` pointing at the packaged `migrations/` and at `url`."""
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return config


def sqlite_problem(url: str) -> str | None:
    """Why the SQLite file at `url` cannot be used (not a database, corrupted pages), or None; None
    too for other backends and for a file that does not exist yet. `PRAGMA quick_check` reads
    every page once: seconds even for a large file, and only `basis up` calls it."""
    import sqlite3

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    return None if verdict == "ok" else str(verdict).splitlines()[0]


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (Alembic)."""
    from alembic import command

    url = url or get_settings().database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
