"""Fault 5c: one user reaching another user's datasets, jobs, outputs and checkpoints.

Every /v1 operation (enumerated from the OpenAPI schema) is called with bob's valid key and
alice's ids. Another owner's resource must be indistinguishable from a missing one (404 with the
same envelope), no response may carry alice's ids or data, and nothing of alice's may change.
Routes with two ids are also called with bob's own job and alice's checkpoint, the mix an
ownership check on the parent alone would let through.
"""

from __future__ import annotations

from sqlalchemy import select

from core.models import Dataset, Job
from tests.security.conftest import ADMIN_ONLY, PUBLIC, path_params, request_for, v1_operations


def _alice_state(world):
    with world.app.state.sessionmaker() as session:
        job = session.get(Job, world.alice.ids["job_id"])
        evaluation = session.get(Job, world.alice.ids["eval_id"])
        dataset = session.get(Dataset, world.alice.ids["dataset_id"])
        return (job.status, job.cancel_requested, evaluation.status, evaluation.cancel_requested,
                dataset is not None)


def test_another_owners_resources_are_404_on_every_route(world, settings):
    alice, bob = world.alice, world.bob
    before = _alice_state(world)
    tried = 0
    for method, path in v1_operations(world.app):
        if (method, path) in PUBLIC | ADMIN_ONLY:  # admin-only: 403 to both (test_admin.py)
            continue
        params = path_params(path)
        mixes = [dict(alice.ids)]
        if len(params) > 1:  # bob's own parent, alice's child
            mixes.append({**alice.ids, **{p: bob.ids[p] for p in params[:-1]}})
        for ids in mixes:
            url, extra = world.fill(path, ids), request_for(method, path, alice.ids)
            response = world.client.request(method, url, headers=bob.headers, **extra)
            tried += 1
            if params or (method, path) in {("POST", "/v1/jobs"), ("POST", "/v1/evals")}:
                assert response.status_code == 404, (method, path, ids, response.text)
                assert response.json()["error"]["code"] == "not_found"
            # Alice's data, and any id of hers bob did not send himself (a 404 may echo his input).
            sent = url + str(extra)
            for secret in ["secret-of-alice", *alice.ids.values()]:
                if secret not in sent:
                    assert secret not in response.text, (method, path, secret)
    assert tried >= 15
    assert _alice_state(world) == before  # not cancelled, not deleted
    assert world.enqueued == [alice.ids["job_id"], bob.ids["job_id"]]  # bob's POSTs made no job
    with world.app.state.sessionmaker() as session:
        owners = set(session.scalars(select(Job.owner_id)))
    assert len(owners) == 2


def test_not_found_is_the_same_for_missing_and_foreign(world):
    """The answer for alice's job must equal the one for a job that never existed (no oracle)."""
    bob = world.bob
    foreign = world.client.get(f"/v1/jobs/{world.alice.ids['job_id']}", headers=bob.headers)
    missing = world.client.get("/v1/jobs/job_doesnotexist000000000000", headers=bob.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"]["code"] == missing.json()["error"]["code"]
    assert foreign.json()["error"]["param"] == missing.json()["error"]["param"]
