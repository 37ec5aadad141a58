"""Issue 18 items 5, 6 and 8: health tells the truth, a full disk refuses new work clearly, a corrupted
database is a clear 503 and `basis up` refuses to start on it with the recovery steps, and a retry
whose checkpoint files are gone says so instead of silently restarting from step 0.

The API runs in-process on a real SQLite file (and Postgres where the fixture says so); the disk
floor is the real free space of the test's volume against a floor set above it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import torch
from fastapi.testclient import TestClient

from api.main import create_app
from core.db import session_scope
from core.models import Job
from core.services.keys import create_key
from tests.reliability.conftest import REPO

ROWS = "".join(json.dumps({"prompt": f"{i}+{i}=", "answer": str(2 * i)}) + "\n" for i in range(8))


@pytest.fixture
def api(settings, model_dir):
    app = create_app(settings, enqueue=lambda job_id, queue: None)
    with session_scope(app.state.engine) as session:
        _, secret = create_key(session, "health")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {secret}"
        yield client
    app.state.engine.dispose()


def _upload(api):
    return api.post("/v1/datasets", files={"file": ("d.jsonl", ROWS.encode(), "application/jsonl")})


def test_ready_reports_every_check_and_a_stuck_job(api, settings):
    ready = api.get("/v1/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert {k: body[k]["ok"] for k in ("database", "broker", "disk", "workers")} == dict.fromkeys(
        ("database", "broker", "disk", "workers"), True)
    dataset = _upload(api).json()["id"]
    job = api.post("/v1/jobs", json={"dataset_id": dataset, "model": "tiny",
                                     "config": {"batch_size": 2}}).json()["id"]
    with session_scope(api.app.state.engine) as session:  # claimed long ago, silent since
        row = session.get(Job, job)
        row.status, row.started_at = "running", datetime(2026, 1, 1, tzinfo=UTC)
        row.updated_at = datetime(2026, 1, 1, tzinfo=UTC)
    stuck = api.get("/v1/health/ready")
    assert stuck.status_code == 503
    [entry] = stuck.json()["workers"]["active"]
    assert entry["job_id"] == job and entry["stale"] and entry["heartbeat_age_s"] > 3600


def test_below_the_disk_floor_uploads_and_jobs_get_507_and_ready_says_why(api, settings):
    dataset = _upload(api).json()["id"]
    settings.min_free_disk_mb = 10**9  # far above any real volume's free space
    upload = _upload(api)
    assert upload.status_code == 507, upload.text
    assert "below its floor" in upload.json()["error"]["message"]
    job = api.post("/v1/jobs", json={"dataset_id": dataset, "model": "tiny",
                                     "config": {"batch_size": 2}})
    assert job.status_code == 507 and job.json()["error"]["code"] == "insufficient_storage"
    assert api.get("/v1/jobs").json()["data"] == []  # nothing was created
    disk = api.get("/v1/health/ready").json()["disk"]
    assert disk["ok"] is False and disk["free_mb"] < disk["floor_mb"]
    assert api.delete(f"/v1/datasets/{dataset}").status_code == 204  # freeing space still works


def test_checkpoint_is_refused_before_writing_when_the_disk_cannot_hold_it(tmp_path, monkeypatch):
    from trainer import checkpoint

    model = torch.nn.Linear(1024, 1024)  # 4 MB of weights
    optimizer = torch.optim.AdamW(model.parameters())
    free = 3 * 2**20  # the volume's free space as the OS would report it
    monkeypatch.setattr(checkpoint.shutil, "disk_usage",
                        lambda path: type("Usage", (), {"total": 2**30, "used": 2**30 - free,
                                                        "free": free}))
    with pytest.raises(checkpoint.DiskFull, match=r"disk full at /\S*, free 3 MB"):
        checkpoint.save_checkpoint(tmp_path / "run", 1, model=model, optimizer=optimizer, state={})
    assert not any((tmp_path / "run" / "checkpoints").iterdir())  # nothing half-written


def test_disk_full_is_not_retried_as_an_outage():
    from sqlalchemy.exc import OperationalError

    from core.db import is_transient

    assert not is_transient(OperationalError("INSERT", {}, Exception("database or disk is full")))
    assert is_transient(OperationalError("INSERT", {}, Exception("connection refused")))


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[:100] = b"\x00" * 100  # the header: "file is not a database"
    path.write_bytes(bytes(data))


def test_a_corrupted_database_is_a_503_and_basis_up_refuses_with_recovery_steps(tmp_path):
    from core.db import migrate
    from core.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    migrate(settings.database_url)
    database = settings.data_dir / "basis.sqlite"
    app = create_app(settings, enqueue=lambda job_id, queue: None)
    with session_scope(app.state.engine) as session:
        _, secret = create_key(session, "corrupt")
    app.state.engine.dispose()
    _corrupt(database)
    with TestClient(app, raise_server_exceptions=False) as client:
        jobs = client.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
        assert jobs.status_code == 503 and "corrupted" in jobs.json()["error"]["message"]
        assert client.get("/v1/health").status_code == 503
        ready = client.get("/v1/health/ready")
        assert ready.status_code == 503 and ready.json()["database"]["ok"] is False
    app.state.engine.dispose()
    app.state.health_engine.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("BASIS_")}
    env.update({"BASIS_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(REPO)})
    up = subprocess.run([sys.executable, "-m", "cli", "up", "--no-dashboard"], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 1, up.stderr[-2000:]
    first, *steps = up.stderr.strip().splitlines()
    assert first.startswith("basis up: the database") and "corrupted" in first, up.stderr
    assert "Traceback" not in up.stderr and "mv " in steps[0] and "restore" in steps[0]


def test_retry_with_a_lost_checkpoint_is_a_409_naming_it_or_an_explicit_start_over(api, settings):
    from core.models import Checkpoint, Metric

    dataset = _upload(api).json()["id"]
    job = api.post("/v1/jobs", json={"dataset_id": dataset, "model": "tiny",
                                     "config": {"batch_size": 2}}).json()["id"]
    ckpt = settings.job_run_dir(job) / "checkpoints" / "step-000260"
    with session_scope(api.app.state.engine) as session:  # what a worker leaves after 260 steps
        row = session.get(Job, job)
        row.status, row.current_step = "failed", 261
        session.add_all(Metric(job_id=job, name="reward/mean", step=s, value=0.5) for s in (1, 260))
        session.add(Checkpoint(job_id=job, step=260, bytes=1,
                               path=str(ckpt.relative_to(settings.storage_dir))))
    refused = api.post(f"/v1/jobs/{job}/retry")  # the checkpoint's files were never there / lost
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "checkpoints/step-000260/state.json (step 260) is missing" in message
    assert str(settings.storage_dir) not in message  # no server path
    assert api.get(f"/v1/jobs/{job}").json()["status"] == "failed"  # nothing changed

    again = api.post(f"/v1/jobs/{job}/retry", params={"start_over": "true"})
    assert again.status_code == 200 and again.json()["status"] == "queued", again.text
    assert api.get(f"/v1/jobs/{job}/metrics").json()["data"] in ([], [{"name": "reward/mean",
                                                                      "steps": [], "values": []}])
    kinds = [e["kind"] for e in api.get(f"/v1/jobs/{job}/events").json()["data"]]
    assert "start_over" in kinds


def test_per_user_quotas_refuse_past_the_limit_naming_it(api, settings):
    settings.quota_active_jobs, settings.quota_dataset_bytes = 1, 2 * len(ROWS)
    dataset = _upload(api).json()["id"]
    assert _upload(api).status_code == 201  # exactly at the bytes quota
    third = _upload(api)
    assert third.status_code == 507 and "quota" in third.json()["error"]["message"]
    body = {"dataset_id": dataset, "model": "tiny", "config": {"batch_size": 2}}
    assert api.post("/v1/jobs", json=body).status_code == 201
    second = api.post("/v1/jobs", json=body)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "quota_exceeded"
    assert "quota is 1" in second.json()["error"]["message"]
