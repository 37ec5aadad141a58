"""End to end on the lab setup: PostgreSQL, Redis, a real Celery worker *process*, the API.

The API runs in-process (TestClient) on the same database and storage as the worker; its enqueue
goes through Redis to the worker process, which runs the real trainer on a tiny model. Each test
uses its own queue name, so it never sees (or steals) another run's messages on the shared Redis.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.db import session_scope
from core.queue import enqueue_job
from core.services.keys import create_key
from core.settings import Settings
from tests.e2e.conftest import (
    SHORT_JOB,
    check_job_outputs,
    demo_jsonl,
    install_model,
    service_env,
    spawn,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def lab(tmp_path, postgres_schema_url, redis_url, tiny_model):
    """Settings shared by the in-process API and the worker process."""
    queue = f"e2e-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_schema_url,
                        broker_url=redis_url, model_roots=[tmp_path / "models"], worker_queue=queue,
                        api_key=None)
    install_model(tiny_model, settings.model_roots[0])
    env = service_env(data_dir=str(settings.data_dir), database_url=postgres_schema_url,
                      broker_url=redis_url, model_roots=str(settings.model_roots[0]),
                      worker_queue=queue, worker_heartbeat_seconds="1",
                      worker_stale_after_seconds="5", worker_sweep_seconds="2")
    return settings, env


@pytest.fixture
def api(lab):
    settings, _ = lab
    app = create_app(settings, enqueue=lambda job_id, queue: enqueue_job(job_id, queue,
                                                                         settings=settings))
    with session_scope(app.state.engine) as session:
        _, secret = create_key(session, "e2e")
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {secret}"}
    app.state.engine.dispose()


def _submit(client, headers, model: str = "tiny", **overrides) -> str:
    upload = client.post("/v1/datasets", headers=headers,
                         files={"file": ("arith.jsonl", demo_jsonl(), "application/jsonl")})
    assert upload.status_code == 201, upload.text
    job = client.post("/v1/jobs", headers=headers, json={
        "dataset_id": upload.json()["id"], "model": model, "config": {**SHORT_JOB, **overrides}})
    assert job.status_code == 201, job.text
    return job.json()["id"]


def _status(client, headers, job_id) -> str:
    return client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"]


def test_job_runs_on_a_celery_worker_process_over_redis(lab, api, tmp_path):
    _, env = lab
    client, headers = api
    log = tmp_path / "worker.log"
    worker = spawn(["cli", "worker", "--loglevel", "INFO"], env, log)
    try:
        job_id = _submit(client, headers)
        wait_until(lambda: _status(client, headers, job_id) in {"succeeded", "failed", "cancelled"},
                   timeout=240, what=f"job {job_id} to finish", process=worker, log=log)
        check_job_outputs(client, headers, job_id, steps=3)

        # A trainer exception fails that job only; the same worker process takes the next job.
        broken = lab[0].model_roots[0] / "broken"
        broken.mkdir()
        (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
        bad = _submit(client, headers, model="broken")
        wait_until(lambda: _status(client, headers, bad) == "failed", timeout=120,
                   what="the job with a broken model to fail", process=worker, log=log)
        error = client.get(f"/v1/jobs/{bad}", headers=headers).json()["error"]
        # Names the directory (as the user knows it: the server's models root reads <models>),
        # then the loader's own words.
        assert error.startswith("ModelLoadError: could not load the "), error
        assert any(f"from <models>/{broken.name}: {kind}" in error
                   for kind in ("ValueError", "OSError", "KeyError")), error
        assert str(broken.parent) not in error
        good = _submit(client, headers, estimator="reinforce_pp", n0=0, probe_every=0)
        wait_until(lambda: _status(client, headers, good) == "succeeded", timeout=240,
                   what="the next job after a failure", process=worker, log=log)
        assert worker.poll() is None
    finally:
        stop(worker)


def test_an_evaluation_runs_on_a_celery_worker_process_over_redis(lab, api, tmp_path):
    """An evaluation goes the job's way: the same task over Redis, the worker dispatching on kind."""
    _, env = lab
    client, headers = api
    log = tmp_path / "worker.log"
    worker = spawn(["cli", "worker"], env, log)
    try:
        upload = client.post("/v1/datasets", headers=headers,
                             files={"file": ("arith.jsonl", demo_jsonl(12), "application/jsonl")})
        created = client.post("/v1/evals", headers=headers, json={
            "model": "tiny", "dataset_id": upload.json()["id"], "reward": "exact",
            "samples_per_prompt": 2, "temperature": 1.0, "max_new_tokens": 4, "batch_rows": 4,
            "reward_workers": 0})
        assert created.status_code == 201, created.text
        eval_id = created.json()["id"]

        def evaluation() -> dict:
            return client.get(f"/v1/evals/{eval_id}", headers=headers).json()

        wait_until(lambda: evaluation()["status"] in {"succeeded", "failed", "cancelled"},
                   timeout=240, what=f"evaluation {eval_id} to finish", process=worker, log=log)
        done = evaluation()
        assert done["status"] == "succeeded", done
        assert done["results"]["rows"] == 12 and done["current_step"] == 3
        samples = client.get(f"/v1/evals/{eval_id}/samples", headers=headers).json()["data"]
        assert len(samples) == 24
    finally:
        stop(worker)


def test_cancel_stops_a_running_job(lab, api, tmp_path):
    _, env = lab
    client, headers = api
    log = tmp_path / "worker.log"
    worker = spawn(["cli", "worker"], env, log)
    try:
        job_id = _submit(client, headers, max_steps=500, checkpoint_every=0, probe_every=0)
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).json()["current_step"] >= 1,
                   timeout=180, what="the first step", process=worker, log=log)
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=headers).status_code == 200
        wait_until(lambda: _status(client, headers, job_id) == "cancelled", timeout=60,
                   what="the cancel to take effect", process=worker, log=log)
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        assert job["current_step"] < 500
    finally:
        stop(worker)


def test_worker_killed_mid_job_is_resumed_from_its_checkpoint(lab, api, tmp_path):
    """SIGKILL the worker after a checkpoint; a new worker's sweep finds the stale job and
    resumes it. Metric steps end contiguous with no duplicates."""
    import os
    import signal

    _, env = lab
    client, headers = api
    log = tmp_path / "worker.log"
    worker = spawn(["cli", "worker"], env, log)
    # 120 steps: an idle machine runs a step in a few hundredths of a second, so a short job could
    # end between the first checkpoint and the kill.
    job_id = _submit(client, headers, max_steps=120, checkpoint_every=5, probe_every=0)
    try:
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}/checkpoints", headers=headers).json()["data"],
                   timeout=240, what="the first checkpoint", process=worker, log=log, interval=0.02)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        assert _status(client, headers, job_id) in {"running", "estimating_priors"}
        log2 = tmp_path / "worker2.log"
        worker = spawn(["cli", "worker"], env, log2)
        wait_until(lambda: _status(client, headers, job_id) == "succeeded", timeout=300,
                   what="the resumed job to finish", process=worker, log=log2)
    finally:
        stop(worker)
    metrics = client.get(f"/v1/jobs/{job_id}/metrics", headers=headers,
                         params={"names": "reward/mean"}).json()["data"][0]
    steps = [s for s in metrics["steps"] if s >= 1]
    assert steps == list(range(1, 121))
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/events", headers=headers,
                                           params={"limit": 1000}).json()["data"]]
    assert "resumed" in kinds
