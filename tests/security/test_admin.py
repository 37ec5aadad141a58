"""Admin-only routes (api.deps.AdminUser): enumerated from the app, refused to users with 403.

The set is found from the route table (every route whose dependencies reach `get_admin_user`)
and must equal `ADMIN_ONLY`, so a route made admin-only, or one that silently stopped being, fails
here. A user's valid key gets 403 in the API's error shape and changes nothing (no pull starts);
an admin's key passes.
"""

from __future__ import annotations

from api.deps import get_admin_user
from core.db import session_scope
from core.services.keys import create_key, set_admin
from tests.security.conftest import ADMIN_ONLY, request_for, v1_operations
from tests.security.test_auth import _api_routes


def _uses(dependant, call) -> bool:
    return any(dep.call is call or _uses(dep, call) for dep in dependant.dependencies)


def test_admin_only_routes_are_exactly_the_declared_ones(app):
    found = {(method, path) for path, methods, dependant in _api_routes(app) if path.startswith("/v1")
             and _uses(dependant, get_admin_user) for method in methods - {"HEAD"}}
    assert found == ADMIN_ONLY
    assert ADMIN_ONLY <= set(v1_operations(app))


def test_users_get_403_on_every_admin_route_and_nothing_happens(world):
    for owner in (world.alice, world.bob):
        for method, path in sorted(ADMIN_ONLY):
            response = world.client.request(method, world.fill(path, owner.ids), headers=owner.headers,
                                            **request_for(method, path, owner.ids))
            assert response.status_code == 403, (method, path, response.text)
            error = response.json()["error"]
            assert error["code"] == "forbidden" and "administrators" in error["message"]
    assert world.app.state.model_pulls.list() == []


def test_an_admin_passes_and_admin_rights_can_be_revoked(world):
    with session_scope(world.app.state.engine) as session:
        _, secret = create_key(session, "root", admin=True)
    headers = {"Authorization": f"Bearer {secret}"}
    assert world.client.get("/v1/model-pulls", headers=headers).json()["data"] == []
    missing = world.client.get("/v1/model-pulls/pull_nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "pull_id"
    with session_scope(world.app.state.engine) as session:
        set_admin(session, "root", False)
    assert world.client.get("/v1/model-pulls", headers=headers).status_code == 403
