"""Job detail actions under AppTest against the real API: Retry on failed/cancelled jobs, Delete on
finished ones behind a confirmation, and the API's refusal shown when a job changed meanwhile.

Each test makes its own user and job through the API, so the seeded jobs other tests read stay."""

from __future__ import annotations

import httpx
import streamlit as st
from sqlalchemy import update

from core.db import session_scope
from core.models import Job
from core.services.keys import create_key
from tests.dashboard.dashboard_apptest import app_test


def own_job(stack, user: str, *, status: str | None = None) -> tuple[str, str]:
    """(key, job id): a new user's job created through the API, then moved to `status` as a worker
    would (with a checkpoint in its run dir)."""
    with session_scope(stack.app.state.engine) as session:
        _, key = create_key(session, user)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        dataset = http.post("/v1/datasets", files={"file": ("d.jsonl", b'{"prompt": "1+1?", "answer": "2"}\n',
                                                            "application/jsonl")})
        assert dataset.status_code == 201, dataset.text
        job = http.post("/v1/jobs", json={"dataset_id": dataset.json()["id"], "model": stack.seeded.model,
                                          "config": {"estimator": "basis", "max_steps": 3, "batch_size": 1}})
        assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    if status:
        with session_scope(stack.app.state.engine) as session:
            session.execute(update(Job).where(Job.id == job_id).values(
                status=status, error="RuntimeError: boom" if status == "failed" else None))
        ckpt = stack.settings.job_run_dir(job_id) / "checkpoints" / "step-000001"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"w")
    return key, job_id


def api(stack, key: str, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"{stack.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def texts(elements) -> str:
    return " ".join(e.value for e in elements)


def test_job_detail_retry_requeues_a_failed_job(stack):
    key, job_id = own_job(stack, "retry-user", status="failed")
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    assert not at.exception
    assert at.button(key="delete_job").disabled  # until confirmed
    at.button(key="retry_job").click().run()
    assert not at.exception
    assert "Job queued again" in texts(at.success)
    assert {m.label: m.value for m in at.metric}["Status"] == "queued"
    assert api(stack, key, "GET", f"/v1/jobs/{job_id}").json()["status"] == "queued"
    # A queued job offers Cancel, not Retry or Delete.
    keys = {b.key for b in at.button}
    assert "cancel_job" in keys and "retry_job" not in keys and "delete_job" not in keys


def test_job_detail_delete_needs_confirmation_then_returns_to_jobs(stack):
    key, job_id = own_job(stack, "delete-user")
    assert api(stack, key, "POST", f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    run_dir = stack.settings.job_run_dir(job_id)
    (run_dir / "checkpoints").mkdir(parents=True)
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    assert not at.exception
    assert "retry_job" in {b.key for b in at.button}  # cancelled jobs can be retried too
    assert at.button(key="delete_job").disabled
    at.checkbox(key=f"confirm_delete_{job_id}").check().run()
    assert not at.button(key="delete_job").disabled
    at.button(key="delete_job").click().run()
    assert not at.exception
    assert at.title[0].value == "Jobs"
    assert f"Deleted job {job_id}" in texts(at.success)
    assert any("No jobs yet" in i.value for i in at.info)  # the user's only job is gone
    assert api(stack, key, "GET", f"/v1/jobs/{job_id}").status_code == 404
    assert not run_dir.exists()


def test_job_detail_shows_why_an_action_was_refused(stack):
    """The job changed after the page was drawn (retried from the CLI): both actions get a 409,
    shown as a clear error, and nothing is deleted."""
    key, job_id = own_job(stack, "race-user", status="failed")
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    assert api(stack, key, "POST", f"/v1/jobs/{job_id}/retry").status_code == 200
    at.button(key="retry_job").click().run()
    assert not at.exception
    assert "Could not retry this job" in texts(at.error) and "only failed or cancelled" in texts(at.error)

    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)  # drawn as queued: no delete
    assert "delete_job" not in {b.key for b in at.button}
    assert api(stack, key, "POST", f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    st.cache_data.clear()  # the page reads the job as it is now (cancelled), not as cached
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    at.checkbox(key=f"confirm_delete_{job_id}").check().run()
    assert api(stack, key, "POST", f"/v1/jobs/{job_id}/retry").status_code == 200
    at.button(key="delete_job").click().run()
    assert not at.exception and at.title[0].value == "Job detail"
    assert "Could not delete this job" in texts(at.error) and "cancel it first" in texts(at.error)
    assert api(stack, key, "GET", f"/v1/jobs/{job_id}").json()["status"] == "queued"
