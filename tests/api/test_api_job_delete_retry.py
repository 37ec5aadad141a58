"""DELETE /v1/jobs/{id} (rows and run dir of a finished job) and POST /v1/jobs/{id}/retry (a failed
or cancelled job back in the queue, claimable at once and resumed from its checkpoint)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from core.models import AdvantageHistogram, Checkpoint, Job, JobEvent, Metric, utcnow

CHILDREN = (JobEvent, Metric, AdvantageHistogram, Checkpoint)


def finish(db, job_id: str, status: str, **values) -> None:
    """Move a job to `status` with the outputs a worker leaves: metrics, a histogram, an event and
    a checkpoint (row and files under the job's run dir), as a run that reached step 2 would."""
    db.execute(update(Job).where(Job.id == job_id).values(status=status, current_step=2, **values))
    for step in (1, 2):
        db.add(Metric(job_id=job_id, name="reward/mean", step=step, value=0.5))
        db.add(AdvantageHistogram(job_id=job_id, step=step, edges=[-1.0, 1.0], counts=[2]))
    db.add(JobEvent(job_id=job_id, kind="checkpoint", message="saved step-000002", ts=utcnow()))
    db.add(Checkpoint(job_id=job_id, step=2, path=f"jobs/{job_id}/checkpoints/step-000002", bytes=5))
    db.commit()


def run_dir_with_checkpoint(settings, job_id: str):
    run_dir = settings.job_run_dir(job_id)
    ckpt = run_dir / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"weights")
    (ckpt / "state.json").write_text("{\"step\": 2}")  # what marks a checkpoint complete
    (run_dir / "metrics.jsonl").write_text("{}\n")
    return run_dir


def rows_of(db, job_id: str) -> dict[str, int]:
    db.expire_all()
    counts = {model.__tablename__: db.scalar(select(func.count()).select_from(model)
                                             .where(model.job_id == job_id)) for model in CHILDREN}
    counts["jobs"] = db.scalar(select(func.count()).select_from(Job).where(Job.id == job_id))
    return counts


def assert_conflict(response, *, says: str, param: str = "job_id") -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict" and error["param"] == param and says in error["message"], error


# --------------------------------------------------------------------------------------- delete


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_delete_a_finished_job_removes_its_rows_and_run_dir(client, alice, create_job, dataset, job,
                                                            db, settings, status):
    other = create_job(alice, dataset["id"]).json()  # a neighbour that must keep everything
    for job_id in (job["id"], other["id"]):
        finish(db, job_id, status)
    run_dir = run_dir_with_checkpoint(settings, job["id"])
    other_dir = run_dir_with_checkpoint(settings, other["id"])
    before = rows_of(db, job["id"])
    assert all(before.values()), before

    response = client.delete(f"/v1/jobs/{job['id']}", headers=alice)
    assert response.status_code == 204 and response.content == b""
    assert set(rows_of(db, job["id"]).values()) == {0}
    assert not run_dir.exists() and settings.jobs_dir.is_dir()
    assert rows_of(db, other["id"]) == before and (other_dir / "checkpoints").is_dir()
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice).status_code == 404
    assert [j["id"] for j in client.get("/v1/jobs", headers=alice).json()["data"]] == [other["id"]]
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 200
    again = client.delete(f"/v1/jobs/{job['id']}", headers=alice)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_delete_a_job_that_never_wrote_a_run_dir(client, alice, job):
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{job['id']}", headers=alice).status_code == 204


@pytest.mark.parametrize("status", ["queued", "estimating_priors", "running"])
def test_delete_an_active_job_is_refused_and_changes_nothing(client, alice, job, db, settings, status):
    finish(db, job["id"], status)
    run_dir = run_dir_with_checkpoint(settings, job["id"])
    before = rows_of(db, job["id"])
    response = client.delete(f"/v1/jobs/{job['id']}", headers=alice)
    assert_conflict(response, says="cancel it first")
    assert status in response.json()["error"]["message"]
    assert rows_of(db, job["id"]) == before and (run_dir / "checkpoints" / "step-000002").is_dir()


def test_a_run_dir_that_cannot_be_removed_is_logged_and_the_delete_still_succeeds(
        client, alice, job, db, settings, tmp_path, caplog):
    """A symlinked run dir is not followed (its target is outside the job), only reported."""
    finish(db, job["id"], "failed")
    outside = tmp_path / "not-the-jobs"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    settings.job_run_dir(job["id"]).symlink_to(outside, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        response = client.delete(f"/v1/jobs/{job['id']}", headers=alice)
    assert response.status_code == 204
    assert set(rows_of(db, job["id"]).values()) == {0}
    assert (outside / "precious.txt").read_text() == "keep me"
    assert any(job["id"] in r.getMessage() and "run dir was not removed" in r.getMessage()
               for r in caplog.records), caplog.text


# ---------------------------------------------------------------------------------------- retry


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_retry_requeues_clears_the_outcome_and_enqueues_after_commit(client, alice, job, db, settings,
                                                                     enqueued, status):
    started = datetime(2026, 1, 2, tzinfo=UTC)
    finish(db, job["id"], status, error="RuntimeError: boom", finished_at=utcnow(),
           cancel_requested=status == "cancelled", started_at=started, lease_epoch=3)
    run_dir = run_dir_with_checkpoint(settings, job["id"])
    enqueued.clear()

    response = client.post(f"/v1/jobs/{job['id']}/retry", headers=alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["error"], body["finished_at"], body["cancel_requested"]) == (
        job["id"], "queued", None, None, False)
    assert body["started_at"].startswith("2026-01-02") and body["current_step"] == 2
    assert enqueued == [(job["id"], job["queue"], True)]  # True: the queued row was committed first
    db.expire_all()
    row = db.get(Job, job["id"])
    assert row.lease_epoch == 4  # fences any late write of the worker that held epoch 3
    assert row.updated_at < datetime(2000, 1, 1, tzinfo=UTC)  # released: claimable at once
    last = db.scalars(select(JobEvent).where(JobEvent.job_id == job["id"]).order_by(JobEvent.id.desc())).first()
    assert (last.kind, last.data) == ("status", {"status": "queued", "from": status, "retry": True})
    assert "retry requested" in last.message
    # What the resumed run starts from is kept: metrics, histograms and the checkpoint.
    counts = rows_of(db, job["id"])
    assert (counts["metrics"], counts["advantage_histograms"], counts["checkpoints"]) == (2, 2, 1)
    assert (run_dir / "checkpoints" / "step-000002" / "model.safetensors").is_file()


def test_a_retried_job_is_claimed_at_once_as_a_resume(client, alice, job, db, app, settings):
    """The worker's lease (core/jobs/lifecycle.py) takes the retried job without waiting for the
    stale limit, and sees a job that started before, so it resumes from the newest checkpoint."""
    from core.jobs import lifecycle

    finish(db, job["id"], "failed", started_at=utcnow(), finished_at=utcnow(), lease_epoch=1)
    run_dir_with_checkpoint(settings, job["id"])  # its files are there: a resume, not a 409
    assert client.post(f"/v1/jobs/{job['id']}/retry", headers=alice).status_code == 200
    with app.state.engine.begin() as conn:
        claim = lifecycle.claim(conn, job["id"], stale_after_seconds=3600)
        assert claim is not None and claim.resumed and claim.epoch == 3 and not claim.cancel_requested
        assert lifecycle.latest_checkpoint_step(conn, job["id"]) == 2
        assert lifecycle.claim(conn, job["id"], stale_after_seconds=3600) is None  # one winner


@pytest.mark.parametrize("status", ["succeeded", "queued", "estimating_priors", "running"])
def test_retry_of_a_job_that_is_not_failed_or_cancelled_is_refused(client, alice, job, db, enqueued,
                                                                   status):
    finish(db, job["id"], status)
    enqueued.clear()
    before = db.get(Job, job["id"]).lease_epoch
    response = client.post(f"/v1/jobs/{job['id']}/retry", headers=alice)
    assert_conflict(response, says="only failed or cancelled jobs can be retried")
    db.expire_all()
    assert db.get(Job, job["id"]).status == status and db.get(Job, job["id"]).lease_epoch == before
    assert enqueued == []


def test_retry_of_a_job_whose_dataset_was_deleted_is_refused(client, alice, job, dataset, db, enqueued):
    finish(db, job["id"], "failed")
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 204
    enqueued.clear()
    assert_conflict(client.post(f"/v1/jobs/{job['id']}/retry", headers=alice),
                    says="dataset", param="dataset_id")
    assert enqueued == [] and client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["status"] == "failed"


def test_retry_with_the_queue_down_keeps_the_job_queued(client, alice, job, db, app, settings):
    finish(db, job["id"], "cancelled")
    run_dir_with_checkpoint(settings, job["id"])

    def broken(job_id, queue):
        raise ConnectionError("broker down")

    app.state.enqueue = broken
    response = client.post(f"/v1/jobs/{job['id']}/retry", headers=alice)
    assert response.status_code == 200 and response.json()["status"] == "queued"
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job['id']}/events", headers=alice).json()["data"]]
    assert kinds[-1] == "enqueue_failed"


# ------------------------------------------------------------------------------ ownership, 404s


def test_another_owners_job_and_unknown_ids_are_404_for_delete_and_retry(client, alice, bob, job, db,
                                                                        settings, enqueued):
    finish(db, job["id"], "failed")
    run_dir = run_dir_with_checkpoint(settings, job["id"])
    before = rows_of(db, job["id"])
    enqueued.clear()
    for job_id, headers in [(job["id"], bob), ("job_doesnotexist000000000000", alice)]:
        for method, path in [("DELETE", f"/v1/jobs/{job_id}"), ("POST", f"/v1/jobs/{job_id}/retry")]:
            response = client.request(method, path, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"] == {"code": "not_found", "message": f"no job {job_id!r}",
                                                "param": "job_id"}
    assert rows_of(db, job["id"]) == before and run_dir.is_dir() and enqueued == []
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["status"] == "failed"


def test_cli_retry_and_delete(client, alice, job, db, settings, monkeypatch, capsys):
    """`basis jobs retry ID` prints the queued job; `basis jobs delete ID` refuses an active job in
    one line on stderr and deletes a finished one."""
    from cli.main import main
    from core.settings import get_settings

    monkeypatch.setenv("BASIS_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    get_settings.cache_clear()

    def basis(*argv: str):
        status = main(list(argv), http=client)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    try:
        finish(db, job["id"], "failed")
        run_dir = run_dir_with_checkpoint(settings, job["id"])
        status, out, _ = basis("jobs", "retry", job["id"])
        assert status == 0 and json.loads(out)["status"] == "queued"
        status, out, err = basis("jobs", "delete", job["id"])
        assert (status, out) == (1, "") and "conflict" in err and "cancel it first" in err
        assert basis("jobs", "cancel", job["id"])[0] == 0
        status, out, _ = basis("jobs", "delete", job["id"])
        assert status == 0 and f"deleted job {job['id']}" in out and not run_dir.exists()
        assert basis("jobs", "get", job["id"])[0] == 1
    finally:
        get_settings.cache_clear()
