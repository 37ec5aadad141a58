"""`basis up --demo` (and so `make run`) reuses the demo user's key while it still works."""

from __future__ import annotations

import stat

from cli.demo import DEMO_KEY_FILE, demo_api_key
from core.db import get_engine, session_scope
from core.services.keys import authenticate, list_keys, revoke_key


def test_demo_key_is_saved_reused_and_replaced_once_revoked(settings):
    key, reused = demo_api_key(settings)
    assert not reused
    path = settings.data_dir / DEMO_KEY_FILE
    assert path.read_text().strip() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_api_key(settings) == (key, True)
    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        assert len(list_keys(session)) == 1  # no second key minted
        revoke_key(session, key[:12])
    fresh, reused = demo_api_key(settings)
    assert not reused and fresh != key and path.read_text().strip() == fresh
    with session_scope(engine) as session:
        assert authenticate(session, fresh).name == "demo"
