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
  `hold_lease` are core/jobs/lifecycle.py's; events are written by `core.jobs.events`.)
- Idempotent: metrics upsert on their primary key (job_id, name, step) and histograms on
  (job_id, step, name) with the dialect's `INSERT .. ON CONFLICT DO UPDATE` (Postgres and SQLite
  share the syntax). A step written twice (a retry after a commit whose acknowledgement was lost, or
  a step replayed after resuming from a checkpoint) leaves one row holding the latest value.
- Batched: on Postgres a step's metrics are ONE statement whatever their number
  (`INSERT .. SELECT FROM unnest(names[], values[])`): psycopg's executemany still parses and
  sends each row, which caps it near 10k rows/s in Python overhead. On SQLite, executemany is
  already a C loop over one prepared statement. Figures in docs/benchmarks.md.
- Retries (`core.db.run_in_transaction`): connection-level failures (a database restart, SQLite's
  "database is locked") are retried with exponential backoff up to `retry_seconds`; the trainer
  blocks meanwhile, so no step is skipped. Anything else (a constraint violation, a bug) is raised
  at once: retrying would not change it.
- A step also writes its rollout samples (upserted on (job_id, step, index), the oldest beyond
  `sample_keep_steps` deleted by an indexed range delete) and one `progress` event holding the
  step's progress line (trainer.sinks.progress_line: reward, accuracy, ETA), which is what
  `GET /v1/jobs/{id}/logs` and `basis jobs logs --follow` show as training goes.
- NaN and infinities become NULL (`metrics.value`) or `null` (event data): Postgres JSONB and JSON
  clients refuse them. NUL characters in text (a tiny model does generate them) become U+FFFD:
  Postgres text and JSONB refuse them, which failed whole jobs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, delete, text, update

from core.db import run_in_transaction, upsert
from core.jobs.events import db_text, json_safe, record_event
from core.jobs.lifecycle import hold_lease, lease_lost
from core.models import AdvantageHistogram, Job, Metric, RolloutSample, utcnow
from trainer.sinks import Sample, StepRate, progress_line

log = logging.getLogger(__name__)


def finite_or_none(value: Any) -> float | None:
    """`float(value)`, or None where it is NaN/inf (stored as NULL)."""
    value = float(value)
    return value if math.isfinite(value) else None


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
                 retry_seconds: float = 900.0, max_steps: int | None = None,
                 sample_keep_steps: int = 0):
        self.max_steps = max_steps
        self.rate = StepRate()
        self.sample_keep_steps = sample_keep_steps
        self._samples = upsert(engine, RolloutSample, ["job_id", "step", "index"], [
            "prompt_id", "prompt", "completion", "answer", "reward", "advantage", "baseline",
            "finish_reason"])
        self.engine = engine
        self.job_id = job_id
        self.epoch = epoch
        self.retry_seconds = retry_seconds
        self._metrics = upsert(engine, Metric, ["job_id", "name", "step"], ["value"])
        self._unnest = engine.dialect.name == "postgresql"
        self._histograms = upsert(
            engine, AdvantageHistogram, ["job_id", "step", "name"], ["edges", "counts"]
        )

    def log_step(self, step: int, metrics: Mapping[str, float], histograms: Mapping[str, Any],
                 samples: Sequence[Sample] = ()) -> None:
        """Write one step (metrics, histograms, samples, progress line, `current_step`) in one
        transaction, idempotently."""
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
        sample_rows = [
            {"job_id": self.job_id, "step": step, "index": x.index,
             "prompt_id": db_text(x.prompt_id[:256]), "prompt": db_text(x.prompt),
             "completion": db_text(x.completion), "answer": db_text(x.answer),
             "reward": None if x.reward is None else finite_or_none(x.reward),
             "advantage": finite_or_none(x.advantage) or 0.0,
             "baseline": None if x.baseline is None else finite_or_none(x.baseline),
             "finish_reason": x.finish_reason[:16]}
            for x in samples
        ]
        line = progress_line(step, self.max_steps, metrics, self.rate.update(step, metrics))

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
            if sample_rows:
                conn.execute(self._samples, sample_rows)
                if self.sample_keep_steps:
                    conn.execute(delete(RolloutSample).where(
                        RolloutSample.job_id == self.job_id,
                        RolloutSample.step <= step - self.sample_keep_steps))
            record_event(conn, self.job_id, "progress", line, {"step": step})

        run_in_transaction(self.engine, write, retry_seconds=self.retry_seconds,
                           what=f"job {self.job_id} step {step}")

    def log_event(self, kind: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Append one row to `job_events` (`kind` "error"/"warning" set the row's level)."""
        def write(conn: Connection) -> None:
            if self.epoch is not None:
                hold_lease(conn, self.job_id, self.epoch)
            record_event(conn, self.job_id, kind, message, data)

        run_in_transaction(self.engine, write, retry_seconds=self.retry_seconds,
                           what=f"job {self.job_id} event")

    def close(self) -> None:
        """Nothing to flush: every call commits before it returns. The engine belongs to the caller."""
