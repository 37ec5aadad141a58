"""Metrics (raw and downsampled), advantage histograms, checkpoints (list and tar download)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from sqlalchemy import insert

from core.models import AdvantageHistogram, Checkpoint, Metric

EDGES = [round(-1 + 0.1 * i, 6) for i in range(21)]  # the trainer's fixed edges: 20 bins on [-1, 1]


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
    assert rest["data"][0] == {"step": 1, "step_from": 1, "step_to": 1, "name": "advantage",
                               "edges": [-1.0, 0.0, 1.0], "counts": [1, 1]}


@pytest.fixture
def long_job(db, job) -> tuple[dict, np.ndarray]:
    """A 20,000-step job (steps 5..20004) with one `advantage` histogram per step: (job, counts (T, 20))."""
    counts = np.random.default_rng(0).integers(0, 50, size=(20_000, 20))
    db.execute(insert(AdvantageHistogram), [
        {"job_id": job["id"], "step": 5 + t, "name": "advantage", "edges": EDGES, "counts": row.tolist()}
        for t, row in enumerate(counts)])
    db.commit()
    return job, counts


def get_advantages(client, headers, job, **params) -> list[dict]:
    response = client.get(f"/v1/jobs/{job['id']}/advantages", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["has_more"], body["next_cursor"]) == (False, None)
    return body["data"]


def test_advantages_downsampled_over_a_whole_long_run(client, alice, long_job):
    job, counts = long_job
    data = get_advantages(client, alice, job, max_steps=300)
    assert 250 <= len(data) <= 300
    # Consecutive buckets tile first..last step with no gap and no overlap, `step` is a bucket's last.
    assert data[0]["step_from"] == 5 and data[-1]["step_to"] == data[-1]["step"] == 20_004
    assert all(a["step_to"] + 1 == b["step_from"] for a, b in zip(data, data[1:], strict=False))
    for h in data:  # each bucket's counts are the sums over exactly the steps it covers
        assert h["edges"] == EDGES
        assert h["counts"] == counts[h["step_from"] - 5:h["step_to"] - 4].sum(axis=0).tolist()
    assert np.sum([h["counts"] for h in data]) == counts.sum()
    assert len(get_advantages(client, alice, job, max_steps=1)) == 1
    late = get_advantages(client, alice, job, max_steps=10, since_step=20_000)
    assert [(h["step_from"], h["step_to"]) for h in late] == [(s, s) for s in range(20_000, 20_005)]


def test_advantages_downsampling_rebins_differing_edges(client, alice, db, job):
    rows = [(0, "advantage", [-1.0, 0.0, 1.0], [4, 6]),
            (1, "advantage", [-1.0, -0.5, 0.0, 0.5, 1.0], [1, 2, 3, 4]),
            (2, "advantage", [-1.0, 1.0], [7]),
            (3, "advantage", [-2.0, 0.0, 2.0], [10, 30]),  # the latest edges: the bucket's target
            (0, "advantage/other", [-1.0, 1.0], [5]),
            (1, "advantage/other", [0.0, 1.0], [None]),  # malformed (NaN written as null): left out
            (2, "broken", [1.0, 0.0], [3])]  # edges not increasing: nothing to return
    db.add_all(AdvantageHistogram(job_id=job["id"], step=s, name=n, edges=e, counts=c) for s, n, e, c in rows)
    db.commit()
    data = get_advantages(client, alice, job, max_steps=2)  # width 3 // 2 + 1 = 2: steps {0, 1}, {2, 3}
    got = {(h["name"], h["step_from"], h["step_to"]): (h["edges"], h["counts"]) for h in data}
    # {0,1} on edges [-1,-.5,0,.5,1]: [4, 6] split evenly into halves -> [2, 2, 3, 3], plus [1, 2, 3, 4]
    assert got[("advantage", 0, 1)] == ([-1.0, -0.5, 0.0, 0.5, 1.0], [3, 4, 6, 7])
    # {2,3} on edges [-2,0,2]: [7] on [-1,1] is half below 0 -> 3.5 / 3.5, rounded keeping the total 47
    edges, merged = got[("advantage", 2, 3)]
    assert edges == [-2.0, 0.0, 2.0] and sum(merged) == 47
    assert abs(merged[0] - 13.5) <= 0.5 and abs(merged[1] - 33.5) <= 0.5
    assert got[("advantage/other", 0, 0)] == ([-1.0, 1.0], [5])  # covers only the step it kept
    assert {key[0] for key in got} == {"advantage", "advantage/other"}


@pytest.mark.parametrize("value", ["0", "-3", "1001", "many", "2.5"])
def test_advantages_max_steps_is_validated(client, alice, job, value):
    response = client.get(f"/v1/jobs/{job['id']}/advantages?max_steps={value}", headers=alice)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "max_steps"


def test_advantages_downsampling_empty_and_foreign_job(client, alice, bob, job):
    assert get_advantages(client, alice, job, max_steps=5) == []
    response = client.get(f"/v1/jobs/{job['id']}/advantages?max_steps=5", headers=bob)
    assert response.status_code == 404


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
    from core.jobs.events import record_event

    record_event(db, job["id"], "log", "nan inside", data={"loss": float("nan"), "ok": 1.0})
    db.add(AdvantageHistogram(job_id=job["id"], step=0, name="advantage", edges=[-1.0, 1.0], counts=[3]))
    db.commit()
    response = client.get(f"/v1/jobs/{job['id']}/events", headers=alice)
    assert response.status_code == 200, response.text
    assert response.json()["data"][-1]["data"] == {"loss": None, "ok": 1.0}
