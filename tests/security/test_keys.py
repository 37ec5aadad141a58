"""Fault 5d: a copy of the database leaks. Keys must not be in it: only their SHA-256 and an
11-character display prefix. Checked by reading every text-like column of every table, so a future
column that logs or caches a key (an audit table, an event) fails too."""

from __future__ import annotations

import hashlib

from sqlalchemy import String, Text, select

from core.db import session_scope
from core.models import ApiKey, Base
from core.services.keys import PREFIX_LEN, create_key, revoke_key


def _every_stored_value(engine) -> list[str]:
    values: list[str] = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text)
                       or c.type.__class__.__name__ == "JSONType"]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                values.extend(str(v) for v in row if v is not None)
    return values


def test_the_database_holds_no_key_in_plaintext(world):
    secrets = [world.alice.secret, world.bob.secret]
    with session_scope(world.app.state.engine) as session:
        _, revoked = create_key(session, "carol")
    with session_scope(world.app.state.engine) as session:
        revoke_key(session, revoked[:PREFIX_LEN])
    secrets.append(revoked)
    stored = _every_stored_value(world.app.state.engine)
    assert stored, "nothing read back: the scan is broken"
    for secret in secrets:
        # Neither the key nor its secret part (everything after the display prefix).
        tail = secret[PREFIX_LEN:]
        assert not [v for v in stored if secret in v or tail in v], "a key is stored in plaintext"
    with world.app.state.sessionmaker() as session:
        hashes = set(session.scalars(select(ApiKey.key_hash)))
    assert hashes == {hashlib.sha256(s.encode()).hexdigest() for s in secrets}


def test_revocation_takes_effect_on_the_next_request_and_only_for_that_key(world):
    client, alice = world.client, world.alice
    with session_scope(world.app.state.engine) as session:
        _, second = create_key(session, "alice")  # a second key of the same user
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 200
    with session_scope(world.app.state.engine) as session:
        assert revoke_key(session, alice.secret[:PREFIX_LEN]) == 1
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 401
    other = client.get("/v1/jobs", headers={"Authorization": f"Bearer {second}"})
    assert other.status_code == 200
    assert [j["id"] for j in other.json()["data"]] == [alice.ids["job_id"]]  # same owner, same data
