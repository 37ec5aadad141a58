"""Issue 18, must-show 3: kill -9 of the worker under `basis up` (the embedded stack). The API
stays up throughout, `basis up` restarts the worker, and the job resumes from its checkpoint within
30 s of the kill, not after the stale-heartbeat timeout (set to 10 minutes here to prove it)."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest

from core.db import dispose_engines, make_engine, session_scope
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
from tests.net import api_healthy, free_port

pytestmark = pytest.mark.slow


def test_a_killed_worker_is_restarted_and_its_job_resumes_within_30_s(tmp_path, tiny_model):
    data = tmp_path / "data"
    install_model(tiny_model, data / "models")
    port = free_port()
    env = service_env(data_dir=str(data), api_port=str(port), worker_heartbeat_seconds="0.5",
                      worker_stale_after_seconds="600", worker_sweep_seconds="600")
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = spawn(["cli", "up", "--no-dashboard", "--grace", "30"], env, log)
    try:
        wait_until(lambda: api_healthy(url), timeout=120, what="the API", process=up, log=log)
        engine = make_engine(f"sqlite:///{data / 'basis.sqlite'}")
        with session_scope(engine) as session:
            _, secret = create_key(session, "supervised")
        engine.dispose()
        client = httpx.Client(base_url=url, timeout=30,
                              headers={"Authorization": f"Bearer {secret}"})
        dataset = client.post("/v1/datasets", files={"file": ("a.jsonl", demo_jsonl(),
                                                              "application/jsonl")}).json()["id"]
        job = client.post("/v1/jobs", json={"dataset_id": dataset, "model": "tiny", "config": {
            **SHORT_JOB, "max_steps": 100_000, "checkpoint_every": 2, "probe_every": 0}})
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]

        def step() -> int:
            return client.get(f"/v1/jobs/{job_id}").json()["current_step"] or 0

        wait_until(lambda: step() >= 3, timeout=240, what="a checkpoint", process=up, log=log)
        worker_pid = int(re.findall(r"started worker \(pid (\d+)\)", log.read_text())[-1])
        os.killpg(worker_pid, signal.SIGKILL)
        killed_at, at_kill = time.monotonic(), step()

        health = []

        def events() -> list[dict]:
            return client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]

        def claimed_again() -> bool:  # the restarted worker took the job back and said so
            health.append(api_healthy(url))
            return any(e["kind"] == "resumed" for e in events())

        wait_until(claimed_again, timeout=30, what="the job to be resumed after kill -9",
                   process=up, log=log, interval=0.25)
        resume_seconds = time.monotonic() - killed_at
        # Then it trains on: a step past the kill (loading torch and the model takes a while).
        wait_until(lambda: health.append(api_healthy(url)) or step() > at_kill, timeout=120,
                   what="a step after the resume", process=up, log=log, interval=0.25)
        step_seconds = time.monotonic() - killed_at
        assert all(health), "the API stopped answering while the worker was down"
        assert up.poll() is None
        text = log.read_text()
        assert "worker exited with status -9; restarting it" in text, text[-3000:]
        assert re.search(r"restarted worker \(pid \d+\)", text)
        client.post(f"/v1/jobs/{job_id}/cancel")
    finally:
        stop(up, timeout=90)
        dispose_engines()
    print(f"\nFIGURES supervision: kill -9 of the worker at step {at_kill}; the job resumed "
          f"{resume_seconds:.1f} s later (its next step {step_seconds:.1f} s after the kill); API answered all {len(health)} health probes meanwhile")
