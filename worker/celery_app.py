"""The Celery application, configured from `core.settings`.

Choices:
- Broker only, no result backend: the database is where results live (job status, metrics), so a
  backend would be a second, disagreeing source of truth.
- `task_acks_late` + `task_reject_on_worker_lost` + prefetch 1: a message is acknowledged only when
  its job has finished, and a worker holds one job at a time, so a crash hands the job back instead
  of losing it. Because the embedded broker cannot hand back a message whose consumer was SIGKILLed,
  the database lease and the orphan sweep (core/jobs/lifecycle.py, worker/reconcile.py) are what
  guarantee a job is picked up again; the broker's redelivery is a faster path to the same place.
- Embedded default: kombu's SQLAlchemy transport on SQLite (`sqla+sqlite:///<data dir>/broker.sqlite`)
  so one machine needs no Redis. It has no fanout exchange, so remote control (pidbox) is off there.
- Routing: one queue per GPU pool. A job's `queue` column names the queue its task is sent to, and a
  worker consumes `BASIS_WORKER_QUEUE`.
- A job stopped by a warm shutdown is handed back with `ShutdownRequeue` (a `Reject`), which Celery
  logs as a warning with a traceback. That is the expected path, so `_QuietShutdownRequeue` turns
  that one record into a single info line; any other `Reject` or error keeps its traceback.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery, bootsteps, signals
from celery.exceptions import Reject

from core.queue import client_config
from core.settings import Settings, get_settings
from worker import capabilities
from worker.config import WorkerSettings, get_worker_settings
from worker.reconcile import on_consumer_start

log = logging.getLogger(__name__)

# Set when this worker begins a warm shutdown; a running job stops at its next step boundary.
shutting_down = threading.Event()


class ShutdownRequeue(Reject):
    """A job stopped by this worker's warm shutdown, its message requeued (the job resumes)."""

    def __init__(self, job_id: str):
        super().__init__(f"job {job_id} interrupted by shutdown", requeue=True)
        self.job_id = job_id

    def __reduce__(self):  # pickled to the pool's parent process: rebuild from the id alone
        return ShutdownRequeue, (self.job_id,)


class _QuietShutdownRequeue(logging.Filter):
    """Rewrite Celery's "Task ... rejected" warning + traceback for a `ShutdownRequeue` as one
    info line; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ShutdownRequeue):
            record.msg = ("job %s stopped by the worker's shutdown; requeued, it resumes from its "
                          "last checkpoint at the next start")
            record.args = (exc.job_id,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


# The logger Celery's tracer reports task outcomes on (celery/app/trace.py), in every pool process.
logging.getLogger("celery.app.trace").addFilter(_QuietShutdownRequeue())


def celery_config(settings: Settings, worker_settings: WorkerSettings) -> dict:
    """The Celery configuration of a worker: the senders' broker settings (`core.queue`) plus the
    consumer's."""
    url = settings.broker_url or ""
    config = {
        **client_config(url, settings.worker_queue),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # One job per process for its whole life: a fresh process per job is not needed, and a
        # restart between jobs would throw away the CUDA context and warm caches.
        "worker_max_tasks_per_child": None,
        "worker_enable_remote_control": url.startswith(("redis", "rediss", "amqp")),
        "worker_send_task_events": False,
    }
    if url.startswith(("redis", "rediss")):
        config["broker_transport_options"] = {
            "visibility_timeout": worker_settings.visibility_timeout_seconds,
        }
    return config


def create_celery(settings: Settings | None = None,
                  worker_settings: WorkerSettings | None = None) -> Celery:
    """A Celery app for `settings` (default: the environment's), with `worker.tasks` registered."""
    app = Celery("basis", include=["worker.tasks"])
    app.conf.update(celery_config(settings or get_settings(), worker_settings or get_worker_settings()))
    return app


app = create_celery()


class ReconcileOnConnect(bootsteps.StartStopStep):
    """Reconcile the queue with the database each time this worker's consumer (re)connects to the
    broker: at start-up, and after a broker restart that may have lost every queued message. The
    first start also starts the periodic orphan sweep and the worker's registry heartbeat
    (worker/capabilities.py)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer) -> None:
        capabilities.start(consumer.hostname, [queue.name for queue in consumer.task_consumer.queues])
        on_consumer_start()


app.steps["consumer"].add(ReconcileOnConnect)


@signals.worker_shutting_down.connect
def _on_worker_shutting_down(**_kwargs) -> None:
    log.info("worker shutting down: the running job will stop at its next step and be requeued")
    shutting_down.set()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_kwargs) -> None:
    capabilities.stop()  # the registry stops counting this worker at once, not after its timeout
