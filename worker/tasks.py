"""`run_job(job_id)`: run one training job end to end (sent by name from `core.queue.enqueue_job`).

Choices:
- An evaluation is a job of kind "eval" (core/jobs/evals.py): the same task, claim, lease, heartbeat,
  cancel and failure handling; `JobRunner.run` dispatches on the kind to `trainer.evaluate.evaluate`
  instead of `trainer.loop.train`. A resumed evaluation starts again from its first row.
- The task takes an id, never an object, and is idempotent: every delivery first claims the job's
  lease in the database (core/jobs/lifecycle.py). A finished job, or one a live worker is running,
  makes the delivery a no-op, so duplicates (a reconcile after a Redis flush, a Redis visibility
  timeout, an orphan sweep racing a slow heartbeat) cost one query.
- A delivery of a job that had already started resumes it: `train(resume=True)` loads the newest
  complete checkpoint under the job's run dir, and an event says from which step.
- Every failure of the job is the job's, not the worker's: a trainer exception (bad model dir, out
  of memory, a reward crash) marks the job `failed` with the message and a `failed` event, then the
  task returns normally, so the worker takes the next job. Only the database being unreachable for
  longer than `db_retry_seconds` escapes: the job stays active, its heartbeat goes stale, and the
  orphan sweep hands it to a worker again later.
- The claim's lease epoch fences every write for the job (core/jobs/lifecycle.py): `JobRunner.tx`
  checks it first in each transaction, the sink in each step and event, the heartbeat in each beat,
  `should_stop` before each step. When another worker has claimed the job since (this one was
  silent past the stale limit), that check raises `LeaseLost`: the transaction rolls back, the
  trainer stops, and the job is left alone, not failed, because it is the new owner's now. The
  delivery ends with a warning in the log and nothing in the database.
- A job that trains to its end exports its final checkpoint as a model (its `fine_tuned_model`)
  before it is marked succeeded, under its heartbeat and fenced on its lease, unless its config
  says `export_model: false`. A failed export is a warning event, never a failed job: the
  training did succeed, the checkpoint is there, and it can be exported by hand.
- A warm shutdown (SIGTERM, Ctrl-C in `basis up`) stops the trainer at its next step boundary;
  the job keeps its status, gives its lease back and its message is requeued
  (`ShutdownRequeue(Reject)`, logged as one line), so the next worker resumes it from its last
  checkpoint.
- The trainer's loop (torch) is imported when a job runs, not at import time, so a worker starts
  and reconciles without loading the ML stack.
"""

from __future__ import annotations

import gc
import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core.db import get_engine, is_transient, run_in_transaction
from core.jobs import checkpoint_quota, events, lifecycle
from core.jobs.config import resolve_train_config
from core.jobs.evals import resolve_eval_config
from core.jobs.lifecycle import LeaseLost, hold_lease
from core.models import Dataset, Job
from core.queue import RUN_JOB
from core.services import exports
from core.services.errors import NotFound
from core.services.storage import remove_tree
from core.settings import Settings, get_settings
from core.status import JobKind, JobStatus
from trainer.config import EvalConfig, TrainConfig
from worker import capabilities
from worker.celery_app import ShutdownRequeue, app, shutting_down
from worker.config import WorkerSettings, get_worker_settings
from worker.distributed import Launcher, RankFailed
from worker.sink import DatabaseSink

if TYPE_CHECKING:  # the loop imports torch; the worker loads it only when a job runs
    from trainer.evaluate import EvalResult
    from trainer.loop import TrainResult

log = logging.getLogger(__name__)

TRAINER_STATUSES = {JobStatus.estimating_priors, JobStatus.running}


class JobInterrupted(Exception):
    """The worker is shutting down; the job was left resumable and should be requeued."""


def build_train_config(engine: Engine, job_id: str, settings: Settings) -> TrainConfig:
    """The job's `TrainConfig` on this machine's paths (`core.jobs.config.resolve_train_config`,
    the resolution the API validated the job with)."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"job {job_id} disappeared while starting")
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        if dataset is None:
            raise NotFound(f"the dataset of job {job_id} was deleted", "dataset_id")
        return resolve_train_config(session, settings, job_id, job.model, dataset, job.config)


def build_eval_config(engine: Engine, job_id: str, settings: Settings) -> tuple[EvalConfig, int | None]:
    """An evaluation's `EvalConfig` on this machine's paths (`core.jobs.evals.resolve_eval_config`,
    the resolution the API validated it with), and the number of batches it logs."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"evaluation {job_id} disappeared while starting")
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        if dataset is None:
            raise NotFound(f"the dataset of evaluation {job_id} was deleted", "dataset_id")
        return resolve_eval_config(session, settings, job.model, dataset, job.config), job.max_steps


def job_kind(engine: Engine, job_id: str) -> str:
    with engine.connect() as conn:
        return conn.scalar(select(Job.kind).where(Job.id == job_id)) or JobKind.train


class _Heartbeat:
    """A daemon thread touching the job row every few seconds, so long steps (prior estimation, a
    slow rollout) never make a live job look orphaned. A failed beat is logged, not fatal: the sink
    is what blocks the job during a database outage. A lost lease ends the beats (the trainer
    learns of it at its next write or stop check)."""

    def __init__(self, engine: Engine, job_id: str, epoch: int, every: float):
        self._engine, self._job_id, self._epoch, self._every = engine, job_id, epoch, every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join(timeout=self._every + 5)

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                with self._engine.begin() as conn:
                    lifecycle.heartbeat(conn, self._job_id, self._epoch)
            except LeaseLost as exc:
                log.warning("heartbeat stopped: %s", exc)
                return
            except Exception as exc:  # noqa: BLE001 - a missed beat must never kill the job
                log.warning("heartbeat for %s failed: %s", self._job_id, exc)


class StopSignal(Protocol):
    """What JobRunner asks whether to stop: a threading.Event, or rank 0's stop file."""

    def is_set(self) -> bool: ...


class JobRunner:
    """Runs one claimed job: builds the trainer's callbacks around the database. Every write is
    fenced on the claim's lease `epoch` (module docstring)."""

    def __init__(self, job_id: str, epoch: int, engine: Engine, settings: Settings,
                 worker_settings: WorkerSettings, stop: StopSignal,
                 train_fn: Callable[..., Any] | None = None):
        self.job_id, self.epoch, self.engine, self.settings = job_id, epoch, engine, settings
        self.ws, self.stop, self.train_fn = worker_settings, stop, train_fn
        self.export_model = False  # the job's config.export_model, once its config is built

    def tx(self, work, what: str):
        """`work(conn)` in one transaction that first checks this worker still holds the lease."""

        def fenced(conn):
            hold_lease(conn, self.job_id, self.epoch)
            return work(conn)

        return run_in_transaction(self.engine, fenced, retry_seconds=self.ws.db_retry_seconds,
                                  what=f"job {self.job_id} {what}")

    def should_stop(self) -> bool:
        """The trainer's stop check: a warm shutdown or a user's cancel. The trainer asks it
        before each step and, in a one-process job, every 0.5 s while it generates or scores."""
        return self.stop.is_set() or self.cancel_requested()

    def cancel_requested(self) -> bool:
        try:
            with self.engine.connect() as conn:  # raises LeaseLost before a step of a lost job
                return lifecycle.cancel_requested(conn, self.job_id, self.epoch)
        except Exception as exc:
            if is_transient(exc):  # the database is away; the sink will wait for it at the step
                return False
            raise

    def on_status(self, status: str) -> None:
        if status not in TRAINER_STATUSES:
            log.warning("job %s: trainer reported unknown status %r", self.job_id, status)
            return
        self.tx(lambda conn: lifecycle.transition(conn, self.job_id, status), f"status {status}")

    def before_checkpoint(self, step: int, nbytes: int) -> None:
        """The owner's checkpoint quota (core/jobs/checkpoint_quota.py), before anything is
        written: this job's older checkpoints make room, or CheckpointQuotaExceeded fails it."""
        if not (self.settings.quota_checkpoint_bytes or self.settings.quota_checkpoints):
            return

        def make_room(conn) -> list[checkpoint_quota.Pruned]:
            pruned = checkpoint_quota.make_room(conn, self.settings, self.job_id, step, nbytes)
            if pruned:
                freed = sum(p.bytes for p in pruned) / 2**20
                events.record_event(
                    conn, self.job_id, "checkpoint",
                    f"removed this job's checkpoints at steps {', '.join(str(p.step) for p in pruned)} "
                    f"({freed:.1f} MB) to stay within your checkpoint quota",
                    {"removed_steps": [p.step for p in pruned]})
            return pruned

        for pruned in self.tx(make_room, f"checkpoint quota {step}"):
            if problem := remove_tree(pruned.path):
                log.warning("job %s: %s", self.job_id, problem)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.tx(lambda conn: lifecycle.record_checkpoint(
            conn, self.job_id, step, Path(path), self.settings.storage_dir), f"checkpoint {step}")

    def _public(self, text: str) -> str:
        """`text` with this server's directories named, not spelled out: errors and events reach
        users, and `/srv/basis/storage/jobs/..` is not theirs to see (nor to probe)."""
        places = [(self.settings.storage_dir, "<storage>"), (self.settings.data_dir, "<data>"),
                  *((root, "<models>") for root in self.settings.model_roots)]
        for path, name in sorted(places, key=lambda p: -len(str(p[0]))):
            for form in {str(path), str(Path(path).resolve())}:
                if len(form) > 1:
                    text = text.replace(form, name)
        return text

    def finish(self, status: str, message: str = "", error: str | None = None,
               data: dict[str, Any] | None = None) -> str:
        self.tx(lambda conn: lifecycle.transition(conn, self.job_id, status, message=message,
                                                  error=error, data=data), f"status {status}")
        return status

    def run(self, claim: lifecycle.Claim) -> str:
        if claim.cancel_requested:
            return self.finish(JobStatus.cancelled, "cancelled before it started")
        # The heartbeat starts with the lease, not with training: building the config imports the
        # trainer (torch), which on a busy machine can outlast `stale_after_seconds`, and a claimed
        # job that stays silent that long is taken over by another worker while this one runs it.
        # It stops before `_after_train`, whose release must not be overwritten by a late beat.
        if job_kind(self.engine, self.job_id) == JobKind.eval:  # a second kind of work, same lease
            with _Heartbeat(self.engine, self.job_id, self.epoch, self.ws.heartbeat_seconds):
                evaluated = self._start_and_evaluate(claim)
            return evaluated if isinstance(evaluated, str) else self._after_eval(evaluated)
        with _Heartbeat(self.engine, self.job_id, self.epoch, self.ws.heartbeat_seconds):
            outcome = self._start_and_train(claim)
            exported = None
            if not isinstance(outcome, str) and not outcome.stopped and self.export_model:
                exported = self._export_final()
        return outcome if isinstance(outcome, str) else self._after_train(outcome, exported)

    def _export_final(self) -> str | None:
        """Export the final checkpoint as the job's `fine_tuned_model` (core/services/exports.py),
        fenced on the lease; its name, or None with a warning event when it failed: the training
        succeeded either way, and the checkpoint stays exportable by hand."""
        with Session(self.engine) as session:
            job = session.get(Job, self.job_id)
            if job is None:
                raise LookupError(f"job {self.job_id} disappeared while finishing")
            try:
                record = exports.export_job_checkpoint(
                    session, self.settings, job.owner_id, self.job_id, None,
                    before_commit=lambda s: hold_lease(s.connection(), self.job_id, self.epoch))
            except LeaseLost:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                message = self._public(describe_error(exc))
                log.warning("job %s: export of the final checkpoint failed: %s", self.job_id, message)
                self.tx(lambda conn: events.record_event(
                    conn, self.job_id, "export_failed",
                    f"the final checkpoint could not be exported as a model: {message}; export it "
                    "with POST /v1/jobs/{id}/checkpoints/{checkpoint_id}/export",
                    {"error": message}, level="warning"), "event")
                return None
        self.tx(lambda conn: events.record_event(
            conn, self.job_id, "exported", f"exported the final checkpoint as model {record.name}",
            {"model": record.name, "format": record.format}), "event")
        return record.name

    def _start_and_evaluate(self, claim: lifecycle.Claim) -> EvalResult | str:
        """The evaluation's result (`trainer.evaluate`, the held-out eval's code path), or its
        final status when it failed. A resumed evaluation starts again from its first row (its
        samples and metrics are upserted, so the rows it wrote before are overwritten alike)."""
        try:
            config, batches = build_eval_config(self.engine, self.job_id, self.settings)
        except Exception as exc:  # deleted dataset, removed model
            if is_transient(exc):
                raise
            return self.finish(JobStatus.failed, "could not start",
                               error=self._public(describe_error(exc)))
        if claim.resumed:
            self.tx(lambda conn: events.record_event(
                conn, self.job_id, "resumed", "evaluating again from the first row"), "event")
        from trainer.evaluate import evaluate

        # Every sample is kept: an evaluation's samples are its per-row results.
        sink = DatabaseSink(self.engine, self.job_id, epoch=self.epoch,
                            retry_seconds=self.ws.db_retry_seconds, max_steps=batches)
        try:
            return evaluate(config, sink, should_stop=self.should_stop, on_status=self.on_status)
        except LeaseLost:
            raise
        except Exception as exc:
            return self._failed(exc)
        finally:
            sink.close()
            _free_accelerator_memory()

    def _after_eval(self, result: EvalResult) -> str:
        s = result.summary
        data = {**s.metrics(), "seconds": result.seconds}
        if not result.stopped:
            return self.finish(JobStatus.succeeded, f"evaluated {s.rows} rows x "
                               f"{s.samples_per_prompt}: accuracy {s.accuracy:.3g}", data=data)
        return self._stopped(data, f"after {s.rows} rows")

    def _start_and_train(self, claim: lifecycle.Claim) -> TrainResult | str:
        """The trainer's result, or the job's final status when it failed."""
        try:
            config = build_train_config(self.engine, self.job_id, self.settings)
        except Exception as exc:  # deleted dataset, removed model, a config the trainer refuses
            if is_transient(exc):
                raise
            return self.finish(JobStatus.failed, "could not start",
                               error=self._public(describe_error(exc)))
        self.export_model = config.export_model
        if claim.resumed:
            def where_and_why(conn) -> tuple[int | None, bool]:
                return (lifecycle.latest_checkpoint_step(conn, self.job_id),
                        claim.status == JobStatus.queued and lifecycle.retried(conn, self.job_id))

            step, retry = self.tx(where_and_why, "read")
            where = f"checkpoint at step {step}" if step is not None else "the start (no checkpoint yet)"
            why = "the retry requested" if retry else "the previous worker stopped"
            self.tx(lambda conn: events.record_event(
                conn, self.job_id, "resumed", f"resuming from {where} after {why}",
                {"checkpoint_step": step, "retry": retry}), "event")

        if self.train_fn is not None:
            train_fn = self.train_fn
        elif config.num_processes > 1:  # ranks under torchrun, rank 0 writes (worker/distributed.py)
            train_fn = Launcher(self.job_id, self.epoch, self.settings, self.ws,
                                cancelled=self.cancel_requested)
        else:
            from trainer.loop import train as train_fn
        sink = DatabaseSink(self.engine, self.job_id, epoch=self.epoch,
                            retry_seconds=self.ws.db_retry_seconds, max_steps=config.max_steps,
                            sample_keep_steps=self.ws.sample_keep_steps)
        try:
            return train_fn(config, sink, run_dir=Path(config.run_dir),
                            should_stop=self.should_stop, on_status=self.on_status,
                            on_checkpoint=self.on_checkpoint, resume=True,
                            before_checkpoint=self.before_checkpoint)
        except LeaseLost:  # the job is another worker's now: failing it would overwrite its run
            raise
        except Exception as exc:
            return self._failed(exc)
        finally:
            sink.close()
            _free_accelerator_memory()

    def _failed(self, exc: Exception) -> str:
        """Mark the job failed with `exc` (the run's fault, not the worker's); a transient database
        error is raised instead: the database stayed away past db_retry_seconds, so the job is
        left resumable."""
        if is_transient(exc):
            raise exc
        # One line in the worker's console; the traceback is in the failed event's data.
        log.error("job %s failed: %s", self.job_id, describe_error(exc)[:500])
        log.debug("job %s traceback", self.job_id, exc_info=True)
        message = self._public(describe_error(exc))
        # A rank's traceback is the one that says what broke, not the launcher's.
        trace = exc.rank_traceback if isinstance(exc, RankFailed) else traceback.format_exc(limit=8)
        return self.finish(JobStatus.failed, message, error=message,
                           data={"traceback": self._public(trace[-4000:])})

    def _after_train(self, result: TrainResult, exported: str | None = None) -> str:
        summary = {"steps": result.steps, "initial_eval_accuracy": result.initial_eval_accuracy,
                   "final_eval_accuracy": result.final_eval_accuracy, "seconds": result.seconds}
        if not result.stopped:
            def succeed(conn) -> None:
                lifecycle.transition(conn, self.job_id, JobStatus.succeeded,
                                     message=f"finished {summary['steps']} steps",
                                     data={**summary, "fine_tuned_model": exported})
                if exported is not None:
                    conn.execute(update(Job).where(Job.id == self.job_id)
                                 .values(fine_tuned_model=exported))

            self.tx(succeed, f"status {JobStatus.succeeded}")
            return JobStatus.succeeded
        return self._stopped(summary, f"after {summary['steps']} steps")

    def _stopped(self, summary: dict[str, Any], where: str) -> str:
        """A run that stopped early: cancelled when the user asked, else the worker is shutting
        down, so the lease is given back and `JobInterrupted` requeues the job."""
        with self.engine.connect() as conn:
            cancelled = lifecycle.cancel_requested(conn, self.job_id, self.epoch)
        if cancelled:
            return self.finish(JobStatus.cancelled, f"cancelled {where}", data=summary)

        def give_back(conn) -> None:
            events.record_event(conn, self.job_id, "interrupted",
                                   "worker shutting down; the job will resume from its last checkpoint",
                                   summary)
            lifecycle.release(conn, self.job_id, self.epoch)

        self.tx(give_back, "release")
        raise JobInterrupted(self.job_id)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:4000] if text else type(exc).__name__


def _free_accelerator_memory() -> None:
    """Drop the finished job's tensors so the next job on this GPU starts with free memory."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


def execute_job(job_id: str, *, engine: Engine | None = None, settings: Settings | None = None,
                worker_settings: WorkerSettings | None = None,
                stop: threading.Event | None = None,
                train_fn: Callable[..., Any] | None = None) -> str:
    """Run job `job_id` if this caller can claim it; returns the job's status afterwards.

    `train_fn` stands in for `trainer.loop.train` (same signature) in tests of the lifecycle.

    Raises `JobInterrupted` when `stop` was set (worker shutdown) and the job was left resumable,
    and `LeaseLost` when another worker claimed the job meanwhile (nothing more was written).
    """
    stop = stop or shutting_down
    if stop.is_set():
        # A shutting-down worker may still be handed a message (the one it just requeued, or a
        # prefetched one): give it back untouched rather than load a model only to stop at once.
        raise JobInterrupted(job_id)
    settings = settings or get_settings()
    ws = worker_settings or get_worker_settings()
    engine = engine or get_engine(settings.database_url)
    claim = run_in_transaction(
        engine, lambda conn: lifecycle.claim(conn, job_id, stale_after_seconds=ws.stale_after_seconds),
        retry_seconds=ws.db_retry_seconds, what=f"job {job_id} claim")
    if claim is None:
        with engine.connect() as conn:
            status = conn.scalar(select(Job.status).where(Job.id == job_id))
        log.info("job %s not claimed (status %s): finished, missing, or running elsewhere",
                 job_id, status)
        return status or "missing"
    log.info("job %s claimed (%s) with lease epoch %d", job_id,
             "resume" if claim.resumed else "start", claim.epoch)
    capabilities.note_job(job_id)
    try:
        return JobRunner(job_id, claim.epoch, engine, settings, ws, stop, train_fn).run(claim)
    except LeaseLost as exc:
        log.warning("%s", exc)
        raise
    finally:
        capabilities.note_job(None)


@app.task(name=RUN_JOB, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: str) -> str:
    """Celery entry point: see `execute_job`. The return value is what Celery logs as the task's
    result ("Task basis.run_job[..] succeeded in 12s: 'job job_x failed'"): the task ran to its end
    whatever became of the job, so the job's status is worded as such, not a bare 'failed'."""
    try:
        return f"job {job_id} {execute_job(job_id)}"
    except JobInterrupted:
        # Back into the queue for whichever worker starts next; the lease is already released.
        raise ShutdownRequeue(job_id) from None  # one info line in the log, not a traceback
    except LeaseLost:
        return "lease_lost"  # logged by execute_job; the new owner runs the job, nothing to redo

