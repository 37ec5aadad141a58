"""A cancel reaches a job in the middle of a long generation (issue 18): the real trainer on a tiny
model that samples near-greedily for 2,000 tokens (about a minute per step on a loaded CI core)
ends `cancelled` within seconds of the request, without finishing the step, in one process
(the `hf` engine's stop flag, checked between tokens) and in two ranks under torchrun (the worker
kills its ranks).
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.models import Dataset, Job, JobEvent, JobStatus, Metric
from trainer.tiny import build_tiny_model
from worker.tasks import execute_job

CANCEL_BOUND_S = 10.0  # generous for a loaded machine; the figure printed is what it took
# 16 sequences of 2,000 tokens on a 2-layer, 256-wide model: long enough that the cancel (1 s after
# `running`) lands inside step 1's generation on an idle machine too (a 1-layer, 64-wide model
# with 8 sequences finished its step within 3 s on an idle 2-core VM and failed this test).
LONG = {"estimator": "reinforce_pp", "n0": 0, "batch_size": 4, "rollouts_per_prompt": 4,
        "eval_fraction": 0, "eval_every": 0, "reward": "exact", "reward_workers": 0,
        "max_steps": 3, "checkpoint_every": 0,
        "sampling": {"max_new_tokens": 2000, "temperature": 0.001}}


def _long_job(make_job, settings, engine, **extra) -> str:
    job_id = make_job(config={**LONG, **extra})
    model = settings.model_roots[0] / "tiny"
    shutil.rmtree(model)  # make_job's placeholder; near-greedy sampling never reaches EOS here
    build_tiny_model(model, layers=2, hidden=256, heads=4, max_positions=2100)
    rows = "".join(f'{{"prompt": "{i}+1=", "answer": "{i + 1}"}}\n' for i in range(4))
    with Session(engine) as session:
        job = session.get(Job, job_id)
        dataset = session.get(Dataset, job.dataset_id) if job is not None else None
        assert dataset is not None
        (settings.storage_dir / dataset.path).write_text(rows)
    return job_id


def _status(engine, job_id: str) -> str:
    with Session(engine) as session:
        return session.scalar(select(Job.status).where(Job.id == job_id))


def _cancel_when_running(engine, job_id: str, out: dict) -> None:
    deadline = time.monotonic() + 300
    while _status(engine, job_id) != JobStatus.running and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside step 1's generation (no priors, no eval: it starts at once)
    with engine.begin() as conn:  # what POST /v1/jobs/{id}/cancel does to a running job
        conn.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    out["at"] = time.monotonic()


def _run_and_cancel(engine, settings, worker_settings, job_id: str) -> float:
    out: dict[str, float] = {}
    threading.Thread(target=_cancel_when_running, args=(engine, job_id, out), daemon=True).start()
    status = execute_job(job_id, engine=engine, settings=settings, worker_settings=worker_settings,
                         stop=threading.Event())
    seconds = time.monotonic() - out["at"]
    assert status == JobStatus.cancelled
    with Session(engine) as session:  # step 1 never finished: the cancel cut its generation
        assert not session.scalar(select(func.count()).select_from(Metric)
                                  .where(Metric.job_id == job_id, Metric.step >= 1))
    assert seconds < CANCEL_BOUND_S, seconds
    return seconds


def test_cancel_stops_a_long_generation_within_seconds(engine, settings, worker_settings, make_job):
    job_id = _long_job(make_job, settings, engine)
    seconds = _run_and_cancel(engine, settings, worker_settings, job_id)
    with Session(engine) as session:
        stopped = session.scalars(select(JobEvent.message).where(
            JobEvent.job_id == job_id, JobEvent.kind == "stopped")).all()
    assert stopped == ["stop requested while generating step 1; the step is abandoned (a resume "
                       "starts after the last checkpoint)"]
    print(f"\nFIGURES cancel mid-generation, 1 process: cancelled {seconds:.1f} s after the request")


@pytest.mark.distributed
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cancel_stops_a_two_rank_generation_within_seconds(engine, settings, worker_settings,
                                                           make_job, monkeypatch):
    from worker import distributed

    monkeypatch.setattr(distributed, "POLL_SECONDS", 0.2)
    job_id = _long_job(make_job, settings, engine, num_processes=2)
    seconds = _run_and_cancel(engine, settings, worker_settings, job_id)
    print(f"\nFIGURES cancel mid-generation, 2 ranks: cancelled {seconds:.1f} s after the request")
