"""Service functions on a real database: keys, JSONL limits, model names, cancel races, metrics SQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from core.db import session_factory
from core.jobs.service import cancel_job
from core.models import Job, JobStatus, Metric, User
from core.services import keys
from core.services.catalog import list_models, resolve_model
from core.services.errors import Invalid, NotFound, TooLarge
from core.services.jsonl import validate_jsonl
from core.services.metrics import read_metrics

LIMITS = {"max_rows": 10, "max_line_bytes": 200, "max_depth": 5}


@pytest.fixture
def session(db_url):
    from core.db import make_engine

    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def test_keys_authenticate_until_revoked(session):
    key, secret = keys.create_key(session, "dana")
    _, other = keys.create_key(session, "dana")
    session.commit()
    assert keys.authenticate(session, secret).name == "dana"
    assert keys.authenticate(session, secret + "x") is None and keys.authenticate(session, None) is None
    with pytest.raises(Invalid):
        keys.revoke_key(session, "bk_")  # too short to be safe
    assert keys.revoke_key(session, key.prefix) == 1
    assert keys.authenticate(session, secret) is None
    assert keys.authenticate(session, other).name == "dana"  # one key revoked, not the user


@pytest.mark.parametrize("data, error, param", [
    (b'{"prompt": "p", "answer": "a"}\n' * 11, TooLarge, "file"),
    (b'{"prompt": "' + b"x" * 300 + b'", "answer": "a"}\n', Invalid, "file:line 1"),
    (b'\n{"prompt": "p", "answer": "a", "x": [[[[[[1]]]]]]}\n', Invalid, "file:line 2"),
    (b'{"prompt": "", "answer": "a"}\n', Invalid, "file:line 1"),
    (b'{"prompt": "p", "answer": true}\n', Invalid, "file:line 1"),
])
def test_jsonl_limits(data, error, param):
    with pytest.raises(error) as caught:
        validate_jsonl(data, **LIMITS)
    assert caught.value.param == param


def test_jsonl_accepts_chat_prompts_and_numbers():
    rows = [{"prompt": [{"role": "user", "content": "2+2?"}], "answer": 4, "id": "q1"},
            {"prompt": "3+3?", "answer": "6"}]
    assert validate_jsonl("\n".join(json.dumps(r) for r in rows).encode(), **LIMITS) == 2


def test_model_names_never_become_paths(session, settings, tmp_path):
    (settings.model_roots[0] / "m").mkdir(parents=True)
    (settings.model_roots[0] / "m" / "config.json").write_text("{}")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "config.json").write_text("{}")
    assert [m.name for m in list_models(session, settings, "user_x")] == ["m"]
    assert resolve_model(session, settings, "user_x", "m").path == settings.model_roots[0] / "m"
    for bad in ("../outside", "/etc", "m/../../outside", "..", "a/b/c", "", "m\x00"):
        with pytest.raises(Invalid):
            resolve_model(session, settings, "user_x", bad)
    with pytest.raises(NotFound):
        resolve_model(session, settings, "user_x", "outside")


def _job(session, owner: User, status: str = JobStatus.queued) -> Job:
    job = Job(owner_id=owner.id, model="m", estimator="basis", config={}, queue="gpu", status=status)
    session.add(job)
    session.commit()
    return job


def test_cancel_loses_no_race_with_the_worker(session):
    owner = keys.get_or_create_user(session, "erin")
    job = _job(session, owner)
    # The worker takes the job between the API's read and its conditional update.
    session.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.running))
    session.commit()
    session.expire_all()
    cancelled = cancel_job(session, owner, job.id)
    assert cancelled.status == JobStatus.running and cancelled.cancel_requested


def test_downsampling_bounds_points_for_any_span(session):
    owner = keys.get_or_create_user(session, "finn")
    job = _job(session, owner)
    session.add_all([Metric(job_id=job.id, name="r", step=s, value=1.0) for s in range(5, 1005, 3)])
    session.commit()
    for max_points in (1, 2, 7, 100, 333, 334, 1000):
        [series] = read_metrics(session, job, max_points=max_points)
        assert 1 <= len(series["steps"]) <= max_points
        assert series["steps"][-1] == 1004 and series["values"] == [1.0] * len(series["steps"])
        assert series["steps"] == sorted(series["steps"])


def test_json_fast_path_matches_the_portable_path(session):
    from core.services.metrics import read_metrics_json

    owner = keys.get_or_create_user(session, "gus")
    job = _job(session, owner)
    rows = [Metric(job_id=job.id, name=name, step=s, value=s * 0.25 + len(name))
            for name in ("reward/mean", "loss/policy", "eval/accuracy") for s in range(0, 300, 1 + len(name) % 3)]
    rows.append(Metric(job_id=job.id, name="kl/mean", step=7, value=None))
    session.add_all(rows)
    session.commit()
    for kwargs in ({}, {"max_points": 17}, {"names": ["loss/policy", "kl/mean"], "since_step": 5},
                   {"names": ["nothing"], "max_points": 3}, {"since_step": 10_000, "max_points": 5}):
        portable = sorted(read_metrics(session, job, **kwargs), key=lambda s: s["name"])
        fast = sorted(json.loads(read_metrics_json(session, job, **kwargs)), key=lambda s: s["name"])
        assert [s["name"] for s in fast] == [s["name"] for s in portable], kwargs
        for a, b in zip(fast, portable, strict=True):
            assert a["steps"] == b["steps"] and a["values"] == pytest.approx(b["values"]), kwargs
