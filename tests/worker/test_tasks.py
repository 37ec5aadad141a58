"""`execute_job` (the body of `run_job`) on real databases, with hand-written trainers that follow
`trainer.loop.train`'s contract: statuses, cancellation, failures, redelivery, shutdown."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.jobs.lifecycle import RELEASED_AT
from core.models import Checkpoint, Job, JobEvent, JobStatus, Metric
from tests.worker.conftest import LONG_AGO, Hist
from worker.tasks import JobInterrupted, execute_job

GOOD_CONFIG = {"estimator": "reinforce_pp", "n0": 0, "max_steps": 3, "batch_size": 2,
               "eval_every": 0, "reward": "exact"}


class FakeTrainer:
    """Follows the `train()` contract: statuses, one `log_step` per step, a checkpoint per step,
    `should_stop` before every step. `after_step(step)` lets a test act mid-run."""

    def __init__(self, steps: int = 3, after_step=None, fail_at: int | None = None):
        self.steps, self.after_step, self.fail_at = steps, after_step, fail_at
        self.calls: list[dict] = []

    def __call__(self, config, sink, *, run_dir: Path, should_stop, on_status, on_checkpoint,
                 resume: bool, before_checkpoint=None):
        self.calls.append({"config": config, "run_dir": run_dir, "resume": resume})
        on_status("estimating_priors")
        on_status("running")
        done = 0
        for step in range(1, self.steps + 1):
            if should_stop():
                return SimpleNamespace(steps=done, stopped=True, initial_eval_accuracy=None,
                                       final_eval_accuracy=None, seconds=0.1)
            if step == self.fail_at:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            sink.log_step(step, {"reward/mean": step / 10}, {"advantage": Hist([-1.0, 1.0], [step])})
            ckpt = run_dir / "checkpoints" / f"step-{step:06d}"
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / "state.bin").write_bytes(b"0" * step)
            on_checkpoint(step, ckpt)
            done = step
            if self.after_step:
                self.after_step(step)
        return SimpleNamespace(steps=done, stopped=False, initial_eval_accuracy=0.0,
                               final_eval_accuracy=0.5, seconds=0.3)


def _job(engine, job_id) -> Job:
    with Session(engine) as session:
        return session.get(Job, job_id)


def _events(engine, job_id):
    with engine.connect() as conn:
        return conn.execute(select(JobEvent.kind, JobEvent.level, JobEvent.message, JobEvent.data)
                            .where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()


def _statuses(engine, job_id):
    return [e.data["status"] for e in _events(engine, job_id) if e.kind == "status"]


@pytest.fixture
def run(engine, settings, worker_settings):
    def run_one(job_id, trainer, stop=None):
        return execute_job(job_id, engine=engine, settings=settings,
                           worker_settings=worker_settings, stop=stop or threading.Event(),
                           train_fn=trainer)

    return run_one


def test_job_runs_to_succeeded_with_an_event_per_transition(engine, settings, make_job, run):
    job_id = make_job(config=GOOD_CONFIG)
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "succeeded"
    job = _job(engine, job_id)
    assert (job.status, job.current_step, job.error) == ("succeeded", 3, None)
    assert job.finished_at is not None
    assert _statuses(engine, job_id) == ["starting", "estimating_priors", "running", "succeeded"]
    config = trainer.calls[0]["config"]
    assert Path(config.model) == settings.model_roots[0] / "tiny"
    assert Path(config.run_dir) == settings.job_run_dir(job_id) == trainer.calls[0]["run_dir"]
    assert Path(config.dataset).is_file() and config.max_steps == 3
    with Session(engine) as session:
        assert session.query(Metric).filter_by(job_id=job_id).count() == 3
        steps = session.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job_id)
                                .order_by(Checkpoint.step)).all()
    assert steps == [1, 2, 3]


def test_cancel_flag_stops_the_run(engine, make_job, run):
    job_id = make_job(config=GOOD_CONFIG)

    def cancel(step):
        if step == 1:  # what POST /v1/jobs/{id}/cancel does to a running job
            with engine.begin() as conn:
                conn.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))

    assert run(job_id, FakeTrainer(steps=10, after_step=cancel)) == "cancelled"
    job = _job(engine, job_id)
    assert (job.status, job.current_step) == ("cancelled", 1)
    assert _statuses(engine, job_id)[-1] == "cancelled"


def test_cancelled_before_start_never_trains(engine, make_job, run):
    job_id = make_job(config=GOOD_CONFIG, cancel_requested=True)
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "cancelled"
    assert trainer.calls == []


def test_trainer_exception_fails_the_job_and_the_worker_takes_the_next(engine, make_job, run):
    bad = make_job(config=GOOD_CONFIG)
    good = make_job(config=GOOD_CONFIG)
    assert run(bad, FakeTrainer(fail_at=2)) == "failed"
    job = _job(engine, bad)
    assert job.status == "failed" and "CUDA out of memory" in job.error
    last = _events(engine, bad)[-1]
    assert (last.kind, last.level, last.data["status"]) == ("status", "error", "failed")
    assert "CUDA out of memory" in last.message and "RuntimeError" in last.data["traceback"]
    assert run(good, FakeTrainer()) == "succeeded"


def test_missing_model_fails_before_training(engine, settings, make_job, run):
    job_id = make_job(config=GOOD_CONFIG)
    (settings.model_roots[0] / "tiny" / "config.json").unlink()
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "failed"
    assert trainer.calls == [] and "tiny" in _job(engine, job_id).error


def test_invalid_stored_config_fails_with_the_field_name(engine, make_job, run):
    job_id = make_job(config={**GOOD_CONFIG, "batch_size": 0})
    assert run(job_id, FakeTrainer()) == "failed"
    assert "batch_size" in _job(engine, job_id).error


def test_duplicate_delivery_of_a_live_job_is_a_no_op(engine, make_job, run):
    job_id = make_job(status=JobStatus.running, config=GOOD_CONFIG, started=LONG_AGO)
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "running"
    assert trainer.calls == [] and _events(engine, job_id) == []


def test_finished_job_is_a_no_op(make_job, run):
    job_id = make_job(status=JobStatus.succeeded, config=GOOD_CONFIG, started=LONG_AGO,
                      heartbeat=LONG_AGO)
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "succeeded" and trainer.calls == []


def test_redelivery_of_an_orphaned_job_resumes(engine, make_job, run, settings):
    job_id = make_job(status=JobStatus.running, config=GOOD_CONFIG, started=LONG_AGO,
                      heartbeat=LONG_AGO)
    from core.jobs import lifecycle

    ckpt = settings.job_run_dir(job_id) / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    with engine.begin() as conn:
        lifecycle.record_checkpoint(conn, job_id, 2, ckpt, settings.storage_dir)
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "succeeded"
    assert trainer.calls[0]["resume"] is True
    resumed = [e for e in _events(engine, job_id) if e.kind == "resumed"]
    assert len(resumed) == 1 and resumed[0].data["checkpoint_step"] == 2
    assert "step 2" in resumed[0].message and "previous worker stopped" in resumed[0].message
    assert resumed[0].data["retry"] is False
    # The trainer re-announcing estimating_priors after a resume is ignored, not a backwards move.
    assert _statuses(engine, job_id) == ["succeeded"]


def test_shutdown_leaves_the_job_resumable(engine, make_job, run):
    job_id = make_job(config=GOOD_CONFIG)
    stop = threading.Event()
    with pytest.raises(JobInterrupted):
        run(job_id, FakeTrainer(steps=10, after_step=lambda step: step == 2 and stop.set()), stop=stop)
    job = _job(engine, job_id)
    assert (job.status, job.current_step) == ("running", 2)
    assert job.updated_at == RELEASED_AT
    assert _events(engine, job_id)[-1].kind == "interrupted"
    # The next delivery takes it at once and resumes.
    trainer = FakeTrainer()
    assert run(job_id, trainer) == "succeeded" and trainer.calls[0]["resume"] is True


def test_a_stopping_worker_hands_new_deliveries_back_untouched(engine, make_job, run):
    job_id = make_job(config=GOOD_CONFIG)
    stop = threading.Event()
    stop.set()
    trainer = FakeTrainer()
    with pytest.raises(JobInterrupted):
        run(job_id, trainer, stop=stop)
    assert trainer.calls == [] and _job(engine, job_id).started_at is None


def test_heartbeat_keeps_a_slow_job_alive(engine, make_job, run, worker_settings):
    """A step longer than the stale limit must not let another delivery take the job."""
    job_id = make_job(config=GOOD_CONFIG)
    seen = {}

    def slow(step):
        if step == 1:
            threading.Event().wait(worker_settings.stale_after_seconds + 0.5)
            seen["second"] = run(job_id, FakeTrainer())

    assert run(job_id, FakeTrainer(after_step=slow)) == "succeeded"
    assert seen["second"] == "running"  # the duplicate saw a live heartbeat and stood down
    assert datetime.now(UTC) >= _job(engine, job_id).updated_at


def test_failures_name_server_directories_without_spelling_them_out(engine, settings, make_job, run):
    """Errors and events reach users: the storage and model paths in them are placeholders."""
    job_id = make_job(config=GOOD_CONFIG)

    def trainer(config, sink, *, run_dir, **_):
        raise FileNotFoundError(f"no file {run_dir}/x.bin nor {config.model}/config.json")

    assert run(job_id, trainer) == "failed"
    job = _job(engine, job_id)
    last = _events(engine, job_id)[-1]
    for text in (job.error, last.message, last.data["traceback"]):
        assert str(settings.storage_dir) not in text and str(settings.model_roots[0]) not in text
    assert f"<storage>/jobs/{job_id}/x.bin" in job.error and "<models>/tiny/config.json" in job.error
