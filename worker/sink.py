"""The database `MetricsSink`: what a running job writes into the tables the API and dashboard read.

Choices:
- One transaction per step: every metric, every histogram and the job's `current_step` (and its
  heartbeat, `updated_at`) commit together, so a reader never sees half a step and `current_step`
  never points past the data.
- Fenced: a sink made with the worker's lease `epoch` starts each transaction with
  `UPDATE jobs .. WHERE id = :id AND lease_epoch = :epoch`; no row means another worker has claimed
  the job since (the epoch moved on), so the transaction rolls back and `LeaseLost` is raised. On
  PostgreSQL that UPDATE also holds the row lock until commit, so a claim cannot slip between the
  check and the writes after it; SQLite has one writer at a time anyway. (`LeaseLost` and
  `hold_lease` live here rather than in worker/lifecycle.py, which imports this module.)
- Idempotent: metrics upsert on their primary key (job_id, name, step) and histograms on
  (job_id, step, name) with the dialect's `INSERT .. ON CONFLICT DO UPDATE` (Postgres and SQLite
  share the syntax). A step written twice (a retry after a commit whose acknowledgement was lost, or
  a step replayed after resuming from a checkpoint) leaves one row holding the latest value.
- Batched: on Postgres a step's metrics are ONE statement whatever their number
  (`INSERT .. SELECT FROM unnest(names[], values[])`): psycopg's executemany still parses and
  sends each row, which caps it near 10k rows/s in Python overhead. On SQLite, executemany is
  already a C loop over one prepared statement. Figures in docs/benchmarks.md.
- Retries: connection-level failures (`OperationalError`, `InterfaceError`, an invalidated
  connection: a database restart, SQLite's "database is locked") are retried with exponential
  backoff up to `retry_seconds`; the trainer blocks meanwhile, so no step is skipped. Anything else
  (a constraint violation, a bug) is raised at once: retrying would not change it.
- NaN and infinities become NULL (`metrics.value`) or `null` (event data): Postgres JSONB and JSON
  clients refuse them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.models import AdvantageHistogram, Job, JobEvent, Metric, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

# Event kinds whose rows are shown as errors/warnings in the dashboard.
_LEVELS = {"error": "error", "failed": "error", "warning": "warning"}


class LeaseLost(Exception):
    """Another worker claimed the job after this one (the job's `lease_epoch` moved past ours).

    Nothing of the transaction that found out was written. The job belongs to the new owner: this
    worker must stop running it and write nothing more for it, not even a `failed` status.
    """

    def __init__(self, job_id: str, epoch: int, current: int | None):
        self.job_id, self.epoch, self.current = job_id, epoch, current
        now = "the job is gone" if current is None else f"the job is at epoch {current}"
        super().__init__(f"job {job_id}: lease lost (this worker held epoch {epoch}, {now}); "
                         "another worker took it over, so this one stops without writing")


def lease_lost(conn: Connection, job_id: str, epoch: int) -> LeaseLost:
    """The `LeaseLost` to raise after a fenced UPDATE matched no row (reads the current epoch)."""
    return LeaseLost(job_id, epoch, conn.scalar(select(Job.lease_epoch).where(Job.id == job_id)))


def hold_lease(conn: Connection, job_id: str, epoch: int) -> None:
    """First statement of a fenced transaction: refresh the heartbeat if `epoch` is still the
    job's lease, else raise `LeaseLost` (which rolls the transaction back)."""
    changed = conn.execute(update(Job).where(Job.id == job_id, Job.lease_epoch == epoch)
                           .values(updated_at=utcnow())).rowcount
    if changed != 1:
        raise lease_lost(conn, job_id, epoch)


def is_transient(exc: BaseException) -> bool:
    """True for failures that a new connection a little later can fix."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def run_in_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    retry_seconds: float = 900.0,
    what: str = "database write",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `work(conn)` in one transaction, retrying transient failures with exponential backoff.

    Backoff starts at 0.1 s, doubles up to 10 s, with +-25 % jitter so several workers coming back
    after a database restart do not reconnect in lockstep. Gives up (re-raises) after `retry_seconds`.
    """
    deadline = time.monotonic() + retry_seconds
    delay = 0.1
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.begin() as conn:
                return work(conn)
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, 10.0)


def upsert(engine: Engine, model: type, keys: list[str], values: list[str]):
    """`INSERT .. ON CONFLICT (keys) DO UPDATE SET values = excluded.values` for this dialect."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the platform supports these two (DESIGN.md section 5)
        raise ValueError(f"unsupported database dialect {dialect!r}; use postgresql or sqlite")
    stmt = insert(model)
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={name: stmt.excluded[name] for name in values}
    )


def finite_or_none(value: Any) -> float | None:
    """`float(value)`, or None where it is NaN/inf (stored as NULL)."""
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats replaced by None and unknown objects by their `str`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return json_safe(value.item())
    return str(value)


def event_row(job_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None,
              level: str | None = None) -> dict[str, Any]:
    """A `job_events` row as a dict (for Core inserts)."""
    return {
        "job_id": job_id,
        "ts": utcnow(),
        "kind": kind,
        "level": level or _LEVELS.get(kind, "info"),
        "message": message,
        "data": json_safe(dict(data)) if data else None,
    }


# One statement per step on Postgres: two arrays in, one row per element out (see module docstring).
_PG_METRICS_UPSERT = text(
    "INSERT INTO metrics (job_id, name, step, value) "
    "SELECT :job_id, m.name, :step, m.value "
    "FROM unnest(CAST(:names AS text[]), CAST(:values AS double precision[])) AS m(name, value) "
    "ON CONFLICT (job_id, name, step) DO UPDATE SET value = excluded.value"
)


class DatabaseSink:
    """`trainer.sinks.MetricsSink` writing into `metrics`, `advantage_histograms` and `job_events`.

    `epoch` is the worker's lease (`Claim.epoch`): every write is fenced on it (module docstring).
    None writes unfenced, for tools and benchmarks that hold no lease; the worker always passes it.
    """

    def __init__(self, engine: Engine, job_id: str, *, epoch: int | None = None,
                 retry_seconds: float = 900.0):
        self.engine = engine
        self.job_id = job_id
        self.epoch = epoch
        self.retry_seconds = retry_seconds
        self._metrics = upsert(engine, Metric, ["job_id", "name", "step"], ["value"])
        self._unnest = engine.dialect.name == "postgresql"
        self._histograms = upsert(
            engine, AdvantageHistogram, ["job_id", "step", "name"], ["edges", "counts"]
        )

    def log_step(self, step: int, metrics: Mapping[str, float], histograms: Mapping[str, Any]) -> None:
        """Write one step (metrics, histograms, `current_step`) in one transaction, idempotently."""
        step = int(step)
        metric_rows = [
            {"job_id": self.job_id, "name": name, "step": step, "value": finite_or_none(value)}
            for name, value in metrics.items()
        ]
        histogram_rows = [
            {"job_id": self.job_id, "step": step, "name": name,
             "edges": json_safe(list(hist.edges)), "counts": [int(c) for c in hist.counts]}
            for name, hist in histograms.items()
        ]

        def write(conn: Connection) -> None:
            # First, so the fence (and on Postgres the row lock) comes before any row is written.
            job = update(Job).where(Job.id == self.job_id)
            if self.epoch is not None:
                job = job.where(Job.lease_epoch == self.epoch)
            changed = conn.execute(job.values(current_step=step, updated_at=utcnow())).rowcount
            if changed != 1 and self.epoch is not None:
                raise lease_lost(conn, self.job_id, self.epoch)
            if metric_rows and self._unnest:
                conn.execute(_PG_METRICS_UPSERT, {
                    "job_id": self.job_id, "step": step,
                    "names": [r["name"] for r in metric_rows],
                    "values": [r["value"] for r in metric_rows]})
            elif metric_rows:
                conn.execute(self._metrics, metric_rows)
            if histogram_rows:
                conn.execute(self._histograms, histogram_rows)

        run_in_transaction(self.engine, write, retry_seconds=self.retry_seconds,
                           what=f"job {self.job_id} step {step}")

    def log_event(self, kind: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Append one row to `job_events` (`kind` "error"/"warning" set the row's level)."""
        row = event_row(self.job_id, kind, message, data)

        def write(conn: Connection) -> None:
            if self.epoch is not None:
                hold_lease(conn, self.job_id, self.epoch)
            conn.execute(JobEvent.__table__.insert(), row)

        run_in_transaction(self.engine, write, retry_seconds=self.retry_seconds,
                           what=f"job {self.job_id} event")

    def close(self) -> None:
        """Nothing to flush: every call commits before it returns. The engine belongs to the caller."""
