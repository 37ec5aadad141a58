"""Make the queue agree with the database, which is the source of truth about jobs.

Choices:
- `reconcile(include_queued=True)` runs when a worker connects to the broker (at start-up and after
  a broker restart) and when `basis up` starts: it
  enqueues every never-started `queued` job (the broker may have been flushed or restarted empty)
  and every active job whose heartbeat is stale (its worker died). Duplicates are harmless because
  `run_job` claims a lease before doing anything.
- The periodic sweep (a daemon thread in each worker, `sweep_seconds`) only looks for stale active
  jobs: re-sending every queued job each minute would flood a queue that is merely long. A job the
  sweep sent is not sent again by the same process until it has had another stale interval to start.
- `basis up` with the embedded broker knows it starts the only worker, so it passes
  `stale_after_seconds=0`: whatever was active when the stack last stopped is resumed at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from core.db import get_engine
from core.settings import Settings, get_settings
from worker import lifecycle
from worker.config import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]


def reconcile(*, engine: Engine | None = None, enqueue: Enqueue | None = None,
              include_queued: bool = True, stale_after_seconds: float | None = None,
              settings: Settings | None = None) -> list[str]:
    """Enqueue the jobs the queue may have lost; returns their ids (see module docstring)."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.database_url)
    if enqueue is None:
        from worker.tasks import enqueue_job

        def enqueue(job_id: str, queue: str) -> None:
            enqueue_job(job_id, queue, settings=settings)

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
                 enqueue: Enqueue | None = None, settings: Settings | None = None):
        self.ws, self.engine, self.enqueue, self.settings = worker_settings, engine, enqueue, settings
        self._sent: dict[str, float] = {}
        self.stop = threading.Event()

    def sweep(self, include_queued: bool = False) -> list[str]:
        now = time.monotonic()
        self._sent = {j: t for j, t in self._sent.items() if now - t < self.ws.stale_after_seconds}

        def enqueue_once(job_id: str, queue: str) -> None:
            if job_id in self._sent:
                return
            self._sent[job_id] = now
            if self.enqueue is not None:
                self.enqueue(job_id, queue)
            else:
                from worker.tasks import enqueue_job

                enqueue_job(job_id, queue, settings=self.settings)

        return reconcile(engine=self.engine, enqueue=enqueue_once, include_queued=include_queued,
                         stale_after_seconds=self.ws.stale_after_seconds, settings=self.settings)

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
    the broker went away, possibly empty): one full reconcile in the background, so the consumer
    does not wait on the database.
    """
    global _sweeper
    if _sweeper is None:
        _sweeper = start_sweeper(include_queued_first=True)
        return
    log.info("reconnected to the broker: re-enqueueing queued jobs it may have lost")
    threading.Thread(target=_reconcile_quietly, name="basis-reconcile", daemon=True).start()


def _reconcile_quietly() -> None:
    try:
        reconcile(include_queued=True)
    except Exception as exc:  # noqa: BLE001 - the periodic sweep will try again
        log.warning("reconcile after reconnect failed: %s", exc)
