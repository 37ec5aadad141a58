"""A job of 2 processes on the embedded stack (`basis up`: SQLite, the SQLite broker, one worker),
driven over HTTP: the worker advertises itself, job creation checks the job against it, the
worker runs the job under torchrun (2 gloo ranks on the CPU) with rank 0 writing every metric once,
and a cancel stops both ranks of a second job."""

from __future__ import annotations

import httpx
import pytest

from core.db import dispose_engines
from core.services.keys import create_key
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
from tests.e2e.test_embedded import session_scope_for
from tests.net import api_healthy, free_port

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
# The trainer's multi-process loop (FSDP2, gathered batch, rank-0 sink) is trainer/distributed.py.
pytest.importorskip("trainer.distributed")


def test_a_two_process_job_through_the_api_succeeds_and_writes_once(tmp_path, tiny_model):
    data = tmp_path / "data"
    install_model(tiny_model, data / "models")
    port = free_port()
    env = service_env(data_dir=str(data), api_port=str(port), worker_heartbeat_seconds="1")
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = spawn(["cli", "up", "--no-dashboard"], env, log)
    try:
        wait_until(lambda: api_healthy(url), timeout=90, what="the API", process=up, log=log)
        with session_scope_for(data) as session:
            _, secret = create_key(session, "e2e")
        headers = {"Authorization": f"Bearer {secret}"}
        client = httpx.Client(base_url=url, timeout=30)

        def workers() -> list[dict]:
            return client.get("/v1/workers", headers=headers).json()["data"]

        [worker] = wait_until(workers, timeout=120, what="the worker to register", process=up, log=log)
        assert (worker["queues"], worker["gpus"], worker["max_processes"]) == (["gpu"], 0, 2), worker
        assert "hf" in worker["engines"] and worker["alive"]

        dataset = client.post("/v1/datasets", headers=headers,
                              files={"file": ("arith.jsonl", demo_jsonl(), "application/jsonl")}).json()
        body = {"dataset_id": dataset["id"], "model": "tiny", "config": {**SHORT_JOB, "num_processes": 2}}
        too_many = client.post("/v1/jobs", headers=headers,
                               json={**body, "config": {**body["config"], "num_processes": 4}})
        assert too_many.status_code == 422, too_many.text
        assert too_many.json()["error"]["param"] == "config.num_processes"
        unknown_queue = client.post("/v1/jobs", headers=headers, json={**body, "queue": "h100"})
        assert (unknown_queue.status_code, unknown_queue.json()["error"]["param"]) == (422, "queue")

        created = client.post("/v1/jobs", headers=headers, json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"]
                   in {"succeeded", "failed", "cancelled"}, timeout=400, what="the 2-process job",
                   process=up, log=log)
        check_job_outputs(client, headers, job_id, steps=SHORT_JOB["max_steps"])
        events = client.get(f"/v1/jobs/{job_id}/events", headers=headers,
                            params={"limit": 1000}).json()["data"]
        # Written once: one priors event and one event per checkpoint, not one per rank.
        kinds = [e["kind"] for e in events]
        assert kinds.count("priors") == 1, kinds
        checkpoints = [e["message"] for e in events if e["kind"] == "checkpoint"]
        assert checkpoints and len(checkpoints) == len(set(checkpoints)), checkpoints

        # Cancel reaches every rank: rank 0 reads the flag, the trainer broadcasts it, both stop.
        long = client.post("/v1/jobs", headers=headers, json={
            **body, "config": {**body["config"], "max_steps": 150, "checkpoint_every": 50}}).json()

        def job() -> dict:
            return client.get(f"/v1/jobs/{long['id']}", headers=headers).json()

        wait_until(lambda: job()["current_step"] >= 1, timeout=300, what="the long job's first step",
                   process=up, log=log, interval=0.05)
        assert workers()[0]["current_job_id"] == long["id"]
        assert client.post(f"/v1/jobs/{long['id']}/cancel", headers=headers).status_code == 200
        wait_until(lambda: job()["status"] == "cancelled", timeout=120, what="the cancel",
                   process=up, log=log)
        assert job()["current_step"] < 150
        wait_until(lambda: workers()[0]["current_job_id"] is None, timeout=30,
                   what="the worker to be idle", process=up, log=log)
    finally:
        stop(up, timeout=90)
        dispose_engines()
