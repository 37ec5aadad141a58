"""Service fixtures shared by every test package: real PostgreSQL, Redis and SQLite, no mocks.

- `postgres_url` / `redis_url`: the servers at `BASIS_TEST_POSTGRES_URL` / `BASIS_TEST_REDIS_URL`.
  Unreachable -> the test is skipped with how to start it; with `CI=true` it fails instead, so CI
  can never go green by skipping.
- `db_url`: parametrised over SQLite and PostgreSQL; each test gets a fresh database built by the
  Alembic migrations (SQLite: a copy of a database migrated once per session; PostgreSQL: a new
  schema, migrated, dropped afterwards).
- `settings`: a `Settings` whose data, storage and model roots live in the test's tmp dir.
- `hub`: a Hugging Face hub on localhost (tests/hub_server.py) with HF_ENDPOINT pointing at it.
"""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import create_engine, text

from benchmarks.fresh_db import fresh_postgres_schema
from core.db import dispose_engines, migrate
from core.settings import Settings
from tests.hub_server import hub, tiny_model_files  # noqa: F401 - fixtures: a local HF hub (issue 16)

POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/15"


def _unavailable(what: str, url: str, exc: Exception) -> None:
    message = f"start {what} on {url} (or point the env var at one): {type(exc).__name__}: {exc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("BASIS_TEST_POSTGRES_URL", POSTGRES_DEFAULT)
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        _unavailable("PostgreSQL", url, exc)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("BASIS_TEST_REDIS_URL", REDIS_DEFAULT)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:
        _unavailable("Redis", url, exc)
    return url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite"
    migrate(f"sqlite:///{path}")
    dispose_engines()
    return str(path)


@pytest.fixture
def postgres_schema_url(postgres_url):
    """A URL whose connections see only a fresh, migrated schema (dropped after the test)."""
    with fresh_postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, _sqlite_template):
    if request.param == "sqlite":
        path = tmp_path / "basis.sqlite"
        shutil.copyfile(_sqlite_template, path)
        yield f"sqlite:///{path}"
        dispose_engines()
    else:
        yield request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url,
                    model_roots=[tmp_path / "models"], api_key=None)


@pytest.fixture
def model_dir(settings):
    """A model named "tiny" under the settings' model root (a config.json is all the API checks)."""
    path = settings.model_roots[0] / "tiny"
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen2"}')
    return path
