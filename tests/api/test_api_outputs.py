"""Metrics (raw and downsampled), advantage histograms, checkpoints (list and tar download)."""

from __future__ import annotations

import io
import tarfile

import pytest

from core.models import AdvantageHistogram, Checkpoint, Metric


@pytest.fixture
def metrics(db, job) -> dict:
    """Two series: `a` = step for steps 0..99, `b` = 10*step on even steps; a NaN in `b`."""
    rows = [Metric(job_id=job["id"], name="a", step=s, value=float(s)) for s in range(100)]
    rows += [Metric(job_id=job["id"], name="b", step=s, value=10.0 * s) for s in range(0, 100, 2)]
    rows.append(Metric(job_id=job["id"], name="c", step=3, value=float("nan")))
    db.add_all(rows)
    db.commit()
    return job


def get_metrics(client, headers, job, **params):
    response = client.get(f"/v1/jobs/{job['id']}/metrics", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["has_more"], body["next_cursor"]) == ("list", False, None)
    return {s["name"]: s for s in body["data"]}


def test_raw_series(client, alice, metrics):
    series = get_metrics(client, alice, metrics)
    assert sorted(series) == ["a", "b", "c"]
    assert series["a"]["steps"] == list(range(100)) and series["a"]["values"] == [float(s) for s in range(100)]
    assert series["c"]["values"] == [None]  # NaN is not JSON


def test_names_and_since_step(client, alice, metrics):
    series = get_metrics(client, alice, metrics, names="b, a", since_step=96)
    assert series["a"]["steps"] == [96, 97, 98, 99] and series["b"]["steps"] == [96, 98]
    assert get_metrics(client, alice, metrics, names="zzz") == {}


def test_downsampling_is_bucketed_means(client, alice, metrics):
    series = get_metrics(client, alice, metrics, names="a,b", max_points=10)
    # a: steps 0..99, width 99 // 10 + 1 = 10 -> buckets [0..9], [10..19], ...: 10 points
    assert series["a"]["steps"] == [9 + 10 * k for k in range(10)]
    assert series["a"]["values"] == [4.5 + 10 * k for k in range(10)]
    # b: steps 0..98 (even), width 98 // 10 + 1 = 10: buckets of 5 even steps
    assert series["b"]["steps"] == [8 + 10 * k for k in range(10)]
    assert series["b"]["values"] == [10.0 * (4 + 10 * k) for k in range(10)]
    assert get_metrics(client, alice, metrics, names="a", max_points=1000)["a"]["steps"] == list(range(100))
    few = get_metrics(client, alice, metrics, names="a", max_points=3)["a"]
    assert len(few["steps"]) <= 3 and few["steps"][-1] == 99


def test_max_points_is_bounded(client, alice, metrics, settings):
    response = client.get(f"/v1/jobs/{metrics['id']}/metrics?max_points={settings.max_metric_points + 1}",
                          headers=alice)
    assert response.status_code == 422 and response.json()["error"]["param"] == "max_points"
    assert client.get(f"/v1/jobs/{metrics['id']}/metrics?max_points=0", headers=alice).status_code == 422


def test_job_reports_latest_metrics(client, alice, metrics):
    body = client.get(f"/v1/jobs/{metrics['id']}", headers=alice).json()
    assert body["latest_metrics"] == {"a": 99.0}
    listed = client.get("/v1/jobs", headers=alice).json()["data"][0]
    assert listed["latest_metrics"] == {"a": 99.0}


def test_advantage_histograms_page_by_step(client, alice, db, job):
    for step in range(5):
        for name in ("advantage", "advantage/other"):
            db.add(AdvantageHistogram(job_id=job["id"], step=step, name=name, edges=[-1.0, 0.0, 1.0],
                                      counts=[step, 1]))
    db.commit()
    url = f"/v1/jobs/{job['id']}/advantages"
    page = client.get(url, headers=alice, params={"limit": 3}).json()
    assert [(h["step"], h["name"]) for h in page["data"]] == [(0, "advantage"), (0, "advantage/other")]
    assert page["has_more"] and page["next_cursor"] == "1"
    rest = client.get(url, headers=alice, params={"since_step": 1, "limit": 100}).json()
    assert len(rest["data"]) == 8 and not rest["has_more"]
    assert rest["data"][0] == {"step": 1, "name": "advantage", "edges": [-1.0, 0.0, 1.0], "counts": [1, 1]}


def test_checkpoint_list_and_download(client, alice, db, job, settings):
    directory = settings.job_run_dir(job["id"]) / "checkpoints" / "step-000002"
    (directory / "sub").mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"w" * 1000)
    (directory / "sub" / "state.json").write_text('{"step": 2}')
    (directory / "link").symlink_to("/etc/passwd")
    db.add(Checkpoint(id="ckpt_1", job_id=job["id"], step=2, path=str(directory), bytes=1011))
    db.commit()
    listed = client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=alice).json()["data"]
    assert [(c["id"], c["step"], c["bytes"], c["object"]) for c in listed] == [("ckpt_1", 2, 1011, "checkpoint")]
    response = client.get(f"/v1/jobs/{job['id']}/checkpoints/ckpt_1/content", headers=alice)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        root = f"{job['id']}-step-000002"
        assert sorted(archive.getnames()) == [root, f"{root}/model.safetensors", f"{root}/sub",
                                              f"{root}/sub/state.json"]
        assert archive.extractfile(f"{root}/model.safetensors").read() == b"w" * 1000


def test_checkpoint_outside_storage_is_not_served(client, alice, db, job, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    db.add(Checkpoint(id="ckpt_evil", job_id=job["id"], step=1, path=str(outside), bytes=0))
    db.add(Checkpoint(id="ckpt_rel", job_id=job["id"], step=2, path="../../../etc", bytes=0))
    db.commit()
    for checkpoint_id in ("ckpt_evil", "ckpt_rel", "ckpt_missing"):
        response = client.get(f"/v1/jobs/{job['id']}/checkpoints/{checkpoint_id}/content", headers=alice)
        assert response.status_code == 404, checkpoint_id


def test_non_finite_values_written_by_the_worker_read_back_as_null(client, alice, db, job):
    from core.services.jobs import add_event

    add_event(db, job["id"], "log", "nan inside", data={"loss": float("nan"), "ok": 1.0})
    db.add(AdvantageHistogram(job_id=job["id"], step=0, name="advantage", edges=[-1.0, 1.0], counts=[3]))
    db.commit()
    response = client.get(f"/v1/jobs/{job['id']}/events", headers=alice)
    assert response.status_code == 200, response.text
    assert response.json()["data"][-1]["data"] == {"loss": None, "ok": 1.0}
