"""`basis admin ...` against a real database: migrate, create-key (key alone on the last line), revoke."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from cli.main import main
from core.db import session_scope
from core.services.keys import authenticate
from core.settings import get_settings


@pytest.fixture
def env(monkeypatch, settings):
    monkeypatch.setenv("BASIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BASIS_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_migrate_creates_the_schema(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    assert main(["admin", "migrate", "--database-url", url]) == 0
    engine = create_engine(url)
    assert {"users", "api_keys", "jobs", "metrics", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_create_list_and_revoke_a_key(env, capsys):
    assert main(["admin", "create-key", "--name", "carol"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("bk_") and len(secret) > 40
    with session_scope() as session:
        assert authenticate(session, secret).name == "carol"
    assert main(["admin", "list-keys"]) == 0
    assert secret[:11] in capsys.readouterr().out
    assert main(["admin", "revoke-key", secret[:11]]) == 0
    with session_scope() as session:
        assert authenticate(session, secret) is None
    assert main(["admin", "revoke-key", secret[:11]]) == 1  # nothing left to revoke
    assert "no active key" in capsys.readouterr().err


def test_create_key_before_migrate_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BASIS_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite'}")
    get_settings.cache_clear()
    try:
        assert main(["admin", "create-key", "--name", "x"]) == 1
    finally:
        get_settings.cache_clear()
    assert "basis admin migrate" in capsys.readouterr().err


def test_admin_users_from_create_key_and_set_admin(env, capsys):
    assert main(["admin", "create-key", "root", "--admin"]) == 0
    admin_secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["admin", "create-key", "--name", "dave"]) == 0
    user_secret = capsys.readouterr().out.strip().splitlines()[-1]
    with session_scope() as session:
        assert authenticate(session, admin_secret).is_admin is True
        assert authenticate(session, user_secret).is_admin is False
    assert main(["admin", "list-keys"]) == 0
    listing = capsys.readouterr().out
    assert any("root" in line and "admin" in line for line in listing.splitlines())
    assert main(["admin", "set-admin", "dave"]) == 0
    with session_scope() as session:
        assert authenticate(session, user_secret).is_admin is True
    assert main(["admin", "set-admin", "dave", "--revoke"]) == 0
    with session_scope() as session:
        assert authenticate(session, user_secret).is_admin is False
    assert main(["admin", "set-admin", "nobody"]) == 1
    assert "no user 'nobody'" in capsys.readouterr().err
    assert main(["admin", "create-key"]) == 1  # no name
    assert "user name" in capsys.readouterr().err
