"""The worker registry through the real app: `GET /v1/workers`, and job creation refusing an engine,
queue or process count that no live worker offers (a 422 naming the field, nothing created), while
accepting a job when no worker is alive yet or its queue's workers are down."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from client.rest import BasisClient
from core import workers
from core.models import Job, JobEvent, Worker


@pytest.fixture(autouse=True)
def open_queues(settings):
    """The administrator's allow-list (`BASIS_JOB_QUEUES`, core/jobs/limits.py) admits every queue
    used here, so what refuses or accepts a job below is the live workers."""
    settings.job_queues = ["gpu", "cpu", "h100", "anything"]


@pytest.fixture
def register(app):
    """`register(id, queues=, engines=, gpus=, max_processes=, dead=, stopped=)`: a worker row
    written as a worker's heartbeat writes it; `dead` backdates the heartbeat past the limit."""

    def make(worker_id: str, *, queues=("gpu",), engines=("hf",), gpus=0, max_processes=2,
             dead: bool = False, stopped: bool = False) -> None:
        info = workers.WorkerInfo(id=worker_id, hostname="host", pid=1, queues=list(queues),
                                  engines=list(engines), gpus=gpus, max_processes=max_processes)
        with app.state.engine.begin() as conn:
            workers.beat(conn, info)
            if dead:
                conn.execute(update(Worker).where(Worker.id == worker_id)
                             .values(heartbeat_at=datetime(2020, 1, 1, tzinfo=UTC)))
            if stopped:
                workers.stop(conn, worker_id)

    return make


def count_jobs(db) -> int:
    return db.scalar(select(func.count()).select_from(Job))


def test_list_workers_needs_a_key_and_pages_live_ones(client, alice, register):
    assert client.get("/v1/workers").status_code == 401
    register("gpu-1@a", engines=("hf", "vllm"), gpus=8, max_processes=8)
    register("gpu-2@b")
    register("gpu-3@c", dead=True)
    register("gpu-4@d", stopped=True)
    page = client.get("/v1/workers", headers=alice, params={"limit": 1}).json()
    assert (page["object"], page["has_more"], page["next_cursor"]) == ("list", True, "gpu-1@a")
    [first] = page["data"]
    assert first["object"] == "worker" and first["alive"] is True
    assert (first["queues"], first["engines"], first["gpus"], first["max_processes"]) == (
        ["gpu"], ["hf", "vllm"], 8, 8)
    rest = client.get("/v1/workers", headers=alice, params={"after": "gpu-1@a"}).json()
    assert [w["id"] for w in rest["data"]] == ["gpu-2@b"] and rest["has_more"] is False
    everyone = client.get("/v1/workers", headers=alice, params={"include_dead": True}).json()["data"]
    assert {w["id"]: w["alive"] for w in everyone} == {
        "gpu-1@a": True, "gpu-2@b": True, "gpu-3@c": False, "gpu-4@d": False}
    typed = BasisClient(api_key=alice["Authorization"].split()[1], http=client)
    assert [w.id for w in typed.workers(page_size=1)] == ["gpu-1@a", "gpu-2@b"]
    assert len(typed.workers(include_dead=True)) == 4


REFUSED = {
    "engine": ({"config": {"engine": "vllm"}}, "config.engine", "no live worker offers engine 'vllm' on queue 'gpu'"),
    "queue": ({"queue": "h100"}, "queue", "no worker consumes queue 'h100' (live queues: cpu, gpu)"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_no_live_worker_offers_is_a_422_naming_it(create_job, alice, dataset, register, db,
                                                       enqueued, case):
    register("gpu-1@a", engines=("hf",), max_processes=2)
    register("cpu-1@b", queues=("cpu",), engines=("hf", "vllm"), gpus=0, max_processes=4)
    register("gpu-2@c", engines=("hf", "vllm"), dead=True)  # a dead worker offers nothing
    before = count_jobs(db)
    body, param, needle = REFUSED[case]
    config = {"estimator": "basis", "max_steps": 3, "batch_size": 2, **body.get("config", {})}
    response = create_job(alice, dataset["id"], **{**body, "config": config})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and needle in error["message"], error
    assert count_jobs(db) == before and enqueued == []


def test_a_job_a_live_worker_offers_is_accepted(create_job, alice, dataset, register, db):
    register("gpu-1@a", engines=("hf", "vllm"))
    response = create_job(alice, dataset["id"], config={"engine": "vllm", "batch_size": 2, "max_steps": 3})
    assert response.status_code == 201, response.text
    [event] = db.scalars(select(JobEvent)).all()
    assert event.message == "Job created; waiting for a worker"


def test_no_worker_yet_accepts_the_job_and_says_it_waits(create_job, alice, dataset, db):
    """`basis up` starts its worker after the API: a job sent before the worker registered waits."""
    response = create_job(alice, dataset["id"], queue="anything")
    assert response.status_code == 201, response.text
    [event] = db.scalars(select(JobEvent)).all()
    assert "no worker has registered yet" in event.message


def test_a_queue_whose_workers_are_all_down_accepts_the_job(create_job, alice, dataset, register, db):
    register("gpu-1@a", stopped=True)  # restarting
    register("cpu-1@b", queues=("cpu",))  # alive, another pool
    response = create_job(alice, dataset["id"])
    assert response.status_code == 201, response.text
    assert "no live worker on queue 'gpu' now" in db.scalars(select(JobEvent)).one().message


@pytest.fixture
def strict(settings):
    settings.require_live_worker = True
    return settings


def test_require_live_worker_refuses_a_queue_without_one(strict, create_job, alice, dataset, register, db):
    register("gpu-1@a", stopped=True)
    response = create_job(alice, dataset["id"])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "queue" and "no worker is alive" in error["message"], error
    assert count_jobs(db) == 0
    register("gpu-2@b")
    assert create_job(alice, dataset["id"]).status_code == 201


def test_ready_counts_live_workers_per_queue_without_naming_them(client, register):
    register("gpu-1@a")
    register("gpu-2@b", queues=("gpu", "cpu"))
    register("gpu-3@c", dead=True)
    body = client.get("/v1/health/ready").json()  # no key: counts only
    assert body["workers"]["live_by_queue"] == {"cpu": 1, "gpu": 2}
    assert "gpu-1@a" not in str(body)


def test_ready_lists_each_live_worker_without_naming_host_pid_or_job(client, register, alice, job):
    """Per worker: an opaque ref, queues, GPUs, busy/idle and heartbeat age; nothing that names a
    host, a process, a job or a user (this route has no key). The ref is a hash of the id that
    the authenticated GET /v1/workers shows, so an operator can match them."""
    from core.services.health import worker_ref

    register("gpu-1@secret-host", gpus=2)
    register("cpu-7@other-host", queues=("cpu",))
    register("gpu-3@dead-host", dead=True)
    with client.app.state.engine.begin() as conn:
        conn.execute(update(Worker).where(Worker.id == "gpu-1@secret-host")
                     .values(current_job_id=job["id"]))
    body = client.get("/v1/health/ready").json()
    live = {w["ref"]: w for w in body["workers"]["live"]}
    assert set(live) == {worker_ref("gpu-1@secret-host"), worker_ref("cpu-7@other-host")}
    busy = live[worker_ref("gpu-1@secret-host")]
    assert busy["busy"] is True and busy["queues"] == ["gpu"] and busy["gpus"] == 2
    assert 0 <= busy["heartbeat_age_s"] < 60
    assert live[worker_ref("cpu-7@other-host")]["busy"] is False
    assert set(busy) == {"ref", "queues", "gpus", "busy", "heartbeat_age_s"}
    text = json.dumps(body["workers"]["live"])
    for secret in ("secret-host", "other-host", "gpu-1", "host", job["id"]):
        assert secret not in text
    listed = client.get("/v1/workers", headers=alice).json()["data"]
    assert {worker_ref(w["id"]) for w in listed} == set(live)
