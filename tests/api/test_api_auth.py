"""Authentication on every route: enumerated from the OpenAPI schema, so a new route can't slip by."""

from __future__ import annotations

import pytest

from core.db import session_scope
from core.services.keys import revoke_key

PUBLIC = {("GET", "/v1/health"), ("GET", "/v1/health/ready")}


def v1_operations(app) -> list[tuple[str, str]]:
    schema = app.openapi()
    return [(method.upper(), path) for path, ops in schema["paths"].items()
            for method in ops if path.startswith("/v1")]


def concrete(path: str) -> str:
    return path.replace("{", "x_").replace("}", "")


def test_every_v1_route_requires_a_key(client, app):
    operations = v1_operations(app)
    assert len(operations) >= 15  # the whole contract is mounted
    for method, path in operations:
        if (method, path) in PUBLIC:
            continue
        response = client.request(method, concrete(path))
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer bk_wrong", "Bearer ", "Basic YWxpY2U6cHc=", "bk_x",
                                    "Bearer " + "x" * 5000])
def test_wrong_keys_are_refused_everywhere(client, app, header):
    for method, path in v1_operations(app):
        if (method, path) in PUBLIC:
            continue
        response = client.request(method, concrete(path), headers={"Authorization": header})
        assert response.status_code == 401, (method, path, response.text)


def test_health_needs_no_key_and_reports_the_database(client):
    response = client.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["database"] == "ok"


def test_a_revoked_key_stops_working(client, app, alice):
    assert client.get("/v1/datasets", headers=alice).status_code == 200
    secret = alice["Authorization"].removeprefix("Bearer ")
    with session_scope(app.state.engine) as session:
        assert revoke_key(session, secret[:11]) == 1
    response = client.get("/v1/datasets", headers=alice)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_keys_are_stored_hashed(db, alice):
    from sqlalchemy import select

    from core.models import ApiKey

    secret = alice["Authorization"].removeprefix("Bearer ")
    stored = db.scalars(select(ApiKey)).one()
    assert secret not in (stored.key_hash, stored.prefix) and stored.prefix == secret[:11]
    assert len(stored.key_hash) == 64


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    assert "/v1/jobs/{job_id}/metrics" in client.get("/openapi.json").json()["paths"]
