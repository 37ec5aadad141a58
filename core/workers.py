"""The worker registry: which workers are alive and what they can run (`workers` table).

Each worker process writes one row (worker/capabilities.py): its queues, the rollout engines
installed there, its GPU count and how many processes one job may use there (`max_processes`: its
GPUs, or `BASIS_WORKER_MAX_PROCESSES` process slots on a CPU machine). It rewrites the row at start
and on every heartbeat, and marks it stopped on a clean shutdown. The API reads the rows to list
workers (`GET /v1/workers`), to refuse at creation a job no live worker can run
(`check_capacity`), and health reads `live_workers`.

Choices:
- Alive = not stopped and a heartbeat within `Settings.worker_alive_seconds`. A killed worker
  never says goodbye, so the heartbeat's age is what makes it dead; a dead row is kept (the queue
  it served stays known) until `Settings.worker_forget_seconds` after its last beat, when any
  worker's heartbeat deletes it.
- A heartbeat writes the whole row with UPDATE, then INSERT when nothing matched: the id is one
  process's, so no two writers race on it, and no dialect-specific upsert is needed. A row that
  was pruned while its worker was paused comes back at the next beat.
- What a job asks for is the queue it goes to, its engine, its process count (one process per GPU
  on a GPU worker) and, for vLLM, its tensor-parallel size, which must fit in the job's processes.
- When no worker is alive, whether a job is accepted is a policy (docs/deployment.md, "Worker
  capabilities"): with `BASIS_REQUIRE_LIVE_WORKER` off (the default) a job is refused only by
  live workers or for a queue that no worker ever served while others are alive; a queue whose
  workers are all down (restarting) or a platform with no worker yet (`basis up` starts its worker
  after the API) accepts the job, which waits and says so in its first event. On, a job needs a
  live worker on its queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.orm import Session

from core.models import Worker, utcnow
from core.services.errors import Invalid
from core.services.pagination import Page
from core.settings import Settings


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process advertises (everything in its row but the timestamps)."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    engines: list[str]
    gpus: int
    max_processes: int
    started_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Requirement:
    """What one job needs from a worker."""

    queue: str
    engine: str
    processes: int = 1
    tensor_parallel_size: int = 1

    @classmethod
    def of(cls, train_config, queue: str) -> Requirement:
        """What a validated `TrainConfig` asks for on `queue`."""
        tp = train_config.engine_options.get("tensor_parallel_size", 1)
        return cls(queue=queue, engine=train_config.engine,
                   processes=train_config.num_processes,
                   tensor_parallel_size=tp if isinstance(tp, int) else 1)


def _ago(seconds: float) -> datetime:
    return datetime.fromtimestamp(utcnow().timestamp() - seconds, UTC)


def _alive(alive_seconds: float):
    return (Worker.stopped_at.is_(None)) & (Worker.heartbeat_at >= _ago(alive_seconds))


def beat(conn: Connection, info: WorkerInfo, *, current_job_id: str | None | object = ...) -> None:
    """Write `info` with a fresh heartbeat (insert the row if it is missing); `current_job_id`
    is left as it is unless given (None clears it)."""
    values = {"hostname": info.hostname, "pid": info.pid, "queues": list(info.queues),
              "engines": list(info.engines), "gpus": info.gpus, "max_processes": info.max_processes,
              "started_at": info.started_at, "heartbeat_at": utcnow(), "stopped_at": None}
    if current_job_id is not ...:
        values["current_job_id"] = current_job_id
    if conn.execute(update(Worker).where(Worker.id == info.id).values(**values)).rowcount == 0:
        values.setdefault("current_job_id", None)
        conn.execute(insert(Worker).values(id=info.id, **values))


def stop(conn: Connection, worker_id: str) -> None:
    """Mark a worker stopped (clean shutdown): it no longer counts as alive."""
    conn.execute(update(Worker).where(Worker.id == worker_id)
                 .values(stopped_at=utcnow(), current_job_id=None))


def forget_dead(conn: Connection, *, older_than_seconds: float) -> int:
    """Delete the rows whose last heartbeat is older than `older_than_seconds`; returns how many."""
    return conn.execute(delete(Worker).where(Worker.heartbeat_at < _ago(older_than_seconds))).rowcount


def live_workers(session: Session, settings: Settings) -> list[Worker]:
    """Every live worker, by id."""
    return list(session.scalars(select(Worker).where(_alive(settings.worker_alive_seconds))
                                .order_by(Worker.id)))


def is_alive(worker: Worker, settings: Settings) -> bool:
    return worker.stopped_at is None and worker.heartbeat_at >= _ago(settings.worker_alive_seconds)


def list_workers(session: Session, settings: Settings, *, include_dead: bool, after: str | None,
                 limit: int) -> Page[Worker]:
    """Workers by id (live only unless `include_dead`), `limit` at a time after cursor `after`."""
    stmt = select(Worker)
    if not include_dead:
        stmt = stmt.where(_alive(settings.worker_alive_seconds))
    if after:
        stmt = stmt.where(Worker.id > after)
    rows = list(session.scalars(stmt.order_by(Worker.id).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, has_more, rows[-1].id if has_more else None)


def _describe(workers: list[Worker]) -> str:
    return "; ".join(f"{w.id}: queues {','.join(w.queues)}, engines {','.join(w.engines)}, "
                     f"{w.max_processes} process(es), {w.gpus} GPU(s)" for w in workers)


def check_capacity(session: Session, settings: Settings, need: Requirement) -> str | None:
    """Refuse (`Invalid` naming the field) a job that no live worker can run; otherwise return
    None, or a note when the job is accepted with no live worker on its queue (module docstring)."""
    live = live_workers(session, settings)
    on_queue = [w for w in live if need.queue in w.queues]
    if not on_queue:
        return _no_live_worker(session, settings, need, live)
    with_engine = [w for w in on_queue if need.engine in w.engines]
    if not with_engine:
        offered = sorted({e for w in on_queue for e in w.engines})
        raise Invalid(f"no live worker offers engine {need.engine!r} on queue {need.queue!r} "
                      f"(engines there: {', '.join(offered)}; live: {_describe(on_queue)})",
                      "config.engine")
    most = max(w.max_processes for w in with_engine)
    if need.processes > most:
        raise Invalid(f"the job asks for {need.processes} processes but the live workers on queue "
                      f"{need.queue!r} with engine {need.engine!r} run at most {most} per job "
                      f"(live: {_describe(with_engine)})", "config.num_processes")
    if need.tensor_parallel_size > 1 and not any(w.gpus >= need.tensor_parallel_size for w in with_engine):
        raise Invalid(f"tensor_parallel_size {need.tensor_parallel_size} needs a worker with that many "
                      f"GPUs on queue {need.queue!r}; live: {_describe(with_engine)}",
                      "config.engine_options.tensor_parallel_size")
    return None


def _no_live_worker(session: Session, settings: Settings, need: Requirement,
                    live: list[Worker]) -> str | None:
    live_queues = sorted({q for w in live for q in w.queues})
    where = f"live queues: {', '.join(live_queues)}" if live_queues else "no worker is alive"
    if settings.require_live_worker:
        raise Invalid(f"no live worker consumes queue {need.queue!r} ({where}; "
                      "BASIS_REQUIRE_LIVE_WORKER is on)", "queue")
    known = session.scalars(select(Worker.queues)).all()
    if any(need.queue in queues for queues in known):
        return f"no live worker on queue {need.queue!r} now; the job waits for one"
    if live:
        raise Invalid(f"no worker consumes queue {need.queue!r} ({where})", "queue")
    return "no worker has registered yet; the job waits for one"

