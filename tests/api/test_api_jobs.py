"""Jobs: create (validated, enqueued after commit), list, get, cancel, events; bad input is a 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from core.models import Job, JobEvent, JobStatus


def count_jobs(db) -> int:
    return db.scalar(select(func.count()).select_from(Job))


def test_create_validates_commits_then_enqueues(job, enqueued, db, settings):
    assert job["object"] == "job" and job["id"].startswith("job_")
    assert (job["status"], job["model"], job["estimator"], job["max_steps"]) == ("queued", "tiny", "basis", 3)
    assert job["config"]["batch_size"] == 2 and "model" not in job["config"]
    assert "run_dir" not in job["config"] and "output_dir" not in job["config"] and job["config"]["sampling"]["temperature"] == 1.0
    assert job["queue"] == settings.worker_queue and job["latest_metrics"] == {}
    assert enqueued == [(job["id"], settings.worker_queue, True)]  # True: row visible to others
    [event] = db.scalars(select(JobEvent)).all()
    assert (event.kind, event.data) == ("status", {"status": "queued"})


def test_create_on_another_queue(create_job, alice, dataset, enqueued, settings):
    assert create_job(alice, dataset["id"], queue="a100").status_code == 422  # not configured
    settings.job_queues = ["gpu", "a100"]  # the administrator's list (issue 18)
    response = create_job(alice, dataset["id"], queue="a100")
    assert response.status_code == 201 and response.json()["queue"] == "a100"
    assert enqueued[-1][1] == "a100"
    assert create_job(alice, dataset["id"], queue="../x").status_code == 422


BAD_JOBS = {
    "unknown model": ({"model": "nope"}, 404, "model"),
    "path traversal": ({"model": "../tiny"}, 422, "model"),
    "absolute path": ({"model": "/etc"}, 422, "model"),
    "unknown dataset": ({"dataset_id": "ds_nope"}, 404, "dataset_id"),
    "unknown config field": ({"config": {"learning_rate": 1}}, 422, "config.learning_rate"),
    "bad config value": ({"config": {"batch_size": 0}}, 422, "config.batch_size"),
    "bad nested value": ({"config": {"sampling": {"temperature": -1}}}, 422, "config.sampling.temperature"),
    "unknown estimator": ({"config": {"estimator": "magic"}}, 422, "config.estimator"),
    "group estimator with one rollout": ({"config": {"estimator": "grpo"}}, 422, "config.rollouts_per_prompt"),
    "server field": ({"config": {"model": "/etc"}}, 422, "config.model"),
    "server path": ({"config": {"eval_dataset": "/etc/passwd"}}, 422, "config.eval_dataset"),
    "output dir": ({"config": {"output_dir": "/tmp/x"}}, 422, "config.output_dir"),
    "run dir": ({"config": {"run_dir": "/tmp/x"}}, 422, "config.run_dir"),
    "config not an object": ({"config": [1, 2]}, 422, "config"),
    "unknown body field": ({"priority": 1}, 422, "priority"),
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_job_is_refused_and_nothing_is_created(client, alice, dataset, model_dir, db, enqueued, case):
    override, status, param = BAD_JOBS[case]
    body = {"dataset_id": dataset["id"], "model": "tiny", "config": {}, **override}
    response = client.post("/v1/jobs", headers=alice, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param, response.json()
    assert count_jobs(db) == 0 and enqueued == []


def test_another_owners_dataset_and_job_are_invisible(client, create_job, bob, alice, dataset, job):
    assert create_job(bob, dataset["id"]).status_code == 404
    for method, path in [("GET", f"/v1/jobs/{job['id']}"), ("POST", f"/v1/jobs/{job['id']}/cancel"),
                         ("GET", f"/v1/jobs/{job['id']}/events"), ("GET", f"/v1/jobs/{job['id']}/metrics"),
                         ("GET", f"/v1/jobs/{job['id']}/advantages"),
                         ("GET", f"/v1/jobs/{job['id']}/checkpoints")]:
        assert client.request(method, path, headers=bob).status_code == 404, path
    assert client.get("/v1/jobs", headers=bob).json()["data"] == []
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["status"] == "queued"


def test_list_paginates_and_filters(client, create_job, alice, dataset, db):
    ids = [create_job(alice, dataset["id"]).json()["id"] for _ in range(5)]
    db.execute(update(Job).where(Job.id.in_(ids[:2])).values(status="running"))
    db.commit()
    seen, cursor = [], None
    while True:
        page = client.get("/v1/jobs", headers=alice, params={"limit": 2, **({"after": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if not page["has_more"]:
            break
    assert seen == ids[::-1]
    running = client.get("/v1/jobs?status=running", headers=alice).json()["data"]
    assert sorted(j["id"] for j in running) == sorted(ids[:2])
    bad = client.get("/v1/jobs?status=sleeping", headers=alice)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "status"
    assert client.get("/v1/jobs?limit=0", headers=alice).status_code == 422


def test_cancel_a_queued_job_at_once(client, alice, job, db):
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled" and body["finished_at"] and body["cancel_requested"]
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice).json()["data"]
    assert [e["data"]["status"] for e in events] == ["queued", "cancelled"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 200  # idempotent


def test_cancel_a_running_job_asks_the_worker(client, alice, job, db):
    db.execute(update(Job).where(Job.id == job["id"]).values(status=JobStatus.running))
    db.commit()
    body = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).json()
    assert body["status"] == "running" and body["cancel_requested"]
    assert client.get(f"/v1/jobs/{job['id']}/events", headers=alice).json()["data"][-1]["kind"] == "cancel_requested"


def test_cancel_a_finished_job_is_a_conflict(client, alice, job, db):
    db.execute(update(Job).where(Job.id == job["id"]).values(status=JobStatus.succeeded))
    db.commit()
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


def test_events_after_cursor(client, alice, job, db):
    from core.jobs.events import record_event

    for i in range(4):
        record_event(db, job["id"], "log", f"message {i}")
    db.commit()
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice).json()["data"]
    assert len(events) == 5 and [e["id"] for e in events] == sorted(e["id"] for e in events)
    page = client.get(f"/v1/jobs/{job['id']}/events?after={events[1]['id']}&limit=2", headers=alice).json()
    assert [e["message"] for e in page["data"]] == ["message 1", "message 2"] and page["has_more"]
    assert page["next_cursor"] == str(events[3]["id"])


def test_enqueue_failure_keeps_the_job_queued(settings, alice, dataset, model_dir, client, app, db):
    def broken(job_id, queue):
        raise ConnectionError("broker down")

    app.state.enqueue = broken
    response = client.post("/v1/jobs", headers=alice, json={"dataset_id": dataset["id"], "model": "tiny",
                                                     "config": {"batch_size": 1}})
    assert response.status_code == 201 and response.json()["status"] == "queued"
    kinds = [e.kind for e in db.scalars(select(JobEvent).order_by(JobEvent.id))]
    assert kinds == ["status", "enqueue_failed"]


def test_dataset_in_use_cannot_be_deleted_until_the_job_ends(client, alice, job, dataset, db):
    response = client.delete(f"/v1/datasets/{dataset['id']}", headers=alice)
    assert response.status_code == 409
    # It names the work in the way (a job or an evaluation), so the owner knows what to cancel.
    assert job["id"] in response.json()["error"]["message"] and "cancel" in response.json()["error"]["message"]
    db.execute(update(Job).where(Job.id == job["id"]).values(status=JobStatus.failed))
    db.commit()
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["dataset_id"] is None


def test_models_list_only_dirs_with_config(client, alice, model_dir, settings):
    (settings.model_roots[0] / "not-a-model").mkdir()
    (settings.model_roots[0] / "org" / "big").mkdir(parents=True)
    (settings.model_roots[0] / "org" / "big" / "config.json").write_text("{}")
    data = client.get("/v1/models", headers=alice).json()["data"]
    assert [m["id"] for m in data] == ["org/big", "tiny"]


def test_a_job_config_round_trips_into_a_new_job(create_job, alice, dataset, job):
    response = create_job(alice, dataset["id"], config=job["config"])
    assert response.status_code == 201, response.text
    assert response.json()["config"] == job["config"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(client, alice, dataset, model_dir, db, literal):
    body = f'{{"dataset_id": "{dataset["id"]}", "model": "tiny", "config": {{"reward_timeout": {literal}}}}}'
    response = client.post("/v1/jobs", headers={**alice, "content-type": "application/json"}, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "config.reward_timeout"
    assert count_jobs(db) == 0
