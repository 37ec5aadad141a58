"""Retry end to end on the embedded default (`basis up`: SQLite, the SQLite broker, one worker): a
job cancelled mid-run is retried over HTTP, and the worker resumes it from the checkpoint it wrote
when it stopped instead of starting over; then the finished job is deleted with its run dir."""

from __future__ import annotations

import httpx
import pytest

from core.db import dispose_engines
from core.services.keys import create_key
from tests.e2e.conftest import (
    SHORT_JOB,
    demo_jsonl,
    install_model,
    service_env,
    spawn,
    stop,
    wait_until,
)
from tests.e2e.test_embedded import session_scope_for
from tests.net import api_healthy, free_port

pytestmark = pytest.mark.slow
# Long enough that the cancel below lands mid-run: a step takes ~0.02 s on an idle machine (30 steps
# once finished before a cancel sent after step 2 landed) and ~0.3 s on a loaded one.
STEPS = 150
TERMINAL = {"succeeded", "failed", "cancelled"}


def test_a_cancelled_job_retried_resumes_from_its_checkpoint_and_can_be_deleted(tmp_path, tiny_model):
    data = tmp_path / "data"
    install_model(tiny_model, data / "models")
    port = free_port()
    env = service_env(data_dir=str(data), api_port=str(port))
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = spawn(["cli", "up", "--no-dashboard"], env, log)
    try:
        wait_until(lambda: api_healthy(url), timeout=90, what="the API", process=up, log=log)
        with session_scope_for(data) as session:
            _, secret = create_key(session, "e2e")
        headers = {"Authorization": f"Bearer {secret}"}
        client = httpx.Client(base_url=url, timeout=30)
        upload = client.post("/v1/datasets", headers=headers,
                             files={"file": ("arith.jsonl", demo_jsonl(), "application/jsonl")})
        assert upload.status_code == 201, upload.text
        created = client.post("/v1/jobs", headers=headers, json={
            "dataset_id": upload.json()["id"], "model": "tiny",
            "config": {**SHORT_JOB, "max_steps": STEPS, "probe_every": 10, "checkpoint_every": 10}})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        def job() -> dict:
            return client.get(f"/v1/jobs/{job_id}", headers=headers).json()

        def get(path: str, **params) -> list:
            return client.get(f"/v1/jobs/{job_id}{path}", headers=headers, params=params).json()["data"]

        wait_until(lambda: job()["current_step"] >= 2, timeout=180, what="step 2", process=up, log=log,
                   interval=0.02)
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=headers).status_code == 200
        wait_until(lambda: job()["status"] in TERMINAL, timeout=120, what="the cancel", process=up, log=log)
        cancelled = job()
        assert cancelled["status"] == "cancelled", cancelled
        stopped_at = cancelled["current_step"]
        assert 2 <= stopped_at < STEPS, "the cancel landed after the run ended; make STEPS longer"
        # The trainer checkpoints when it stops, so nothing done before the cancel is lost.
        assert max(c["step"] for c in get("/checkpoints")) == stopped_at
        response = client.post(f"/v1/jobs/{job_id}/retry", headers=headers)
        assert response.status_code == 200, response.text
        retried = response.json()
        assert (retried["status"], retried["cancel_requested"], retried["finished_at"]) == ("queued", False, None)
        assert client.post(f"/v1/jobs/{job_id}/retry", headers=headers).status_code == 409  # queued now
        assert client.delete(f"/v1/jobs/{job_id}", headers=headers).status_code == 409

        wait_until(lambda: job()["status"] in TERMINAL, timeout=240, what="the retried job",
                   process=up, log=log)
        final = job()
        assert final["status"] == "succeeded" and final["current_step"] == STEPS, final

        # Steps 1..STEPS exactly once each, across the two runs.
        [reward] = client.get(f"/v1/jobs/{job_id}/metrics", headers=headers,
                              params={"names": "reward/mean"}).json()["data"]
        assert reward["steps"] == list(range(1, STEPS + 1))
        assert [h["step"] for h in get("/advantages", limit=1000)] == list(range(1, STEPS + 1))

        events = get("/events", limit=1000)
        retry_at = next(i for i, e in enumerate(events)
                        if e["kind"] == "status" and (e["data"] or {}).get("retry"))
        after = events[retry_at + 1:]
        statuses = [e["data"]["status"] for e in events if e["kind"] == "status"]
        # A fresh start would estimate priors again; the resumed run goes straight to running.
        assert statuses == ["queued", "starting", "estimating_priors", "running", "cancelled",
                            "queued", "starting", "running", "succeeded"], statuses
        [resumed] = [e for e in after if e["kind"] == "resumed"]
        assert resumed["data"]["checkpoint_step"] == stopped_at
        assert resumed["data"]["retry"] is True
        assert resumed["message"].endswith("after the retry requested"), resumed["message"]
        [trainer_resume] = [e for e in after if e["kind"] == "resume"]
        assert trainer_resume["data"]["step"] == stopped_at
        # Numbering continues from the checkpoint: the second run saved only later steps.
        saved_after = [e["data"]["step"] for e in after if e["kind"] == "checkpoint"]
        assert saved_after and min(saved_after) > stopped_at, saved_after
        assert saved_after[-1] == STEPS

        run_dir = data / "storage" / "jobs" / job_id
        assert (run_dir / "checkpoints").is_dir()
        assert client.delete(f"/v1/jobs/{job_id}", headers=headers).status_code == 204
        assert client.get(f"/v1/jobs/{job_id}", headers=headers).status_code == 404
        assert not run_dir.exists()
    finally:
        stop(up, timeout=90)
        dispose_engines()
