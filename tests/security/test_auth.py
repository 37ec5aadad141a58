"""Fault 5a/5b: every /v1 route refuses a request without a valid key (canonical enumeration).

The routes are enumerated, never listed by hand: from the OpenAPI schema (what users see) and from
the app's route table (which also holds routes hidden from the schema), so a route added without
`CurrentUser` fails this file. Requests name real resources of a real user, so a route that forgot
auth would answer 200 with that user's data, not a harmless 404.
"""

from __future__ import annotations

import re
import secrets

import pytest
from fastapi.routing import APIRoute

from api.deps import get_current_user
from core.db import session_scope
from core.services.keys import revoke_key
from tests.security.conftest import PUBLIC, request_for, v1_operations

BAD_HEADERS = {
    "no header": None,
    "empty bearer": "Bearer ",
    "random key of the right shape": "Bearer bk_" + secrets.token_urlsafe(32),
    "key without the prefix": "Bearer " + secrets.token_urlsafe(32),
    "basic auth": "Basic YWxpY2U6cGFzc3dvcmQ=",
    "raw key, no scheme": None,  # filled with alice's real key in the test
    "huge header": "Bearer bk_" + "x" * 8000,
    "sql in the key": "Bearer bk_' OR '1'='1",
}


def _api_routes(app):
    """(path, methods, dependant) of every APIRoute. FastAPI >= 0.165 keeps included routers
    lazily (`_IncludedRouter`), older versions copy their routes flat into `app.routes`."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        contexts = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    for context in contexts:
        original = getattr(context, "original_route", context)
        if isinstance(original, APIRoute):
            dependant = getattr(context, "dependant", None) or original.dependant
            yield context.path, set(context.methods or ()), dependant


def _route_table(app) -> set[tuple[str, str]]:
    """(METHOD, path) of every /v1 route, a converter (`{name:path}`) written as OpenAPI does."""
    return {(method, re.sub(r"{(\w+):\w+}", r"{\1}", path)) for path, methods, _ in _api_routes(app)
            if path.startswith("/v1") for method in methods if method != "HEAD"}


def _uses_auth(dependant) -> bool:
    return any(dep.call is get_current_user or _uses_auth(dep) for dep in dependant.dependencies)


def test_the_schema_lists_every_route_and_each_takes_current_user(app):
    operations = set(v1_operations(app))
    assert operations == _route_table(app), "a /v1 route is hidden from the OpenAPI schema"
    assert len(operations) >= 15, operations  # the whole contract of docs/architecture.md
    unauthenticated = [(path, sorted(methods)) for path, methods, dependant in _api_routes(app)
                       if path.startswith("/v1") and not _uses_auth(dependant)
                       and not all((m, path) in PUBLIC for m in methods - {"HEAD"})]
    assert unauthenticated == [], "routes without CurrentUser"


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_every_route_refuses_a_missing_or_wrong_key(world, case):
    header = BAD_HEADERS[case]
    if case == "raw key, no scheme":
        header = world.alice.secret
    headers = {} if header is None else {"Authorization": header}
    for method, path in v1_operations(world.app):
        if (method, path) in PUBLIC:
            continue
        response = world.client.request(method, world.fill(path, world.alice.ids), headers=headers,
                                        **request_for(method, path, world.alice.ids))
        assert response.status_code == 401, (case, method, path, response.text)
        body = response.json()
        assert body["error"]["code"] == "unauthorized", (method, path, body)
        assert response.headers["www-authenticate"] == "Bearer"
        assert world.alice.ids["job_id"] not in response.text


def test_a_revoked_key_is_refused_on_every_route_at_once(world):
    alice = world.alice
    assert world.client.get("/v1/jobs", headers=alice.headers).status_code == 200
    with session_scope(world.app.state.engine) as session:
        assert revoke_key(session, alice.secret[:11]) == 1
    for method, path in v1_operations(world.app):
        if (method, path) in PUBLIC:
            continue
        response = world.client.request(method, world.fill(path, alice.ids), headers=alice.headers,
                                        **request_for(method, path, alice.ids))
        assert response.status_code == 401, (method, path, response.text)
        assert "revoked" in response.json()["error"]["message"]
    # Revoking one user's key touches nobody else.
    assert world.client.get("/v1/jobs", headers=world.bob.headers).status_code == 200


def test_public_routes_are_only_health(world):
    assert PUBLIC == {("GET", "/v1/health"), ("GET", "/v1/health/ready")}
    for path in ("/v1/health", "/v1/health/ready"):
        response = world.client.get(path)
        assert response.status_code == 200, response.text
        # Readiness names active jobs by id and heartbeat only: no owner, no data.
        assert world.alice.ids["job_id"] not in response.text and "secret-of" not in response.text
