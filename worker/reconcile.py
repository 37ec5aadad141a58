"""Make the queue agree with the database, which is the source of truth about jobs.

Choices:
- `reconcile(include_queued=True)` runs when `basis up` starts, and a worker does the same full
  pass (through its `Sweeper`) each time its consumer connects to the broker: at start-up, and
  after the connection was lost and re-established (a Redis restart; Celery restarts the consumer's
  bootsteps then, `ReconcileOnConnect` in worker/celery_app.py). It enqueues every never-started
  `queued` job (the broker may have been restarted empty) and every active job whose heartbeat is
  stale (its worker died). Duplicates are harmless because `run_job` claims a lease before doing
  anything: a second delivery finds the job claimed (or finished) and is dropped.
- A flush (`FLUSHALL`) drops no connection, so nothing reconnects; and a worker busy with a job in
  the solo pool notices a restart only when the job ends. So the periodic sweep (a daemon thread in
  each worker, `sweep_seconds`) re-sends, besides stale active jobs, every job still `queued` whose
  row has not changed for `requeue_queued_after_seconds` (default 10 minutes, 0: off). Not every
  queued job each sweep: that would flood a queue that is merely long. A job the sweep sent is not
  sent again by the same process until another interval has passed (the stale interval for a stale
  active job, the longer of the two for a queued one), so a long queue gets at most one extra
  message per job, interval and worker.
- "How long queued" is measured on `jobs.updated_at`, the row's last change: a never-started job's
  creation (a cancel request keeps it), and the heartbeat once a worker claims it (the claim leaves
  the status `queued` until the trainer starts), so a job that a live worker is starting is never
  re-sent. A retried job (POST /v1/jobs/{id}/retry) gets `updated_at` = 1970 on purpose (so its
  claim need not wait for the stale limit) and keeps `started_at`; the stale rule therefore re-sends
  it at the first sweep after the retry, next to the API's own message. That one duplicate per
  worker is harmless (the lease decides) and is not repeated soon: as a queued job it is then held
  for the queued interval like any other (for the stale interval when the queued rule is off).
- `basis up` with the embedded broker knows it starts the only worker, so it passes
  `stale_after_seconds=0`: whatever was active when the stack last stopped is resumed at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from sqlalchemy import Engine

from core.db import get_engine
from core.jobs import lifecycle
from core.queue import enqueue_job
from core.settings import Settings, get_settings
from worker.config import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]


def _broker_enqueue(settings: Settings) -> Enqueue:
    """Send through the real broker (`core.queue.enqueue_job`) configured by `settings`."""
    return partial(enqueue_job, settings=settings)


def reconcile(*, engine: Engine | None = None, enqueue: Enqueue | None = None,
              include_queued: bool = True, stale_after_seconds: float | None = None,
              settings: Settings | None = None) -> list[str]:
    """Enqueue the jobs the queue may have lost; returns their ids (see module docstring)."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.database_url)
    enqueue = _broker_enqueue(settings) if enqueue is None else enqueue
    stale = get_worker_settings().stale_after_seconds if stale_after_seconds is None else stale_after_seconds
    with engine.connect() as conn:
        jobs = lifecycle.orphaned_jobs(conn, stale_after_seconds=stale, include_queued=include_queued)
    for job_id, queue in jobs:
        enqueue(job_id, queue)
    if jobs:
        log.info("reconcile: enqueued %d job(s): %s", len(jobs), ", ".join(j for j, _ in jobs))
    return [job_id for job_id, _ in jobs]


class Sweeper:
    """Periodic orphan sweep for one worker process (module docstring)."""

    def __init__(self, worker_settings: WorkerSettings, *, engine: Engine | None = None,
                 enqueue: Enqueue | None = None, settings: Settings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.ws, self.engine, self.enqueue, self.settings = worker_settings, engine, enqueue, settings
        self.clock = clock
        self._sent: dict[str, tuple[float, float]] = {}  # job id -> (monotonic time sent, hold)
        self._lock = threading.Lock()  # the sweep thread and a reconnect may sweep at once
        self.stop = threading.Event()

    def sweep(self, include_queued: bool = False, forget: bool = False) -> list[str]:
        """Send the jobs that need a delivery and were not sent by this process within their hold;
        returns their ids. `include_queued`: every never-started queued job too (start-up and
        reconnect); `forget`: ignore earlier sends (the broker may have lost them)."""
        with self._lock:
            return self._sweep(include_queued, forget)

    def _sweep(self, include_queued: bool, forget: bool) -> list[str]:
        stale, after = self.ws.stale_after_seconds, self.ws.requeue_queued_after_seconds
        settings = self.settings or get_settings()
        engine = self.engine or get_engine(settings.database_url)
        with engine.connect() as conn:
            found = lifecycle.orphaned_jobs(conn, stale_after_seconds=stale, include_queued=include_queued)
            # Queued jobs held for the longer interval. With include_queued that is every queued job
            # (all never-started ones are sent), but only those untouched past `after` are added.
            waiting = (lifecycle.queued_jobs(conn, untouched_for_seconds=0 if include_queued else after)
                       if after > 0 else [])
        to_send = dict(found)
        if not include_queued:
            to_send.update(waiting)
        queued_ids = {job_id for job_id, _ in waiting}
        now = self.clock()
        if forget:
            self._sent.clear()
        self._sent = {j: (t, hold) for j, (t, hold) in self._sent.items() if now - t < hold}
        enqueue = _broker_enqueue(settings) if self.enqueue is None else self.enqueue
        sent = []
        for job_id, queue in sorted(to_send.items()):
            if job_id in self._sent:
                continue
            self._sent[job_id] = (now, max(stale, after) if job_id in queued_ids else stale)
            enqueue(job_id, queue)
            sent.append(job_id)
        if sent:
            log.info("sweep%s: re-sent %d job(s): %s", " (full)" if include_queued else "", len(sent),
                     ", ".join(sent))
        return sent

    def run(self, include_queued_first: bool) -> None:
        include_queued = include_queued_first
        while True:
            try:
                self.sweep(include_queued)
            except Exception as exc:  # noqa: BLE001 - a sweep failing (DB away) must not stop sweeping
                log.warning("orphan sweep failed: %s", exc)
            include_queued = False
            if self.stop.wait(self.ws.sweep_seconds):
                return


def start_sweeper(include_queued_first: bool = True) -> Sweeper:
    """Start the sweep thread for this worker process."""
    sweeper = Sweeper(get_worker_settings())
    threading.Thread(target=sweeper.run, args=(include_queued_first,), name="basis-sweeper",
                     daemon=True).start()
    return sweeper


_sweeper: Sweeper | None = None


def on_consumer_start() -> None:
    """Called each time the worker's consumer connects to the broker (worker/celery_app.py).

    First time: start the sweep, which reconciles queued jobs first. Later (a reconnection after
    the broker went away, possibly empty): one full sweep in the background that forgets what was
    sent before (the broker may have lost it), so the consumer does not wait on the database.
    """
    global _sweeper
    if _sweeper is None:
        _sweeper = start_sweeper(include_queued_first=True)
        return
    log.info("reconnected to the broker: re-enqueueing queued jobs it may have lost")
    threading.Thread(target=_sweep_quietly, args=(_sweeper,), name="basis-reconcile", daemon=True).start()


def _sweep_quietly(sweeper: Sweeper) -> None:
    try:
        sweeper.sweep(include_queued=True, forget=True)
    except Exception as exc:  # noqa: BLE001 - the periodic sweep will try again
        log.warning("reconcile after reconnect failed: %s", exc)
