"""This worker's row in the registry (core/workers.py): what it can run, refreshed by a heartbeat.

Choices:
- One `Advertiser` per worker process, started when its consumer first connects to the broker
  (worker/celery_app.py), so the row names the queues Celery really consumes. Its thread rewrites
  the row every `heartbeat_seconds` (the job heartbeat's period) and forgets rows dead for longer
  than `Settings.worker_forget_seconds`; a clean shutdown marks the row stopped.
- GPUs: `BASIS_WORKER_GPUS`, else `torch.cuda.device_count()` (which asks the driver without
  creating a CUDA context). Process slots: `BASIS_WORKER_MAX_PROCESSES`, else one per GPU, else 2
  on a CPU machine, so two gloo ranks (the distributed tests' shape) run anywhere.
- Engines: every registered rollout engine whose library is importable here (`find_spec`: looked
  up, not imported, so vLLM costs nothing to detect). hf needs transformers, which the trainer
  always has.
- A failed beat is logged and retried at the next one: the registry informs job creation, it never
  stops a worker from running jobs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading

from sqlalchemy import Engine

from core import workers
from core.db import get_engine
from core.settings import Settings, get_settings
from worker.config import WorkerSettings, get_worker_settings

log = logging.getLogger(__name__)

# Rollout engine -> the package it cannot run without (engines not listed need nothing extra).
ENGINE_PACKAGES = {"hf": "transformers", "vllm": "vllm"}
CPU_PROCESS_SLOTS = 2


def gpu_count(ws: WorkerSettings) -> int:
    if ws.gpus is not None:
        return ws.gpus
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception as exc:  # noqa: BLE001 - a broken driver means no usable GPU, not a dead worker
        log.warning("could not count GPUs (%s); advertising none", exc)
        return 0


def installed_engines() -> list[str]:
    from trainer.rollout import available_engines

    return [name for name in available_engines()
            if name not in ENGINE_PACKAGES or importlib.util.find_spec(ENGINE_PACKAGES[name])]


def detect(worker_id: str, queues: list[str], ws: WorkerSettings) -> workers.WorkerInfo:
    """This process's capabilities under id `worker_id`."""
    gpus = gpu_count(ws)
    slots = ws.max_processes or gpus or CPU_PROCESS_SLOTS
    return workers.WorkerInfo(id=worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                              queues=sorted(queues), engines=installed_engines(), gpus=gpus,
                              max_processes=slots)


class Advertiser:
    """Keeps one worker's row fresh (module docstring). `info` is detected in the thread, so a
    slow torch import never delays the consumer; until then `beat` and `note_job` do nothing."""

    def __init__(self, worker_id: str, queues: list[str], *, engine: Engine | None = None,
                 settings: Settings | None = None, worker_settings: WorkerSettings | None = None):
        self.worker_id, self.queues = worker_id, queues
        self.settings = settings or get_settings()
        self.ws = worker_settings or get_worker_settings()
        self.engine = engine or get_engine(self.settings.database_url)
        self.info: workers.WorkerInfo | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, **current_job) -> None:
        """Rewrite the row now (`current_job_id=` to set or clear the job it runs)."""
        if self.info is None:
            return
        with self.engine.begin() as conn:
            workers.beat(conn, self.info, **current_job)
            workers.forget_dead(conn, older_than_seconds=self.settings.worker_forget_seconds)

    def start(self) -> Advertiser:
        self._thread = threading.Thread(target=self._run, name="basis-advertiser", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.info = detect(self.worker_id, self.queues, self.ws)
        log.info("advertising %s", self.info)
        while True:
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - module docstring: never fatal
                log.warning("worker registry heartbeat failed: %s", exc)
            if self._done.wait(self.ws.heartbeat_seconds):
                return

    def note_job(self, job_id: str | None) -> None:
        """Record the job this worker runs now (None: idle); best effort."""
        try:
            self.beat(current_job_id=job_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record the current job in the worker registry: %s", exc)

    def stop(self) -> None:
        """Stop beating and mark the row stopped (clean shutdown)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ws.heartbeat_seconds + 5)
        try:
            with self.engine.begin() as conn:
                workers.stop(conn, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - the row goes stale on its own
            log.warning("could not mark worker %s stopped: %s", self.worker_id, exc)


current: Advertiser | None = None  # this process's, once its consumer has started


def start(worker_id: str, queues: list[str]) -> Advertiser:
    """Start advertising this process under `worker_id` (once per process)."""
    global current
    if current is None:
        current = Advertiser(worker_id, queues).start()
    return current


def note_job(job_id: str | None) -> None:
    """Record this process's current job, if it advertises (a worker started by Celery does)."""
    if current is not None:
        current.note_job(job_id)


def stop() -> None:
    if current is not None:
        current.stop()
