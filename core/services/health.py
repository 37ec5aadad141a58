"""Readiness checks for `/v1/health/ready` (issue 18): each returns a small dict with `ok` and
what it saw, never raises, and touches nothing a user owns.

- database: a read, then a write rolled back (an INSERT into `users`), so a read-only, corrupted
  or full database file shows up, not only an unreachable server;
- broker: a connection to the Celery broker (Redis or the embedded SQLite one);
- disk: free space of the storage volume against `Settings.min_free_disk_mb`;
- jobs: every active job with its heartbeat age; a claimed job silent longer than
  `health_stale_after_seconds` means its worker is stuck or gone; next to them, how many workers
  are alive per queue (the registry, core/workers.py), and one line per live worker: an opaque
  `ref` (a hash of its id, which holds its host name and pid), its queues, GPU count, heartbeat
  age and whether it is busy. No job id, host, pid or user: this route has no key, and the full
  records are `GET /v1/workers` (authenticated), whose ids hash to these refs. No live worker
  does not make the API unready: jobs wait for one (docs/deployment.md).
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from core import workers
from core.models import Job, User, new_id, utcnow
from core.settings import Settings
from core.status import ACTIVE


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")


def check_database(engine: Engine) -> dict[str, Any]:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.execute(insert(User).values(id=new_id("user"), name=f"__ready_{new_id('x')}",
                                             created_at=utcnow()))
            conn.rollback()  # the write was only a test
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready", never a 500
        return {"ok": False, "error": _error(exc)}
    return {"ok": True}


def check_broker(url: str, timeout: float = 2.0) -> dict[str, Any]:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}
    return {"ok": True}


def free_mb(path: Path) -> float:
    """Free space (MB) of the volume holding `path` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 2**20


def check_disk(settings: Settings) -> dict[str, Any]:
    free = free_mb(settings.storage_dir)
    return {"ok": free >= settings.min_free_disk_mb, "free_mb": round(free, 1),
            "floor_mb": settings.min_free_disk_mb}


def check_jobs(engine: Engine, settings: Settings) -> dict[str, Any]:
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Job.id, Job.status, Job.updated_at, Job.started_at)
                                .where(Job.status.in_(ACTIVE), Job.started_at.is_not(None))).all()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}
    now = utcnow()
    jobs = []
    for row in rows:
        beat = row.updated_at if isinstance(row.updated_at, datetime) else None
        age = (now - beat).total_seconds() if beat else None
        jobs.append({"job_id": row.id, "status": row.status,
                     "heartbeat_age_s": round(age, 1) if age is not None else None,
                     "stale": age is None or age > settings.health_stale_after_seconds})
    live = _live(engine, settings)
    return {"ok": not any(j["stale"] for j in jobs), "active": jobs,
            "live_by_queue": live if isinstance(live, str) else dict(sorted(Counter(
                queue for worker in live for queue in worker.queues).items())),
            "live": live if isinstance(live, str) else [worker_line(w, now) for w in live]}


def worker_ref(worker_id: str) -> str:
    """An opaque, stable name for a worker in unauthenticated answers (its id names a host)."""
    return "w-" + hashlib.sha256(worker_id.encode()).hexdigest()[:12]


def worker_line(worker: Any, now: datetime) -> dict[str, Any]:
    """What an unauthenticated caller may see of a live worker: nothing naming a host, a process,
    a job or a user."""
    return {"ref": worker_ref(worker.id), "queues": sorted(worker.queues), "gpus": worker.gpus,
            "busy": worker.current_job_id is not None,
            "heartbeat_age_s": round((now - worker.heartbeat_at).total_seconds(), 1)}


def _live(engine: Engine, settings: Settings) -> list[Any] | str:
    try:
        with Session(engine) as session:
            live = workers.live_workers(session, settings)
            session.expunge_all()
            return live
    except Exception as exc:  # noqa: BLE001
        return _error(exc)


def readiness(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Every check; `status` is "ok" only when all pass."""
    checks = {"database": check_database(engine), "broker": check_broker(settings.broker_url),
              "disk": check_disk(settings), "workers": check_jobs(engine, settings)}
    return {"status": "ok" if all(c["ok"] for c in checks.values()) else "degraded", **checks}
