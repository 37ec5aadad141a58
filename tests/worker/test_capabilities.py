"""A worker's row in the registry (worker/capabilities.py) on both databases: what it detects,
the heartbeat that keeps it alive, the job it runs, and a clean stop."""

from __future__ import annotations

import importlib.util
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import workers
from core.models import Worker
from tests.worker.test_tasks import FakeTrainer
from worker import capabilities
from worker.config import WorkerSettings
from worker.tasks import execute_job


def test_detect_defaults_to_two_process_slots_without_a_gpu():
    ws = WorkerSettings(gpus=0)
    info = capabilities.detect("gpu-1@h", ["gpu"], ws)
    assert (info.gpus, info.max_processes, info.queues) == (0, 2, ["gpu"])
    assert info.engines == ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else [])


@pytest.mark.parametrize(("gpus", "max_processes", "slots"), [(4, None, 4), (4, 2, 2), (0, 3, 3)])
def test_slots_follow_the_gpus_unless_configured(gpus, max_processes, slots):
    info = capabilities.detect("w", ["gpu"], WorkerSettings(gpus=gpus, max_processes=max_processes))
    assert (info.gpus, info.max_processes) == (gpus, slots)


def _row(engine, worker_id: str) -> Worker | None:
    with Session(engine) as session:
        return session.get(Worker, worker_id)


@pytest.fixture
def advertiser(engine, settings, worker_settings):
    adv = capabilities.Advertiser("gpu-1@h", ["gpu"], engine=engine, settings=settings,
                                  worker_settings=worker_settings.model_copy(update={"gpus": 0}))
    yield adv
    adv._done.set()


def test_the_heartbeat_keeps_the_row_alive_and_a_clean_stop_ends_it(advertiser, engine, settings):
    advertiser.start()
    for _ in range(100):
        if (row := _row(engine, "gpu-1@h")) is not None:
            break
        advertiser._done.wait(0.1)
    assert row is not None and row.engines[0] == "hf" and row.max_processes == 2
    first = row.heartbeat_at
    advertiser._done.wait(0.5)  # a few 0.2 s beats
    assert _row(engine, "gpu-1@h").heartbeat_at > first
    with Session(engine) as session:
        assert [w.id for w in workers.live_workers(session, settings)] == ["gpu-1@h"]
    advertiser.stop()
    row = _row(engine, "gpu-1@h")
    assert row.stopped_at is not None and not workers.is_alive(row, settings)


def test_a_beat_forgets_long_dead_workers_and_restores_its_own_row(advertiser, engine, settings):
    advertiser.info = capabilities.detect("gpu-1@h", ["gpu"], advertiser.ws)
    dead = workers.WorkerInfo(id="old@h", hostname="h", pid=2, queues=["gpu"], engines=["hf"],
                              gpus=0, max_processes=2)
    with engine.begin() as conn:
        workers.beat(conn, dead)
        conn.execute(update(Worker).values(heartbeat_at=datetime(2020, 1, 1, tzinfo=UTC)))
    advertiser.beat()
    with Session(engine) as session:
        assert session.scalars(select(Worker.id)).all() == ["gpu-1@h"]


def test_the_row_names_the_job_the_worker_runs(advertiser, engine, settings, worker_settings,
                                               make_job, monkeypatch):
    advertiser.info = capabilities.detect("gpu-1@h", ["gpu"], advertiser.ws)
    monkeypatch.setattr(capabilities, "current", advertiser)
    job_id = make_job(config={"estimator": "reinforce_pp", "n0": 0, "max_steps": 2, "batch_size": 2,
                              "eval_every": 0, "reward": "exact"})
    seen = []
    trainer = FakeTrainer(steps=2, after_step=lambda step: seen.append(_row(engine, "gpu-1@h").current_job_id))
    assert execute_job(job_id, engine=engine, settings=settings, worker_settings=worker_settings,
                       stop=threading.Event(), train_fn=trainer) == "succeeded"
    assert seen == [job_id, job_id]
    assert _row(engine, "gpu-1@h").current_job_id is None
