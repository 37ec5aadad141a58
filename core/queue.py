"""Sending a job to the workers: a Celery client that knows the task's name, not its code.

Choices:
- By name (`RUN_JOB`): the sender (the API, the worker's reconcile and sweep, the `basis` CLI)
  never imports worker/, so the API image needs neither the trainer nor the worker's modules, and
  the task's module can import whatever it needs without an import cycle. worker/tasks.py
  registers its task under the same name.
- The message carries the job id only (Celery's guidance: tasks take ids, not objects); the worker
  decides everything from the row when the message arrives. Send only after the row is committed.
- `client_config` is the broker part of the Celery configuration, shared with the worker's app
  (worker/celery_app.py adds the consumer settings), so sender and consumer agree on the broker.
- One client app, hence one broker connection pool, per process and broker URL: a send borrows a
  pooled producer instead of connecting (a new Redis connection cost 60+ ms of a 68 ms send under
  load; docs/benchmarks.md "Enqueue"). A pooled connection the broker dropped (a restart, issue 8)
  is reconnected by the publish's retry (`connection.ensure`), so no send fails for it. The cache
  is keyed by the process id: a forked child (worker prefork, a test's subprocess) never shares the
  parent's sockets, even where no after-fork hook runs. Kombu's pools are thread-safe.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from celery import Celery

from core.settings import Settings, get_settings

RUN_JOB = "basis.run_job"


def client_config(broker_url: str, default_queue: str) -> dict[str, Any]:
    """The broker settings of Celery (`Settings.broker_url`, `Settings.worker_queue`)."""
    url = broker_url or ""
    config: dict[str, Any] = {
        "broker_url": url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": default_queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
    }
    if url.startswith("sqla+sqlite"):
        # Passed to create_engine by kombu: wait for the other process's writes instead of failing "locked".
        config["broker_transport_options"] = {"connect_args": {"timeout": 30}}
    return config


@lru_cache(maxsize=16)
def _client(broker_url: str, default_queue: str, pid: int) -> Celery:
    """The process `pid`'s client for this broker; `pid` is in the key only to split the cache."""
    app = Celery("basis-client")
    app.conf.update(client_config(broker_url, default_queue))
    return app


def enqueue_job(job_id: str, queue: str, *, settings: Settings | None = None) -> None:
    """Send the task `RUN_JOB(job_id)` to `queue`. Call only after the job row is committed.

    Touches no database row. `settings` picks another broker than the environment's (tests, tools).
    """
    settings = settings or get_settings()
    app = _client(settings.broker_url, settings.worker_queue, os.getpid())
    app.send_task(RUN_JOB, args=[job_id], queue=queue, routing_key=queue)
