"""A user's quota on stored checkpoints (issue 18, core/jobs/checkpoint_quota.py), enforced by the
worker before each checkpoint is written: the job's own older checkpoints make room (never its
newest, never another job's); when that is not enough the job fails saying what to do."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Checkpoint, Job, JobEvent
from worker.tasks import execute_job

MB = 2**20


class CheckpointingTrainer:
    """Writes a `size`-byte checkpoint every step, asking `before_checkpoint` first, as the loop does."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, config, sink, *, run_dir: Path, should_stop, on_status, on_checkpoint,
                 resume: bool, before_checkpoint):
        from trainer.loop import TrainResult

        on_status("running")
        for step in range(1, config.max_steps + 1):
            sink.log_step(step, {"reward/mean": 0.5}, {})
            before_checkpoint(step, self.size)
            ckpt = Path(run_dir) / "checkpoints" / f"step-{step:06d}"
            ckpt.mkdir(parents=True)
            (ckpt / "model.safetensors").write_bytes(b"\0" * self.size)
            on_checkpoint(step, ckpt)
        return TrainResult(steps=config.max_steps, stopped=False, initial_eval_accuracy=None,
                           final_eval_accuracy=None, seconds=0.0)


def _run(job_id, engine, settings, worker_settings, size):
    return execute_job(job_id, engine=engine, settings=settings, worker_settings=worker_settings,
                       stop=threading.Event(), train_fn=CheckpointingTrainer(size))


def _checkpoints(engine, job_id):
    with engine.connect() as conn:
        return conn.execute(select(Checkpoint.step, Checkpoint.path).where(Checkpoint.job_id == job_id)
                            .order_by(Checkpoint.step)).all()


def _owner(engine, job_id):
    with engine.connect() as conn:
        return conn.scalar(select(Job.owner_id).where(Job.id == job_id))


def test_a_job_removes_its_own_older_checkpoints_to_stay_within_the_quota(
        engine, settings, make_job, worker_settings):
    settings.quota_checkpoints = 2
    job_id = make_job(config={"estimator": "reinforce_pp", "max_steps": 4})
    assert _run(job_id, engine, settings, worker_settings, 1000) == "succeeded"
    kept = _checkpoints(engine, job_id)
    assert [c.step for c in kept] == [3, 4]
    on_disk = sorted(p.name for p in (settings.job_run_dir(job_id) / "checkpoints").iterdir())
    assert on_disk == ["step-000003", "step-000004"]  # the removed ones' files went too
    with engine.connect() as conn:
        messages = conn.scalars(select(JobEvent.message).where(
            JobEvent.job_id == job_id, JobEvent.kind == "checkpoint")).all()
    assert any("removed this job's checkpoints at steps 1" in m and "checkpoint quota" in m
               for m in messages), messages


def test_a_job_that_cannot_fit_fails_before_writing_and_other_jobs_keep_theirs(
        engine, settings, make_job, worker_settings):
    settings.quota_checkpoint_bytes = int(2.5 * MB)
    first = make_job(config={"estimator": "reinforce_pp", "max_steps": 2})
    assert _run(first, engine, settings, worker_settings, MB) == "succeeded"  # 2 MB stored
    # A second job of the same owner: 2 MB stored + its 1 MB > 2.5 MB, and it has nothing older.
    with engine.connect() as conn:
        dataset_id = conn.scalar(select(Job.dataset_id).where(Job.id == first))
    with Session(engine) as session:
        job = Job(owner_id=_owner(engine, first), dataset_id=dataset_id, model="tiny",
                  estimator="reinforce_pp", config={"estimator": "reinforce_pp", "max_steps": 3},
                  status="queued", queue="gpu")
        session.add(job)
        session.commit()
        second = job.id
    assert _run(second, engine, settings, worker_settings, MB) == "failed"
    with engine.connect() as conn:
        error = conn.scalar(select(Job.error).where(Job.id == second))
    assert "checkpoint quota exceeded" in error and "2.0 MB" in error and "2.5 MB" in error, error
    assert "Delete jobs you no longer need" in error
    assert [c.step for c in _checkpoints(engine, first)] == [1, 2]  # never another job's
    assert _checkpoints(engine, second) == []
    assert not (settings.job_run_dir(second) / "checkpoints").exists()  # nothing written


def test_another_users_checkpoints_do_not_count(engine, settings, make_job, worker_settings):
    settings.quota_checkpoints = 2
    other = make_job(config={"estimator": "reinforce_pp", "max_steps": 2})
    assert _run(other, engine, settings, worker_settings, 10) == "succeeded"
    mine = make_job(config={"estimator": "reinforce_pp", "max_steps": 2})  # make_job: a new user
    assert _owner(engine, mine) != _owner(engine, other)
    assert _run(mine, engine, settings, worker_settings, 10) == "succeeded"
    assert [c.step for c in _checkpoints(engine, mine)] == [1, 2]
